"""``InferOptions``: one inference call's choices, resolved against the config once (``InferSettings``).

Example:
    >>> settings = InferOptions(tta=True).resolve(cfg)   # batch size and component filter from cfg.infer
    >>> infer_volume(model, Path("ct.nii.gz"), cfg, Path("out"), settings)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from segkit.postprocess.components import LargestComponent

if TYPE_CHECKING:
    from segkit.config import Config


@dataclass(frozen=True)
class InferSettings:
    """What an inference call uses: ``cfg.infer`` with the call's overrides applied
    (``InferOptions.resolve``).

    Attributes:
        batch_size: slices per model call.
        tta: flip test-time augmentation.
        largest_component: the component filter (True: every class's own; False / None: none; else these ids,
            with ``"foreground"`` first for the foreground's filter before them).
        overwrite: replace existing outputs (else they are refused before anything is read).
        save_probabilities: volumes: also write ``<case>_probs.nii.gz``.
        output_format: volumes: the labels' format (``segkit.io.segmentations.OUTPUT_FORMATS``).
    """

    batch_size: int
    tta: bool
    largest_component: LargestComponent
    overwrite: bool = False
    save_probabilities: bool = False
    output_format: str = "nifti"


@dataclass(frozen=True)
class InferOptions:
    """A caller's overrides of ``cfg.infer`` (``None``: the config's value) and output choices.

    Attributes:
        batch_size: slices per model call (``infer.batch_size``).
        tta: flip test-time augmentation (``infer.tta``).
        largest_component: the component filter (``infer.largest_component``).
        overwrite: replace existing outputs.
        save_probabilities: volumes: also write ``<case>_probs.nii.gz`` (``.nrrd``/``.mha`` with those
            output formats).
        output_format: volumes: ``nifti`` (default), ``nrrd``, ``mha``, ``seg.nrrd`` or ``dicom-seg``.
        glob: a folder input: only the files (or DICOM series names) matching this pattern; ``None``: every
            volume except label-named ones (``*_label*``, ``*_seg*``, ``labelsTr/``).
        resample_tilt: a DICOM series with gantry tilt is resampled onto an untilted grid
            (``segkit.io.volumes.VolumeRef.resample_tilt``) instead of refused.
    """

    batch_size: int | None = None
    tta: bool | None = None
    largest_component: LargestComponent = None
    overwrite: bool = False
    save_probabilities: bool = False
    output_format: str = "nifti"
    glob: str | None = None
    resample_tilt: bool = False

    def resolve(self, cfg: Config) -> InferSettings:
        """The settings: each override that is not None, else the config's ``infer`` value."""
        return InferSettings(
            batch_size=int(self.batch_size or cfg.infer.batch_size),
            tta=bool(cfg.infer.tta) if self.tta is None else self.tta,
            largest_component=cfg.infer.largest_component if self.largest_component is None
            else self.largest_component,
            overwrite=self.overwrite,
            save_probabilities=self.save_probabilities,
            output_format=self.output_format,
        )
