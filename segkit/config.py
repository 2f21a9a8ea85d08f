"""Every config schema of segkit, and ``load_config``; the only module that reads YAML (``parse_yaml_text``).

A config is one YAML file per dataset/run. Unknown keys are errors naming the dotted key and the closest valid
key; wrong types name the key and the expected type. Overrides (``--set train.epochs=2``) go through the same
validator. The resolved config (with every default) is what ``segkit config show`` prints and what each run
writes beside its outputs.

A config is given as a path or as the name of a preset (``left-atrial``, ``seed/whole-heart``): the YAML files
of the repository's ``configs/`` folder, shipped in the wheel as the package data ``segkit.presets``.
``resolve_config_path`` is the one place that turns a name into a file; an existing path always wins.

Example:
    >>> cfg = load_config(Path("configs/demo.yaml"), overrides=["train.epochs=2"])
    >>> cfg.train.epochs
    2
    >>> load_config("left-atrial").name   # a preset, from any working directory
    'left-atrial'
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import importlib.resources
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from segkit.errors import ConfigError, SegkitError
from segkit.registry import Registry

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

logger = logging.getLogger(__name__)

RGB = tuple[int, int, int]
Size2 = tuple[int, int]
Range = tuple[float, float]


_BOOL_WORDS = ("true", "false", "yes", "no", "on", "off")
"""The words pydantic reads as booleans (a ``--set`` value may arrive as a string)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# === Classes ===


class Code(_Strict):
    """One coded concept of a terminology (a DICOM code sequence item): code value, coding scheme
    designator and code meaning, e.g. ``{code: "82471001", scheme: SCT, meaning: Left atrium}``."""

    code: str = Field(min_length=1, max_length=16, description="CodeValue (SNOMED CT: the concept id)")
    scheme: str = Field("SCT", min_length=1, max_length=16,
                        description="CodingSchemeDesignator: SCT (SNOMED CT), DCM, ...")
    meaning: str = Field(min_length=1, max_length=64, description="CodeMeaning, as the terminology words it")

    @model_validator(mode="after")
    def _check_code(self) -> Code:
        if self.scheme == "SCT" and not re.fullmatch(r"[1-9][0-9]{5,15}", self.code):
            raise ValueError(f"a SNOMED CT code is 6 to 16 digits, got '{self.code}'")
        if any(not c.isprintable() or c in "\\^~|" for c in self.code + self.scheme + self.meaning):
            raise ValueError("codes hold printable characters other than \\ ^ ~ | (DICOM and 3D Slicer "
                             "separators)")
        return self


#: the category of a concept that names none: SNOMED CT "Anatomical Structure".
ANATOMICAL_STRUCTURE = Code(code="91723000", scheme="SCT", meaning="Anatomical Structure")


class CodedConcept(_Strict):
    """What a class is, as coded terminology (DICOM-SEG's segmented property category and type; the export
    bundle's ``concept``)."""

    category: Code = Field(ANATOMICAL_STRUCTURE, description="segmented property category")
    type: Code = Field(description="segmented property type, e.g. SCT 82471001 Left atrium")


class ClassSpec(_Strict):
    """One foreground class. Background is always id 0, colour (0, 0, 0), and is not listed."""

    id: int = Field(ge=1, le=255, description="class id written in label maps (1..N)")
    name: str = Field(min_length=1)
    color: RGB = Field(description="RGB colour in the colour masks")
    concept: CodedConcept | None = Field(
        None, description="coded category and type (SNOMED CT) written to DICOM-SEG and the export bundle; "
        "None: looked up by class name")

    @field_validator("color")
    @classmethod
    def _check_color(cls, v: RGB) -> RGB:
        if any(c < 0 or c > 255 for c in v):
            raise ValueError("colour components must be 0..255")
        if tuple(v) == (0, 0, 0):
            raise ValueError("(0, 0, 0) is the background colour")
        return v


# === Prepare ===


