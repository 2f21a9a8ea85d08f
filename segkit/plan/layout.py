"""Which ``segkit prepare`` source reads a dataset folder, so that ``segkit plan`` pairs images and labels
exactly as ``prepare`` will (the pairing itself is ``segkit.prepare.sources``'; nothing is paired here).

Recognised layouts, in this order (``detect_layout``):

- ``imagesTr/`` + ``labelsTr/`` (Medical Segmentation Decathlon, the LA 2018 volumes): source ``left-atrial``;
- ``<case>_image.<ext>`` + ``<case>_label.<ext>`` (the ACDC and HOCM volumes): source ``nifti`` with
  ``--image-glob '*_image.<ext>' --label-glob '*_label.<ext>'``.

``--image-glob`` / ``--label-glob`` given by the user always win (source ``nifti``). The ACDC release's
``<case>.nii.gz`` + ``<case>_gt.nii.gz`` is not among them: ``prepare``'s ``nifti`` source takes a file that
matches both globs (``*.nii.gz`` matches the ``_gt`` files too) for an image, so its pairs need other names.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from segkit.errors import DataError
from segkit.io.volumes import is_volume, volume_suffix
from segkit.prepare.sources import Discovery, SourceOptions, discover


@dataclass(frozen=True)
class Layout:
    """A dataset folder read as one ``segkit prepare`` source.

    Attributes:
        source: the ``segkit.prepare.sources.SOURCES`` name.
        options: its ``SourceOptions`` (the globs of ``nifti``).
    """

    source: str
    options: SourceOptions

    def prepare_command(self, data: Path, config: Path) -> str:
        """The ``segkit prepare`` command line that prepares ``data`` with the planned ``config``."""
        words = ["segkit", "prepare", self.source, str(data)]
        if self.options.image_glob:
            words += ["--image-glob", self.options.image_glob, "--label-glob", str(self.options.label_glob)]
        return " ".join(shlex.quote(w) for w in [*words, "--config", str(config)])


def _suffixes_with(folder: Path, tail: str) -> list[str]:
    """The volume suffixes of the files in ``folder`` whose name ends with ``tail`` + that suffix."""
    found = set()
    for p in folder.iterdir():
        sfx = volume_suffix(p)
        if sfx and p.name.lower().endswith(tail + sfx) and len(p.name) > len(tail + sfx) and is_volume(p):
            found.add(sfx)
    return sorted(found)


def detect_layout(data: Path, image_glob: str | None = None, label_glob: str | None = None) -> Layout:
    """The source that reads ``data`` (see the module docstring); given globs choose ``nifti``.

    Raises:
        DataError: ``data`` is not a folder, only one glob is given, or no layout is recognised.
    """
    data = Path(data)
    if not data.is_dir():
        raise DataError("dataset folder not found", path=data, hint="give the folder of the raw volumes")
    if image_glob or label_glob:
        if not (image_glob and label_glob):
            raise DataError("give both --image-glob and --label-glob", hint="e.g. --image-glob "
                            "'*_image.nii.gz' --label-glob '*_label.nii.gz'")
        return Layout("nifti", SourceOptions(image_glob=image_glob, label_glob=label_glob))
    if (data / "imagesTr").is_dir() and (data / "labelsTr").is_dir():
        return Layout("left-atrial", SourceOptions())
    labels = _suffixes_with(data, "_label")
    images = [s for s in _suffixes_with(data, "_image") if s in labels]
    if images:
        sfx = images[0]
        return Layout("nifti", SourceOptions(image_glob=f"*_image{sfx}", label_glob=f"*_label{sfx}"))
    raise DataError(
        "no known dataset layout (imagesTr/ + labelsTr/, or <case>_image + <case>_label volumes)",
        path=data,
        hint="name the pairs with --image-glob and --label-glob, each with one '*' for the case id",
    )


def find_cases(data: Path, layout: Layout) -> Discovery:
    """The labelled cases of ``data`` as ``segkit prepare`` pairs them (``discover``); unlabelled: dropped
    (one labelled case is planned as blocks of its slices, ``segkit.plan.rules.slab_count``).

    Raises:
        DataError: no labelled case; the hint names why the pairing found none.
    """
    found = discover(layout.source, data, layout.options)
    cases = [c for c in found.cases if c.label is not None and c.kind == "volume"]
    if not cases:
        why = "; ".join(found.problems[:3]) or "check the file names"
        raise DataError("no labelled volume cases found", path=data,
                        hint=f"segkit plan needs image + label volume pairs; {why}")
    return Discovery(cases, found.problems)