class SplitConfig(_Strict):
    """Case-level split ratios (normalised to sum 1). With ``folds`` = K, cases are cut into K folds: fold
    ``fold`` is the validation set, the test fraction is held out first."""

    train: float = Field(0.7, ge=0)
    valid: float = Field(0.15, ge=0)
    test: float = Field(0.15, ge=0)
    folds: int | None = Field(None, ge=2)
    fold: int = Field(0, ge=0)
    group_by: str | None = Field(
        None,
        description="regex with one group that names the patient of a case id, e.g. '^(patient\\d+)_': all "
        "cases of one patient go to the same split",
    )

    @field_validator("group_by")
    @classmethod
    def _check_group_by(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            pattern = re.compile(v)
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from e
        if pattern.groups != 1:
            raise ValueError(f"needs exactly one (group) naming the patient, has {pattern.groups}")
        return v

    @model_validator(mode="after")
    def _check(self) -> SplitConfig:
        if self.train + self.valid + self.test <= 0:
            raise ValueError("split ratios must not all be zero")
        if self.folds is None and self.fold != 0:
            raise ValueError(
                f"fold {self.fold} needs folds (K-fold): set prepare.split.folds or pass --folds"
            )
        if self.folds is not None and self.fold >= self.folds:
            raise ValueError(f"fold {self.fold} is out of range for {self.folds} folds (0..{self.folds - 1})")
        return self


class PrepareConfig(_Strict):
    """How volumes become 2D slices."""

    axis: Literal[0, 1, 2] = Field(
        2, description="slicing axis after reorientation to RAS: 0 sagittal, 1 coronal, 2 axial"
    )
    extra_axes: tuple[Literal[0, 1, 2], ...] = Field(
        (),
        description="multi-planar 2D for near-isotropic volumes: the training and validation cases are also "
        "sliced along these axes (<case>_ax<k>_<NNNN>.png), and inference averages the class probabilities "
        "of every view (prepare.axis and these) before the argmax; e.g. [0, 1] with axis 2; [] = one plane",
    )
    size: Size2 = Field((512, 512), description="output slice size (height, width) in pixels")
    ct_window: Range = Field((-1000.0, 1000.0), description="CT: HU window clipped then scaled to 0..255")
    mr_percentiles: Range = Field((0.5, 99.5), description="MR: per-volume percentiles scaled to 0..255")
    empty_slices: Literal["keep", "fraction", "drop"] = "fraction"
    empty_fraction: float = Field(
        0.1, ge=0, le=1, description="share of label-free slices kept with 'fraction'"
    )
    label_map: dict[int, int] | None = Field(None, description="raw label value -> class id (0 = background)")
    binary: bool = Field(False, description="merge every foreground label into one class")
    unknown_labels: Literal["error", "background"] = "error"
    empty_labels: Literal["warn", "error", "allow"] = Field(
        "warn",
        description="a label volume without foreground: warn (named in the summary), error (the case "
        "fails), or allow (real negatives)",
    )
    spacing: tuple[float, float] | Literal["median"] | None = Field(
        None,
        description="in-plane target spacing in mm (rows, columns of a slice): volume slices are resampled "
        "to it instead of stretched to prepare.size (each case keeps its own field of view); 'median' = the "
        "dataset's median in-plane spacing, resolved by prepare and recorded in dataset.json",
    )
    png_compression: int = Field(
        1,
        ge=0,
        le=9,
        description="zlib level of image PNGs: 0 = stored (fastest, ~2.5x larger), 1 = fast, 9 = smallest",
    )
    split: SplitConfig = SplitConfig()
    slabs: int | None = Field(
        None,
        ge=2,
        description="cut every volume into this many blocks of slices along prepare.axis, each its own "
        "case <case>_slab<k> that the split may put in any part: for a dataset of ONE labelled volume, the "
        "only way to validate and test on slices the model did not train on. Scores are then within one "
        "patient, not patient-wise (README). MR percentiles are taken per block",
    )
    slab_gap_mm: float = Field(
        10.0, ge=0, description="with prepare.slabs: slices left out between neighbouring blocks (mm, "
        "rounded up to whole slices), so that no two blocks hold adjacent, near-identical slices"
    )

    @field_validator("size")
    @classmethod
    def _check_size(cls, v: Size2) -> Size2:
        if min(v) < 8:
            raise ValueError("size must be at least 8x8")
        return v

    @field_validator("spacing")
    @classmethod
    def _check_spacing(cls, v: tuple[float, float] | str | None) -> tuple[float, float] | str | None:
        if isinstance(v, tuple) and min(v) <= 0:
            raise ValueError("spacing must be positive millimetres, e.g. [1.0, 1.0]")
        return v

    @field_validator("ct_window", "mr_percentiles")
    @classmethod
    def _check_range(cls, v: Range) -> Range:
        if v[0] >= v[1]:
            raise ValueError(f"low ({v[0]}) must be below high ({v[1]})")
        return v

    def view(self, axis: int | None = None) -> PrepareConfig:
        """This section for one plane: slicing along ``axis`` (default ``self.axis``) without extra axes (a
        view of ``extra_axes``, as ``prepare`` writes it and inference segments it)."""
        return self.model_copy(update={"axis": self.axis if axis is None else axis, "extra_axes": ()})

    @model_validator(mode="after")
    def _check_views(self) -> PrepareConfig:
        extra = self.extra_axes
        if len(set(extra)) != len(extra) or self.axis in extra:
            raise ValueError(f"prepare.extra_axes {list(extra)} must name each axis once and not "
                             f"prepare.axis ({self.axis}): e.g. {[a for a in (0, 1, 2) if a != self.axis]}, "
                             "or [] for one plane")
        if extra and self.slabs is not None:
            raise ValueError("prepare.extra_axes does not combine with prepare.slabs (blocks are cut along "
                             "prepare.axis only): set prepare.extra_axes: [] (one plane) or unset slabs")
        if extra and self.spacing is not None:
            raise ValueError("prepare.extra_axes needs prepare.size for every view, not prepare.spacing: "
                             "set prepare.extra_axes: [] (one plane) or remove prepare.spacing")
        return self


# === Data ===


class DataConfig(_Strict):
    """Where the prepared dataset is and how slices are decoded for training."""

    dir: Path = Field(
        Path("data"), description="dataset root holding train/, valid/, test/ (relative to cwd)"
    )
    image_size: Size2 = Field((512, 512), description="model input (height, width); not given: prepare.size")
    channels: Literal[1, 3] = 3
    mask_mode: Literal["color", "gray"] = Field(
        "color", description="colour masks, or grayscale for binary tasks"
    )
    mask_tolerance: float = Field(60.0, ge=0, description="max RGB distance to a class colour (JPEG noise)")
    gray_threshold: int = Field(128, ge=1, le=255)
    context_slices: int = Field(
        0, ge=0, description="2.5D: neighbouring slices on each side as extra channels"
    )
    fold: int | None = Field(
        None,
        ge=0,
        description="cross-validation: train on fold k of the dataset's K folds (prepare --folds K): "
        "validation = fold k's cases, train = the other folds' cases, slices picked by case id from train/ "
        "and valid/; null = the folders as they are. Set by segkit train --fold and segkit cv",
    )
    patches: bool = Field(
        False,
        description="train on image_size patches cropped from the slices at their prepared size "
        "(zero-padded when smaller) instead of resizing whole slices; inference then uses a Gaussian "
        "sliding window, never a resize",
    )
    foreground_oversample: float = Field(
        0.33, ge=0, le=1, description="patches: share of training patches centred near a foreground pixel"
    )


# === Model ===


class TransUNetOptions(_Strict):
    """``model.transunet``: the Transformer over the deepest CNN map."""

    depth: int = Field(2, ge=1, le=24, description="Transformer layers (the paper: 12)")
    heads: int = Field(4, ge=1, le=64, description="attention heads per layer (the paper: 12)")
    mlp_ratio: float = Field(2.0, gt=0, le=16, description="MLP width / token width (the paper: 4)")


class SwinUNetOptions(_Strict):
    """``model.swinunet``: the (shifted-)window attention blocks."""

    window: int = Field(
        4,
        ge=1,
        le=32,
        description="largest window side in tokens (the paper: 7); each map uses "
        "the largest side up to it that divides the map (a 16x16 map and window 7: 4)",
    )
    heads: int = Field(4, ge=1, le=64, description="attention heads per block")


class MultiResUNetOptions(_Strict):
    """``model.multiresunet``: the MultiRes block width."""

    alpha: float = Field(
        1.67, gt=0, le=10, description="MultiRes block width factor W = alpha * filters (the paper's 1.67)"
    )


class EfficientUNetOptions(_Strict):
    """``model.efficientunet``: the encoder."""

    backbone: Literal["b0", "b1", "b2", "b3"] = Field(
        "b0", description="EfficientNetV2 variant (keras.applications, random initialisation)"
    )


class DeepLabV3PlusOptions(_Strict):
    """``model.deeplabv3plus``: the atrous spatial pyramid."""

    aspp_rates: tuple[int, int, int] | None = Field(
        None,
        description="dilation of the three 3x3 ASPP branches; null = the paper's (6, 12, 18) scaled to the "
        "deepest map",
    )

    @field_validator("aspp_rates")
    @classmethod
    def _positive(cls, v: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if v is not None and min(v) < 1:
            raise ValueError("dilation rates must be at least 1")
        return v


class UNet3PlusOptions(_Strict):
    """``model.unet3plus``: the full-scale skip branches."""

    cat_filters: int | None = Field(
        None,
        ge=1,
        le=512,
        description="channels of each full-scale branch; null = model.base_filters (the paper: 64)",
    )


class U2NetOptions(_Strict):
    """``model.u2net``: the residual U-blocks."""

    mid_ratio: float = Field(
        0.5, gt=0, le=4, description="inner channels of an RSU block / its output channels"
    )


# The names a config may give (``model.name``, ``loss.name``) and what each model reads, as plain data: this
# module stays free of TensorFlow, and a test checks the Keras registries (segkit.models.MODELS,
# segkit.losses.LOSSES) against these tables.

LEVEL_KEYS = ("base_filters", "num_layers", "max_filters", "norm")
"""Common ``model`` knobs every model reads: its resolution levels, their channels and normalisation."""
CONV_KEYS = ("base_kernels", "dilation", "dropout_rate", "block")
"""Common ``model`` knobs of the models built from FlexUNet's two-convolution blocks (kernel, dilation and
dropout per level, the order inside a block)."""
UNET_KEYS = frozenset(LEVEL_KEYS + CONV_KEYS)


@dataclass(frozen=True)
class ModelKeys:
    """What one registered model reads from the ``model`` section besides ``name`` and ``pretrained_weights``.

    Attributes:
        honours: the common knobs it reads (``LEVEL_KEYS``, plus ``CONV_KEYS`` where its blocks use them).
        section: the ``ModelConfig`` field holding its own options (``model.transunet``), or None.
        deep_supervision: it ends in FlexUNet's decoder (``segkit.models.flexunet.decoder``), whose
            level-``f`` output (at 1/2**f of the input) feeds the layer ``up{f-1}``:
            ``train.deep_supervision`` attaches its heads there.
    """

    honours: frozenset[str]
    section: str | None = None
    deep_supervision: bool = False

    def takes(self) -> str:
        """The keys it reads, for messages: ``model.base_filters, ..., model.u2net.*``."""
        keys = [f"model.{k}" for k in (*LEVEL_KEYS, *CONV_KEYS) if k in self.honours]
        return ", ".join(keys + ([f"model.{self.section}.*"] if self.section else []))


MODEL_CATALOG: Registry[ModelKeys] = Registry("model")
MODEL_CATALOG.register("flexunet")(ModelKeys(UNET_KEYS, deep_supervision=True))
MODEL_CATALOG.register("attention_unet")(ModelKeys(UNET_KEYS, deep_supervision=True))
MODEL_CATALOG.register("unet3plus")(ModelKeys(UNET_KEYS, "unet3plus"))
MODEL_CATALOG.register("multiresunet")(ModelKeys(frozenset(LEVEL_KEYS), "multiresunet"))
MODEL_CATALOG.register("sharpunet")(ModelKeys(UNET_KEYS, deep_supervision=True))
MODEL_CATALOG.register("u2net")(ModelKeys(frozenset(LEVEL_KEYS), "u2net"))
MODEL_CATALOG.register("deeplabv3plus")(ModelKeys(UNET_KEYS, "deeplabv3plus"))
MODEL_CATALOG.register("efficientunet")(ModelKeys(UNET_KEYS, "efficientunet", deep_supervision=True))
MODEL_CATALOG.register("transunet")(ModelKeys(UNET_KEYS, "transunet", deep_supervision=True))
MODEL_CATALOG.register("swinunet")(ModelKeys(UNET_KEYS, "swinunet"))
MODEL_CATALOG.alias("unet", "flexunet")

LOSS_NAMES: Registry[str] = Registry("loss")
for _loss in ("ce", "dice", "dice_ce", "focal", "tversky", "bce_dice"):
    LOSS_NAMES.register(_loss)(_loss)


def _known(registry: Registry[Any], name: str) -> str:
    """``name`` unchanged when ``registry`` knows it; else the registry's did-you-mean error, for pydantic."""
    try:
        registry.canonical(name)
    except SegkitError as e:
        raise PydanticCustomError(
            "unknown_name", "{message}", {"message": e.message, "hint": e.hint or ""}
        ) from None
    return name


class ModelConfig(_Strict):
    """Architecture, picked by ``name`` from the model registry (``MODEL_CATALOG``); the common knobs (each
    model reads those its ``ModelKeys.honours`` lists), then one section per model for its own options (read
    only when that model is chosen)."""

    name: str = Field("flexunet", description="a registered model (segkit models); 'unet' = flexunet")
    base_filters: int = Field(16, ge=1)
    base_kernels: int = Field(7, ge=1, description="kernel size at level 0; max(k - 2*i, 3) at level i")
    num_layers: int = Field(6, ge=2, le=10, description="resolution levels (num_layers - 1 poolings)")
    dropout_rate: float = Field(0.05, ge=0, lt=1)
    dilation: int = Field(1, ge=1)
    max_filters: int | None = Field(None, ge=1)
    norm: Literal["none", "batch", "group", "instance"] = "none"
    block: Literal["relu_norm", "norm_act", "residual"] = Field(
        "relu_norm",
        description="the two-convolution block: relu_norm (the seed's conv+ReLU then norm), norm_act (conv, "
        "norm, LeakyReLU: nnU-Net's order) or residual (norm_act with a shortcut around the pair: nnU-Net's "
        "residual encoder block)",
    )
    pretrained_weights: Path | None = Field(
        None,
        description="a local weights file (.weights.h5 or .keras of the same architecture) loaded into the "
        "new model before training; nothing is ever downloaded",
    )
    transunet: TransUNetOptions = TransUNetOptions()
    swinunet: SwinUNetOptions = SwinUNetOptions()
    multiresunet: MultiResUNetOptions = MultiResUNetOptions()
    efficientunet: EfficientUNetOptions = EfficientUNetOptions()
    deeplabv3plus: DeepLabV3PlusOptions = DeepLabV3PlusOptions()
    unet3plus: UNet3PlusOptions = UNet3PlusOptions()
    u2net: U2NetOptions = U2NetOptions()

    @field_validator("name")
    @classmethod
    def _known_model(cls, v: str) -> str:
        return _known(MODEL_CATALOG, v)

    def options_of(self, name: str) -> BaseModel | None:
        """The own options of model ``name``: the section its ``ModelKeys`` names, or None for none."""
        section = MODEL_CATALOG.get(name).section
        return None if section is None else getattr(self, section)


# === Loss ===


class LossConfig(_Strict):
    name: str = "dice_ce"
    class_weights: tuple[float, ...] | None = None
    focal_gamma: float = Field(2.0, ge=0)
    tversky_alpha: float = Field(0.3, ge=0, le=1)
    tversky_beta: float = Field(0.7, ge=0, le=1)

    @field_validator("name")
    @classmethod
    def _known_loss(cls, v: str) -> str:
        return _known(LOSS_NAMES, v)


# === Train ===


class ReduceLRConfig(_Strict):
    enabled: bool = True
    factor: float = Field(0.5, gt=0, lt=1)
    patience: int = Field(4, ge=0)
    min_lr: float = Field(1e-7, ge=0)


class EarlyStoppingConfig(_Strict):
    enabled: bool = True
    patience: int = Field(10, ge=0)


class EpochInferConfig(_Strict):
    enabled: bool = True
    num_images: int = Field(6, ge=1)


class TrainConfig(_Strict):
    epochs: int = Field(100, ge=1)
    choose_postprocessing: bool = Field(
        True,
        description="after training, decide on the validation volumes whether flip TTA and, per class, "
        "keeping the largest connected component raise Dice; the choice is stored as "
        "<run_dir>/postprocessing.json",
    )
    batch_size: int = Field(
        2, ge=1, description="global batch: samples per step over all replicas (each of N replicas gets "
        "batch_size / N); the same config trains the same way on 1 or N devices"
    )
    learning_rate: float = Field(1e-4, gt=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    clipvalue: float | None = Field(0.5, gt=0)
    steps_per_epoch: int | None = Field(None, ge=1)
    validation_steps: int | None = Field(None, ge=1)
    monitor: str = Field("val_fg_dice", description="metric for checkpoint, LR reduction, early stopping")
    model_checkpoint: Literal["best", "last"] = Field(
        "best",
        description="model.keras holds the epoch with the best train.monitor (best) or the final epoch "
        "(last: with a poly/cosine schedule the final weights are the annealed ones, and a few validation "
        "patients are a noisy judge of the best epoch; nnU-Net keeps its final checkpoint)",
    )
    reduce_lr: ReduceLRConfig = ReduceLRConfig()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    epoch_change_infer: EpochInferConfig = EpochInferConfig()
    run_dir: Path = Field(Path("runs/default"), description="outputs of this run (relative to cwd)")
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = Field(
        "auto",
        description="dtype policy; auto: mixed_float16 on a GPU, mixed_bfloat16 on a CPU with native "
        "bfloat16 (AMX or AVX512-BF16) when XLA is off, float32 otherwise (segkit.hardware)",
    )
    jit_compile: bool | Literal["auto"] = Field(
        False,
        description="compile with XLA (training and prediction); auto: on, except on a CPU with native "
        "bfloat16 (AMX or AVX512-BF16), where TensorFlow's own kernels are faster (segkit.hardware)",
    )
    tensorboard: bool = Field(
        False,
        description="write Keras TensorBoard logs (losses, metrics, learning rate per epoch) to "
        "<run_dir>/tensorboard; view with `tensorboard --logdir <run_dir>/tensorboard`",
    )
    time_limit: float | None = Field(
        None,
        gt=0,
        description="minutes of training wall time (resumes included); the run stops at the last epoch "
        "boundary that fits, so it always ends with a complete model.keras",
    )
    schedule: Literal["plateau", "constant", "poly", "cosine"] = Field(
        "plateau",
        description="learning-rate schedule: plateau (train.reduce_lr), constant, or poly (exponent 0.9) / "
        "cosine decay to zero over train.epochs or train.time_limit, whichever ends first",
    )
    warmup_epochs: float = Field(
        0.0, ge=0, description="linear learning-rate warm-up from 0 over this many epochs"
    )
    strategy: Literal["auto", "single", "mirrored", "multi_worker"] = Field(
        "auto",
        description="tf.distribute strategy: auto (mirrored when > 1 GPU is visible, else single), single "
        "(one device), mirrored (all GPUs of this machine, else its logical CPU devices), multi_worker "
        "(several machines from TF_CONFIG or a SLURM job step; README 'Scaling out')",
    )
    accumulate_steps: int = Field(
        1,
        ge=1,
        description="average the gradients of this many batches per optimizer update (effective batch = "
        "train.batch_size x accumulate_steps; single-replica runs only)",
    )
    lr_reference_batch: int | None = Field(
        None,
        ge=1,
        description="train.learning_rate is the rate for this global batch; it is scaled linearly to the "
        "effective batch (train.batch_size x train.accumulate_steps); null uses train.learning_rate as given",
    )
    deep_supervision: int = Field(
        0,
        ge=0,
        description="deep supervision (nnU-Net's): the decoder's outputs at this many levels below full "
        "resolution also get a 1x1 softmax head, up-sampled to the input size, and the loss; loss weights "
        "1/2^level, normalised to sum to 1 (loss and val_loss are that sum; the metrics and the saved model "
        "are the main output's); the models ending in FlexUNet's decoder, at most model.num_layers - 2 "
        "(nnU-Net's own choice is model.num_layers - 3)",
    )
    ema: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="momentum m of an exponential moving average of the trainable weights, per weight "
        "update (average = m x average + (1 - m) x weights; Keras' use_ema): validation, "
        "model.keras / last.keras, the previews and the post-processing choice use the average (BatchNorm "
        "statistics are the trained weights' own), the resume backup the trained weights; it spans about "
        "1 / (1 - m) updates (0.999: ~1,000); null: off",
    )
    include_valid: bool = Field(
        False,
        description="also train on the valid split (nnU-Net's fold 'all': every labelled case but the test "
        "cases, for a final model once the recipe is fixed); validation Dice and the post-processing choice "
        "then score cases the model has seen, so use it with model_checkpoint: last",
    )

    @field_validator("jit_compile", mode="before")
    @classmethod
    def _jit_compile(cls, v: Any) -> Any:
        """true, false or auto (any case); pydantic's own message for a union names an internal branch."""
        if isinstance(v, str) and v.strip().lower() == "auto":
            return "auto"
        if isinstance(v, bool) or (isinstance(v, str) and v.strip().lower() in _BOOL_WORDS):
            return v
        raise ValueError(f"{v!r}: give true, false or auto")

    @model_validator(mode="after")
    def _check_schedule(self) -> TrainConfig:
        if self.warmup_epochs > 0 and self.schedule == "plateau":
            raise ValueError(
                "train.warmup_epochs needs train.schedule constant, poly or cosine (not plateau)"
            )
        if self.include_valid and self.model_checkpoint == "best":
            raise ValueError("train.include_valid trains on the valid cases, which then cannot pick the best "
                             "epoch: set train.model_checkpoint: last")
        if self.accumulate_steps > 1 and self.strategy in ("mirrored", "multi_worker"):
            raise ValueError(
                f"train.accumulate_steps > 1 needs one replica (train.strategy single or auto), not "
                f"{self.strategy}: Keras 3 accumulates inside a cond that tf.distribute cannot all-reduce in"
            )
        return self


# === Augment ===


class Prob(_Strict):
    p: float = Field(0.0, ge=0, le=1)


class RotateAug(Prob):
    limit: float = Field(15.0, ge=0, le=180, description="degrees")


class ScaleAug(Prob):
    range: Range = (0.85, 1.15)


class ShiftAug(Prob):
    limit: float = Field(
        0.1, ge=0, le=0.5, description="fraction of the image's height (rows) and width (columns)"
    )


class ShearAug(Prob):
    limit: float = Field(10.0, ge=0, le=45, description="degrees")


class ElasticAug(Prob):
    alpha: float = Field(30.0, ge=0, description="displacement magnitude in pixels")
    sigma: float = Field(5.0, gt=0, description="smoothing of the displacement field in pixels")


class GridAug(Prob):
    num_steps: int = Field(5, ge=2)
    limit: float = Field(0.2, ge=0, lt=1)


class OpticalAug(Prob):
    """Radial distortion: k > 0 barrel, k < 0 pincushion."""

    k: Range = (-0.2, 0.2)


class IntensityAug(Prob):
    limit: float = Field(0.2, ge=0)


class GammaAug(Prob):
    range: Range = (0.8, 1.25)


class NoiseAug(Prob):
    std: float = Field(0.03, ge=0, description="fraction of the 0..1 intensity range")


class BlurAug(Prob):
    sigma: Range = (0.3, 1.2)


class AugmentConfig(_Strict):
    """Online augmentation; each transform fires with probability ``p`` (0 = off)."""

    enabled: bool = True
    interpolation: Literal["linear", "nearest"] = Field(
        "linear", description="image interpolation of geometric transforms (masks always use nearest)"
    )
    hflip: Prob = Prob(p=0.5)
    vflip: Prob = Prob(p=0.0)
    rotate: RotateAug = RotateAug(p=0.3)
    rotate90: Prob = Prob()
    scale: ScaleAug = ScaleAug(p=0.3)
    shift: ShiftAug = ShiftAug()
    shear: ShearAug = ShearAug()
    elastic: ElasticAug = ElasticAug()
    grid_distortion: GridAug = GridAug()
    optical_distortion: OpticalAug = OpticalAug()
    brightness: IntensityAug = IntensityAug(p=0.2)
    contrast: IntensityAug = IntensityAug(p=0.2)
    gamma: GammaAug = GammaAug()
    noise: NoiseAug = NoiseAug()
    blur: BlurAug = BlurAug()


# === Evaluate / infer ===


class EvaluateConfig(_Strict):
    split: Literal["train", "valid", "test"] = "test"
    nsd_tolerance_mm: float = Field(1.0, ge=0)
    output_dir: Path | None = Field(None, description="default: <run_dir>/evaluation")


class InferConfig(_Strict):
    batch_size: int = Field(8, ge=1)
    overlap: float = Field(
        0.5, ge=0, lt=1, description="sliding-window overlap for images larger than the model"
    )
    tta: bool | None = Field(
        None,
        description="flip test-time augmentation; null = the run's postprocessing.json decides (else off)",
    )
    largest_component: bool | tuple[int | Literal["foreground"], ...] | None = Field(
        None,
        description="keep the largest connected component (volumes): true = each class's own (not the "
        "foreground filter), or a list of class ids, where the token foreground keeps the largest piece of "
        "all classes together first, as nnU-Net does, e.g. [foreground, 1, 3]; null = the run's "
        "postprocessing.json (chosen on validation volumes by train) decides (else off)",
    )

    @field_validator("largest_component", mode="before")
    @classmethod
    def _component_targets(cls, v: Any) -> Any:
        """A bare number or an unknown word is refused (``1`` is not ``true``); ``foreground`` alone is the
        list ``[foreground]``; in a list the token goes first and repeats go."""
        hint = "give true, false, a list of class ids such as [1, 3], or foreground / [foreground, 1, 3]"
        if isinstance(v, int) and not isinstance(v, bool):
            raise ValueError(hint)
        if isinstance(v, str):
            if v.strip().lower() == "foreground":  # --set infer.largest_component=foreground
                return ["foreground"]
            if v.strip().lower() in _BOOL_WORDS:
                return v  # pydantic reads these as booleans
            raise ValueError(f"{v!r}: {hint}")
        if isinstance(v, list | tuple):
            fg = "foreground"
            items = [fg if isinstance(x, str) and x.strip().lower() == fg
                     else int(x) if isinstance(x, str) and x.strip().isdigit() else x for x in v]
            odd = [x for x in items if x != fg and (isinstance(x, bool) or not isinstance(x, int))]
            if odd:
                raise ValueError(f"{odd[0]!r}: {hint}")
            if 0 in items:
                raise ValueError(f"0 is the background, not a class: {hint}")
            return list(dict.fromkeys(([fg] if fg in items else []) + [x for x in items if x != fg]))
        return v

    alpha: float = Field(0.5, ge=0, le=1, description="overlay opacity")


# === Root ===


#: the coarse stage's sub-folder of a cascade's data.dir and train.run_dir (``Config.cascade_stages``)
COARSE_DIR = "coarse"


class CascadeConfig(_Strict):
    """A locate-then-segment cascade for full-field-of-view volumes (``segkit.predict.cascade``).

    A coarse model sees whole slices at ``coarse_size`` and finds the region of interest (the largest 3D
    component of its foreground); the main model (``model``, ``prepare.size``, ``data.image_size``) segments
    a crop around it. ``prepare`` writes both datasets: the fine one at ``data.dir`` from crops of the
    reference labels' box (+ ``margin_mm``, shifted by up to ``jitter_mm``, squared in mm) and the coarse one
    at ``<data.dir>/coarse``; ``train`` trains both into one run folder (the coarse run at
    ``<run_dir>/coarse``), sharing ``train.time_limit``.
    """

    enabled: bool = Field(False, description="train and predict as a coarse-then-fine cascade")
    coarse_size: Size2 = Field(
        (96, 96), description="whole-slice size (prepare and model input) of the coarse stage"
    )
    coarse_base_filters: int | None = Field(
        None, ge=1, description="the coarse model's model.base_filters (default: the same as the fine model)"
    )
    coarse_share: float = Field(
        0.25, gt=0, le=0.75,
        description="share of train.time_limit for the coarse stage (no limit: both run train.epochs)",
    )
    margin_mm: float = Field(15.0, ge=0, description="margin around the region of interest's box, in mm")
    jitter_mm: float = Field(
        5.0, ge=0, description="training crops: each side moved out by up to this many mm (seeded per case)"
    )
    refine_passes: int = Field(
        1, ge=0, le=3,
        description="inference: take the crop again from the fine stage's own prediction and segment it "
        "again, this many times (0: the coarse stage's crop only); stops early once the crop stays the same",
    )


class Config(_Strict):
    """A whole segkit config (one YAML file)."""

    name: str = "segkit"
    seed: int = 42
    modality: Literal["ct", "mr"] = "ct"
    classes: tuple[ClassSpec, ...]
    prepare: PrepareConfig = PrepareConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    augment: AugmentConfig = AugmentConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    infer: InferConfig = InferConfig()
    cascade: CascadeConfig = CascadeConfig()

    @model_validator(mode="before")
    @classmethod
    def _one_input_size(cls, raw: Any) -> Any:
        """``data.image_size`` not given: the model input is the prepared slice size (``prepare.size``), so
        one key decides the size and no slice is resized twice."""
        if isinstance(raw, dict) and isinstance(raw.get("prepare"), dict) and "size" in raw["prepare"]:
            data = raw.get("data")
            if data is None or (isinstance(data, dict) and "image_size" not in data):
                raw = {**raw, "data": {**(data or {}), "image_size": raw["prepare"]["size"]}}
        return raw

    @field_validator("classes")
    @classmethod
    def _check_classes(cls, v: tuple[ClassSpec, ...]) -> tuple[ClassSpec, ...]:
        if not v:
            raise ValueError("at least one foreground class is needed")
        ids = sorted(c.id for c in v)
        if ids != list(range(1, len(v) + 1)):
            raise ValueError(f"class ids must be 1..{len(v)} without gaps, got {ids}")
        colors = [tuple(c.color) for c in v]
        dup = {c for c in colors if colors.count(c) > 1}
        if dup:
            raise ValueError(f"two classes share the colour {sorted(dup)[0]}")
        return tuple(sorted(v, key=lambda c: c.id))

    def _check_instance_norm(self, div: int) -> None:
        """Instance norm over the deepest map of ``data.image_size`` (and ``cascade.coarse_size``) needs more
        than 2 pixels: over 1 or 2 it turns every feature into the norm's offset (plus or minus its scale)."""
        if self.model.norm != "instance":
            return
        sizes = [("data.image_size", self.data.image_size)]
        if self.cascade.enabled:
            sizes.append(("cascade.coarse_size", self.cascade.coarse_size))
        for key, (h, w) in sizes:
            if (h // div) * (w // div) <= 2:
                raise ValueError(
                    f"model.norm instance over the {h // div}x{w // div} deepest map of {key} {h}x{w} (after "
                    f"{self.model.num_layers - 1} poolings) normalises each channel over at most 2 pixels: "
                    "lower model.num_layers, raise the size, or use model.norm group")

    @model_validator(mode="after")
    def _check_cascade(self) -> Config:
        if self.cascade.enabled and self.data.patches:
            raise ValueError("cascade.enabled does not combine with data.patches: the fine stage already "
                             "sees a crop at prepare.size; set data.patches: false")
        if self.cascade.enabled and self.train.strategy == "multi_worker":
            raise ValueError("cascade.enabled does not train under train.strategy multi_worker yet: use "
                             "single, mirrored or auto")
        div = 2 ** (self.model.num_layers - 1)
        h, w = self.cascade.coarse_size
        if self.cascade.enabled and (h % div or w % div):  # the coarse model has the fine one's levels
            down = (max(h // div, 1) * div, max(w // div, 1) * div)
            up = (-(-h // div) * div, -(-w // div) * div)
            raise ValueError(f"cascade.coarse_size {h}x{w} is not divisible by {div} (model.num_layers="
                             f"{self.model.num_layers}): use {down[0]}x{down[1]} or {up[0]}x{up[1]}")
        self._check_instance_norm(div)
        ds = self.train.deep_supervision
        if ds and not MODEL_CATALOG.get(self.model.name).deep_supervision:
            able = ", ".join(n.replace("-", "_") for n in MODEL_CATALOG.names()
                             if MODEL_CATALOG.get(n).deep_supervision)
            raise ValueError(f"train.deep_supervision needs a model with FlexUNet's decoder ({able}), not "
                             f"{self.model.name}: set train.deep_supervision: 0 or change model.name")
        if ds > self.model.num_layers - 2:
            n = self.model.num_layers
            raise ValueError(f"train.deep_supervision {ds} is more than the {n - 2} decoder levels below "
                             f"full resolution that model.num_layers={n} has: set it to at most "
                             f"{max(n - 2, 0)} or raise model.num_layers")
        if self.train.include_valid and self.data.fold is not None:
            raise ValueError("train.include_valid does not combine with data.fold: a cross-validation fold's "
                             "valid cases are its held-out cases; unset one of them")
        clash = [k for k, on in (("cascade.enabled", self.cascade.enabled),
                                 ("data.patches", self.data.patches),
                                 ("data.context_slices", self.data.context_slices)) if on]
        if self.prepare.extra_axes and clash:
            what = clash[0]
            raise ValueError(f"prepare.extra_axes (multi-planar views) does not combine with {what} yet: "
                             "set prepare.extra_axes: [] (one plane) or unset the other")
        if self.cascade.enabled and self.prepare.spacing is not None:
            raise ValueError("cascade.enabled needs a fixed prepare.size for the crops, not prepare.spacing: "
                             "remove prepare.spacing")
        return self

    def cascade_stages(self) -> tuple[Config, Config]:
        """``(coarse, fine)``: the configs of a cascade's two stages (``cascade.enabled``).

        The coarse stage sees whole slices at ``cascade.coarse_size`` (prepare and model input, no crop),
        with its data at ``<data.dir>/coarse`` and its run at ``<train.run_dir>/coarse``,
        ``cascade.coarse_base_filters`` and ``cascade.coarse_share`` of ``train.time_limit``; it chooses no
        post-processing (its foreground's largest 3D component is taken anyway). The fine stage is this
        config with the rest of the time limit.
        """
        c = self.cascade
        limit = self.train.time_limit
        coarse = self.model_copy(update={
            "cascade": c.model_copy(update={"enabled": False}),
            "prepare": self.prepare.model_copy(update={"size": tuple(c.coarse_size)}),
            "data": self.data.model_copy(update={"image_size": tuple(c.coarse_size),
                                                 "dir": Path(self.data.dir) / COARSE_DIR}),
            "model": self.model.model_copy(
                update={"base_filters": c.coarse_base_filters or self.model.base_filters}),
            "train": self.train.model_copy(update={
                "run_dir": Path(self.train.run_dir) / COARSE_DIR,
                "time_limit": None if limit is None else limit * c.coarse_share,
                "choose_postprocessing": False}),
        })
        fine = self.model_copy(update={"train": self.train.model_copy(update={
            "time_limit": None if limit is None else limit * (1 - c.coarse_share)})})
        return coarse, fine

    @property
    def effective_classes(self) -> tuple[ClassSpec, ...]:
        """The classes of the prepared dataset: one 'foreground' class when ``prepare.binary``."""
        if self.prepare.binary:
            return (ClassSpec(id=1, name="foreground", color=self.classes[0].color),)
        return self.classes

    @property
    def num_classes(self) -> int:
        """Model output channels, background included."""
        return len(self.effective_classes) + 1

    def prepare_fingerprint(self) -> str:
        """sha256 of everything that decides what ``prepare`` writes (classes, modality, prepare section)."""
        blob = json.dumps(
            {
                # a concept names a class, it does not change the prepared data
                "classes": [c.model_dump(mode="json", exclude={"concept"}) for c in self.classes],
                "modality": self.modality,
                # empty_labels only decides whether to complain, not what is written
                # slabs, extra_axes: absent unless set (the fingerprints of datasets prepared before them
                # are kept)
                "prepare": self.prepare.model_dump(mode="json", exclude={"empty_labels"} | (
                    {"slabs", "slab_gap_mm"} if self.prepare.slabs is None else set()) | (
                    set() if self.prepare.extra_axes else {"extra_axes"})),
                # a cascade's fine dataset holds crops (margin, jitter); absent otherwise (old keys kept)
                **({"cascade": self.cascade.model_dump(
                    mode="json", include={"margin_mm", "jitter_mm"})} if self.cascade.enabled else {}),
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, default_flow_style=None)

    def to_commented_yaml(self, source_text: str) -> str:
        """``to_yaml`` with the comments of ``source_text`` (the YAML this config was loaded from, e.g. a
        preset) kept: its opening comment block, the comment lines above a key and a key's end-of-line
        comment, each put at the same key of the resolved text (see ``carry_comments``)."""
        return carry_comments(self.to_yaml(), source_text)

    def to_yaml_data(self) -> dict[str, Any]:
        """The config as plain data, exactly as its ``to_yaml`` text reads back."""
        data: dict[str, Any] = yaml.safe_load(self.to_yaml())
        return data


_KEY_LINE = re.compile(r"^(?P<indent> *)(?:- )?(?P<key>[A-Za-z0-9_]+):(?P<rest>.*)$")
_TRAILING = re.compile(r"\s+(#.*)$")


def _comments_by_key(text: str) -> tuple[list[str], dict[tuple[str, ...], tuple[list[str], str]]]:
    """The opening comment block of a YAML text, and per dotted key path the comment lines just above it
    and its end-of-line comment (block-style mappings; a flow mapping is one key)."""
    head: list[str] = []
    found: dict[tuple[str, ...], tuple[list[str], str]] = {}
    stack: list[tuple[int, str]] = []
    above: list[str] = []
    seen_key = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            if not seen_key:
                head.append(line)
            elif stripped:
                above.append(stripped)
            continue
        m = _KEY_LINE.match(line)
        if m is None:
            above = []
            continue
        seen_key = True
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m["key"]))
        trailing = _TRAILING.search(m["rest"]) if "#" in m["rest"] else None
        found[tuple(k for _, k in stack)] = (above, trailing.group(1) if trailing else "")
        above = []
    while head and not head[-1].strip():
        head.pop()
    return head, found


def carry_comments(resolved: str, source_text: str) -> str:
    """``resolved`` YAML with the comments of ``source_text`` at the same keys (``Config.to_commented_yaml``).
    Comments are only added, so the text loads to the same data."""
    head, found = _comments_by_key(source_text)
    out = [*head] + ([""] if head else [])
    stack: list[tuple[int, str]] = []
    for line in resolved.splitlines():
        m = _KEY_LINE.match(line)
        if m is None:
            out.append(line)
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m["key"]))
        above, trailing = found.get(tuple(k for _, k in stack), ([], ""))
        out += [" " * indent + c for c in above]
        out.append(f"{line}  {trailing}" if trailing else line)
    return "\n".join(out) + "\n"


# === Presets ===

PRESET_SUFFIX = ".yaml"


def _presets_root() -> Traversable | None:
    """The folder of the presets: ``configs/`` of the source checkout segkit is imported from (an editable
    install or PYTHONPATH: the presets of the code that runs, whatever else is installed), else the package
        data
    ``segkit.presets`` of an installed wheel (``configs/`` mapped there by pyproject.toml); None if
    neither."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "configs").is_dir():
        return checkout / "configs"
    try:
        return importlib.resources.files("segkit.presets")
    except ModuleNotFoundError:
        return None


def _walk(folder: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in folder.iterdir():
        if entry.is_dir():
            if not entry.name.startswith(("_", ".")):
                yield from _walk(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(PRESET_SUFFIX):
            yield prefix + entry.name[: -len(PRESET_SUFFIX)], entry


def _presets() -> dict[str, Traversable]:
    root = _presets_root()
    found = dict(_walk(root)) if root is not None and root.is_dir() else {}
    return dict(sorted(found.items(), key=lambda item: (item[0].count("/"), item[0])))


def preset_names() -> list[str]:
    """The names of the packaged presets: ``demo``, ``left-atrial``, ..., then ``seed/left-atrial``, ...
    (the YAML files of ``configs/`` without ``.yaml``; top-level ones first)."""
    return list(_presets())


def preset_description(name: str) -> str:
    """The first comment line of preset ``name`` (without ``#``), or ``""``."""
    for line in preset_path(name).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def preset_path(name: str | Path) -> Path:
    """The file of the preset ``name`` (``left-atrial``, ``left-atrial.yaml`` or ``seed/whole-heart``); only
    the packaged presets are looked at, never the working directory.

    Raises:
        ConfigError: no preset has that name (the hint lists them, with the closest one).
    """
    key = _preset_key(name)
    found = _presets().get(key)
    if found is None:
        raise ConfigError(f"no preset named '{key}'", hint=_presets_hint(key))
    if not isinstance(found, Path):  # e.g. segkit imported from a zip archive
        raise ConfigError(
            f"preset '{key}' is not a file on disk ({found})",
            hint="install segkit unpacked (pip install), or give the path of a YAML file",
        )
    return found


def resolve_config_path(name_or_path: str | Path) -> Path:
    """The YAML file a CONFIG argument means, the one place names become files. In this order: an existing
    file; a run folder (made by ``segkit train``: its ``config.yaml``); a preset name (``left-atrial``,
    ``left-atrial.yaml``, ``seed/whole-heart``: see ``preset_names``).

    Raises:
        ConfigError: none of these (the hint names the closest preset and lists them).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.is_dir() and (path / "config.yaml").is_file():
        return path / "config.yaml"
    key = _preset_key(name_or_path)
    if not path.is_absolute() and key in _presets():
        return preset_path(key)
    if path.is_dir():
        raise ConfigError(
            "not a segkit run folder (config.yaml missing)",
            path=path,
            hint="give a YAML config, a folder made by segkit train, or a preset name",
        )
    if path.is_absolute():
        hint = "give the path of a YAML file, or a preset name (segkit config presets), e.g. demo"
    else:
        hint = _presets_hint(key)
    raise ConfigError("config file not found, nor a preset of that name", path=path, hint=hint)


def _preset_key(name: str | Path) -> str:
    key = str(name).replace("\\", "/").strip("/")
    return key[: -len(PRESET_SUFFIX)] if key.endswith(PRESET_SUFFIX) else key


def _presets_hint(key: str) -> str:
    names = preset_names()
    if not names:
        return "give the path of a YAML file (no presets are installed with this segkit)"
    close = difflib.get_close_matches(key.removeprefix("configs/"), names, n=1, cutoff=0.6)
    mean = f"did you mean '{close[0]}'? " if close else ""
    return f"{mean}give the path of a YAML file or a preset: {', '.join(names)}"


# === Loading ===


def load_config(path: Path | str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, merge overrides into, and validate a YAML config.

    Model keys the chosen model does not read (see ``check_model_keys``) are refused when the user set them
    (an override, or their own file) and only warned about when a preset or a resolved config (a run's
    ``config.yaml``) brought them.

    Args:
        path: the YAML file, a run folder (its ``config.yaml``) or the name of a preset (``left-atrial``,
            ``seed/whole-heart``); see ``resolve_config_path``.
        overrides: ``dotted.key=value`` strings; values are parsed as YAML scalars/lists.

    Returns:
        A frozen, validated ``Config``.

    Raises:
        ConfigError: missing/unreadable file or unknown preset, bad YAML, unknown key, wrong type, bad
            override, a model key set for a model that does not read it.
    """
    path = resolve_config_path(path)
    raw = parse_yaml_text(_read_config_text(path), path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            "a config must be a YAML mapping of sections",
            path=path,
            hint="start from configs/demo.yaml (sections: prepare, data, model, train, ...)",
        )
    from_file = copy.deepcopy(raw.get("model"))
    from_sets: dict[str, Any] = {}
    for item in overrides:
        apply_override(raw, item)
        apply_override(from_sets, item)
    preset = is_preset_file(path)
    size_follows = preset and _size_follows_prepare(raw, from_sets)
    # a list given for prepare.size moves image_size too (a wrong type stays one error, on prepare.size)
    if size_follows and isinstance((from_sets.get("prepare") or {}).get("size"), list):
        raw["data"]["image_size"] = raw["prepare"]["size"]
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        message, hint = _describe(e)
        if _set_by(from_sets, tuple(e.errors()[0]["loc"])):  # the user's --set, not the file, is wrong
            raise ConfigError(message, path="--set", hint=hint or _set_hint(e)) from e
        raise ConfigError(message, path=path, hint=hint) from e
    inherited = preset or _lists_every_model_key(from_file)
    check_model_keys(cfg, ModelKeySources(path, from_file, from_sets.get("model"), inherited))
    return adopt_prepared_size(cfg) if size_follows else cfg


def _read_config_text(path: Path) -> str:
    """The text of a config file; a binary file (a volume, an image, an archive) is refused in one line."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(
            f"cannot read config: {e.strerror or e}", path=path, hint="give a readable YAML file"
        ) from e
    try:
        if b"\0" in data[:8192]:
            raise UnicodeDecodeError("utf-8", data[:1], 0, 1, "NUL byte")
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            "not a YAML config (a binary file: a volume, an image or an archive?)",
            path=path,
            hint="CONFIG is a YAML file, a run folder or a preset name (`segkit config presets`); "
            "data goes to `segkit prepare` or `segkit infer CONFIG --input PATH`",
        ) from e


def _size_follows_prepare(raw: dict[str, Any], from_sets: dict[str, Any]) -> bool:
    """True when ``data.image_size`` should follow the prepared size: the user did not set it (``--set``),
    and whole slices are trained (``data.patches`` crops patches of image_size on purpose)."""
    data = raw.get("data")
    if not isinstance(data, dict) or data.get("patches"):
        return False
    return "image_size" not in (from_sets.get("data") or {})


def adopt_prepared_size(cfg: Config) -> Config:
    """``cfg`` with ``data.image_size`` set to the slice size of the dataset already prepared in
    ``data.dir`` (its ``dataset.json``), when that differs: a preset's image_size must not silently resize
    slices prepared with ``--set prepare.size=...``. No dataset there, or an unreadable one: ``cfg``."""
    manifest = Path(cfg.data.dir) / "dataset.json"
    try:
        size = tuple(json.loads(manifest.read_text(encoding="utf-8"))["prepare"]["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return cfg
    if len(size) != 2 or size == tuple(cfg.data.image_size) or not all(isinstance(v, int) for v in size):
        return cfg
    logger.info(
        "data.image_size: %dx%d as prepared in %s (not the preset's %dx%d, which would resize every slice; "
        "--set data.image_size=[H,W] chooses)",
        size[0], size[1], cfg.data.dir, *cfg.data.image_size,
    )
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"image_size": size})})


def _set_by(from_sets: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    """True when an override wrote the key at ``loc`` (or a section above it)."""
    node: Any = from_sets
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
        if not isinstance(node, dict):
            return True
    return True


def _set_hint(e: ValidationError) -> str:
    """A hint for an override of the wrong type: how lists and strings are written after ``--set``."""
    first = e.errors()[0]
    dotted = ".".join(str(p) for p in first["loc"])
    if first["type"] in ("tuple_type", "list_type", "too_short", "too_long"):
        return f"a list is written in brackets and quoted, e.g. --set '{dotted}=[96,96]'"
    return f"`segkit config show CONFIG` shows {dotted} with its current value and type"


@dataclass(frozen=True)
class ModelKeySources:
    """Where the ``model`` keys of a loaded config came from.

    Attributes:
        path: the config file.
        file: its ``model`` mapping as written (None: no such section).
        overrides: the ``model`` mapping the overrides (``--set``) wrote (None: none).
        inherited: the file is a preset, or a resolved config listing every key (a run's ``config.yaml``,
            ``segkit config show`` output): its keys were not picked one by one.
    """

    path: Path
    file: Any
    overrides: Any
    inherited: bool


def check_model_keys(cfg: Config, sources: ModelKeySources) -> None:
    """Refuse or warn about model keys that ``cfg.model.name`` does not read.

    A key the model does not read is a common knob outside its ``ModelKeys.honours`` or another model's
    section (``model.transunet.*`` for u2net). Set by an override or in the user's own file: refused. Brought
    by an inherited file (``ModelKeySources.inherited``) with a value other than the default: one warning line
    (``segkit train left-atrial --set model.name=u2net`` runs). Defaults never count.

    Raises:
        ConfigError: one line naming the model, the keys, and the keys it takes.
    """
    name = cfg.model.name
    keys = MODEL_CATALOG.get(name)
    set_keys = [k for k in _model_keys(sources.overrides) if _unused(keys, k)]
    from_file = [k for k in _model_keys(sources.file) if _unused(keys, k) and k not in set_keys]
    refused = set_keys + ([] if sources.inherited else from_file)
    if refused:
        where: Path | str = sources.path if any(k in from_file for k in refused) else "--set"
        raise ConfigError(
            f"model '{name}' does not use {', '.join(f'model.{k}' for k in refused)}",
            path=where,
            hint=f"{name} takes {keys.takes()}; remove the others or choose a model that uses them",
        )
    default = ModelConfig()
    ignored = (
        [k for k in from_file if _value(cfg.model, k) != _value(default, k)] if sources.inherited else []
    )
    if ignored:
        logger.warning(
            "%s: model '%s' does not use %s (ignored; it takes %s)",
            sources.path,
            name,
            ", ".join(f"model.{k}" for k in ignored),
            keys.takes(),
        )


def is_preset_file(path: Path) -> bool:
    """True when ``path`` is one of the packaged presets (a file inside the presets folder)."""
    root = _presets_root()
    if not isinstance(root, Path):
        return False
    return path.resolve().is_relative_to(root.resolve())


RESOLVED_MODEL_KEYS = frozenset({"name", *LEVEL_KEYS, "base_kernels", "dilation", "dropout_rate"})
"""The ``model`` keys every resolved config (``Config.to_yaml``: a run folder's config.yaml) has listed, also
those saved before a later key (``block``) existed."""


def _lists_every_model_key(model: Any) -> bool:
    """True for a ``model`` mapping holding every key a resolved config has (``RESOLVED_MODEL_KEYS``)."""
    return isinstance(model, dict) and RESOLVED_MODEL_KEYS <= set(model)


def _model_keys(model: Any) -> list[str]:
    """The keys of a raw ``model`` mapping, dotted below ``model`` (``dropout_rate``, ``transunet.depth``)."""
    if not isinstance(model, dict):
        return []
    keys = []
    for key, value in model.items():
        if isinstance(value, dict):
            keys += [f"{key}.{sub}" for sub in value] or [key]
        else:
            keys.append(key)
    return keys


def _unused(keys: ModelKeys, dotted: str) -> bool:
    """True when ``dotted`` (below ``model``) is a common knob or a model section that ``keys`` does not
    read."""
    head = dotted.split(".")[0]
    if head in LEVEL_KEYS or head in CONV_KEYS:
        return head not in keys.honours
    sections = {k.section for k in map(MODEL_CATALOG.get, MODEL_CATALOG.names())}
    return head in sections and head != keys.section


def _value(model: ModelConfig, dotted: str) -> Any:
    node: Any = model
    for part in dotted.split("."):
        node = getattr(node, part, None)
    return node


def parse_yaml_text(text: str, path: Path | str | None = None) -> Any:
    """The data of a YAML document (``yaml.safe_load``; ``None`` when empty): a config file's text, or a run's
    saved ``config.yaml`` (``segkit.train.fit.config_difference``).

    Raises:
        ConfigError: the text is not valid YAML (the line, and ``path`` when given).
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"invalid YAML{where}: {getattr(e, 'problem', e)}",
            path=path,
            hint="fix the YAML syntax there (indentation, a missing ':' or quote)",
        ) from e


def validate_config(raw: dict[str, Any], source: Path | str | None = None) -> Config:
    """Validate a plain dict as a ``Config``; errors name the dotted key (see ``load_config``)."""
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        message, hint = _describe(e)
        raise ConfigError(message, path=source, hint=hint) from e


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in a nested dict in place (value parsed with ``yaml.safe_load``)."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{item}' is not KEY=VALUE", hint="use e.g. --set train.epochs=2")
    parts = key.split(".")
    node: dict[str, Any] = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(
                f"override '{item}': '{'.'.join(parts[: i + 1])}' is not a section",
                hint="`segkit config show CONFIG` lists every key",
            )
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(
            f"override '{item}': value is not valid YAML",
            hint="quote it, e.g. --set 'data.image_size=[128,128]'",
        ) from e


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the field at ``loc`` (skipping list indices)."""
    model: type[BaseModel] | None = Config
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        candidates = [ann, *args]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return model


def _describe(e: ValidationError) -> tuple[str, str | None]:
    """The message naming the dotted key of the first problem, and a hint (an unknown name's did-you-mean)."""
    errors = e.errors()
    first = errors[0]
    loc = tuple(first["loc"])
    dotted = ".".join(str(p) for p in loc) or "(root)"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    if first["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        valid = list(parent.model_fields) if parent is not None else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{'.'.join(str(p) for p in (*loc[:-1], close[0]))}'?" if close else ""
        return f"unknown key '{dotted}'{hint} valid keys here: {', '.join(valid)}{more}", None
    if first["type"] == "missing":
        return f"missing key '{dotted}'{more}", None
    if first["type"] == "unknown_name":
        ctx = first.get("ctx") or {}
        return f"key '{dotted}': {ctx.get('message')}{more}", ctx.get("hint") or None
    got = first.get("input")
    got_s = repr(got) if not isinstance(got, dict | list) else type(got).__name__
    if len(got_s) > 40:
        got_s = got_s[:37] + "..."
    return f"key '{dotted}': {first['msg']} (got {got_s}){more}", None
