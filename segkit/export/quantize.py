"""int8 post-training quantization of a LiteRT or ONNX bundle (``segkit export --format litert|onnx
--quantize int8``): calibration on prepared training slices, and the Dice it costs on prepared validation
slices.

- LiteRT: the TFLite converter's post-training quantization (``litert_int8``), int8 weights and activations
  except the group normalization arithmetic (``LITERT_FLOAT_OPS``), kept float32 by TensorFlow's
  selective quantization (``tf.lite.experimental.QuantizationDebugger`` with those ops denylisted).
- ONNX: ONNX Runtime static quantization (``onnx_int8``) of the float32 graph in QDQ format: per-channel
  int8 weights, uint8 activations (min-max calibration) around the convolutions, transposed convolutions,
  max-pools and ReLUs; the group normalization arithmetic and the softmax stay float32.

The quantized graph keeps float32 inputs and outputs, so it runs where a float32 bundle runs. On the
left-atrial bench runs' 3 test volumes (README, ``make bench-deploy``) ONNX int8 stayed within 1.1e-3 and
2.5e-3 of the float32 Dice per case; LiteRT int8 within 2.5e-3 on one run's model and 0.016 on the next's
(more calibration slices or more float32 ops did not help), and a full-integer LiteRT model (group
normalization in int8 too) was 0.027 away. The Dice cost printed here, on prepared validation slices (most
empty slices left out by prepare), showed none of these: it is a lower bound.

Example:
    >>> litert_int8(graph, Path("model.tflite"), cfg)
    >>> onnx_int8(Path("model.float.onnx"), Path("model.onnx"), cfg)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from segkit.errors import DataError
from segkit.metrics.overlap import class_counts, dice_from_counts

if TYPE_CHECKING:
    import keras

    from segkit.config import Config

logger = logging.getLogger(__name__)

CALIBRATION_SLICES = 64  # prepared training slices the activation ranges are calibrated on
DICE_SLICES = 128  # prepared validation slices the Dice cost is measured on
DICE_VOLUMES = 3  # whole validation volumes (their source files) the Dice cost is measured on as well
INT8_DICE_RULE = 0.01  # the largest Dice cost per validation volume an int8 bundle may have without a warning
LITERT_FLOAT_OPS = ("MEAN", "SQUARED_DIFFERENCE", "RSQRT", "MUL", "ADD", "SUB")  # group norm, kept float32
ONNX_INT8_OPS = ("Conv", "ConvTranspose", "MaxPool", "Relu")  # the ONNX ops quantized (QDQ around them)


def prepared_slices(cfg: Config, split: str, n: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    """Up to ``n`` evenly spaced slices of a prepared split as the model reads them (2.5D neighbours,
    ``data.image_size`` or the centre patch): images (n, H, W, C) float32, masks (n, H, W) uint8.

    Raises:
        DataError: the prepared dataset (``data.dir``) is missing or unreadable.
    """
    from segkit.data.pipeline import context_table, read_sample, split_pairs

    pairs = split_pairs(cfg, split)
    k = int(cfg.data.context_slices)
    ctx = context_table(pairs, k, Path(cfg.data.dir) / "dataset.json") if k else None
    picks = np.unique(np.linspace(0, len(pairs) - 1, min(n, len(pairs))).round().astype(int))
    samples = [read_sample(pairs, int(i), cfg, ctx, True if cfg.data.patches else None) for i in picks]
    return (np.stack([s[0] for s in samples]).astype(np.float32), np.stack([s[1] for s in samples]))


def litert_int8_kwargs(cfg: Config) -> dict[str, Any]:
    """The LiteRT converter settings of int8 post-training quantization, calibrated on
    ``CALIBRATION_SLICES`` prepared training slices."""
    import tensorflow as tf

    images, _ = prepared_slices(cfg, "train", CALIBRATION_SLICES)

    def representative() -> Iterator[list[npt.NDArray[np.float32]]]:
        for x in images:
            yield [x[None]]

    return {"optimizations": [tf.lite.Optimize.DEFAULT], "representative_dataset": representative}


def litert_int8(graph: keras.Model, out: Path, cfg: Config) -> None:
    """Write ``out``: ``graph`` as a LiteRT model with int8 post-training quantization (float32 input and
    output) calibrated on ``CALIBRATION_SLICES`` prepared training slices, the ``LITERT_FLOAT_OPS`` left in
    float32. The graph goes through a SavedModel in a temporary folder, as Keras' own LiteRT export does."""
    import tempfile
    import warnings

    import tensorflow as tf

    kwargs = litert_int8_kwargs(cfg)
    with tempfile.TemporaryDirectory(prefix="segkit-litert-") as saved:
        graph.export(saved, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.optimizations = kwargs["optimizations"]
        converter.representative_dataset = kwargs["representative_dataset"]
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(LITERT_FLOAT_OPS),
                                                                fully_quantize=False)
        with warnings.catch_warnings():  # the debugger calibrates with tf.lite.Interpreter (deprecated)
            warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=kwargs["representative_dataset"], debug_options=options)
            out.write_bytes(debugger.get_nondebug_quantized_model())


def onnx_int8(float_model: Path, out: Path, cfg: Config) -> None:
    """Write ``out``: ``float_model`` (ONNX, float32) statically quantized by ONNX Runtime (QDQ format,
    ``ONNX_INT8_OPS``), calibrated on ``CALIBRATION_SLICES`` prepared training slices, one slice per
    calibration batch. A shape-inferred copy of the float graph is written beside ``out`` and removed."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images, _ = prepared_slices(cfg, "train", CALIBRATION_SLICES)
    name = onnx.load(str(float_model)).graph.input[0].name

    class Slices(CalibrationDataReader):
        def __init__(self) -> None:
            self.rest = iter(images)

        def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
            x = next(self.rest, None)
            return None if x is None else {name: x[None]}

    inferred = out.with_name(out.name + ".shapes.onnx")
    try:
        quant_pre_process(str(float_model), str(inferred), skip_symbolic_shape=True)
        quantize_static(str(inferred), str(out), Slices(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(ONNX_INT8_OPS), per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        inferred.unlink(missing_ok=True)


def mean_dice(probs: npt.NDArray[np.float32], masks: npt.NDArray[np.uint8], num_classes: int) -> float:
    """Foreground Dice of the argmax of ``probs`` against ``masks``, pooled over the slices and averaged over
    the classes present in either."""
    return labels_dice(probs.argmax(-1).astype(np.uint8), masks, num_classes)


def labels_dice(pred: npt.NDArray[np.uint8], masks: npt.NDArray[np.uint8], num_classes: int) -> float:
    """Foreground Dice of class ids ``pred`` against ``masks`` (any shape), pooled over all their voxels and
    averaged over the classes present in either (1.0 when none is)."""
    scores = []
    for c in class_counts(pred, masks, range(1, num_classes)).values():
        if c.tp + c.fp + c.fn:
            scores.append(dice_from_counts(c.tp, c.fp, c.fn, empty="one"))
    return float(np.mean(scores)) if scores else 1.0


def dice_cost(keras_predict: Any, bundle_predict: Any, cfg: Config) -> dict[str, Any]:
    """Mean foreground Dice of the float32 Keras model and of the quantized bundle on ``DICE_SLICES``
    prepared validation slices, and their difference (float32 - int8)."""
    images, masks = prepared_slices(cfg, "valid", DICE_SLICES)
    batches = range(0, len(images), 16)
    p_float = np.concatenate([np.asarray(keras_predict(images[s:s + 16])) for s in batches])
    p_int8 = np.concatenate([np.asarray(bundle_predict(images[s:s + 16])) for s in batches])
    d_float, d_int8 = mean_dice(p_float, masks, cfg.num_classes), mean_dice(p_int8, masks, cfg.num_classes)
    return {"slices": int(len(images)), "split": "valid", "dice_float32": round(d_float, 4),
            "dice_int8": round(d_int8, 4), "dice_cost": round(d_float - d_int8, 4),
            "max_abs_dp": float(np.max(np.abs(p_float - p_int8)))}


def volume_dice_cost(keras_model: Any, bundle_model: Any, cfg: Config) -> dict[str, Any] | None:
    """Foreground Dice of the float32 Keras model and of the quantized bundle on up to ``DICE_VOLUMES`` whole
    validation volumes, read from their source files and segmented as ``segkit infer`` segments a volume
    (``segkit.predict.volume.predict_volume``; no TTA, no post-processing): per case, and the worst case's
    cost. A case whose sources cannot be read is skipped with a warning (the next one is taken).
    Prepared slices leave most empty slices out; whole volumes do not (a LiteRT int8 model cost 0.016 Dice
    on a volume while its prepared-slice cost said 0.005). None when no validation case has its sources.
    """
    from segkit.predict.cases import dataset_cases, read_source_case
    from segkit.predict.volume import VolumeSettings, predict_volume

    cases = dataset_cases(cfg, "valid")
    settings = VolumeSettings(batch_size=int(cfg.infer.batch_size))
    per_case: dict[str, dict[str, float]] = {}
    for case_id, record in cases.with_sources.items():
        if len(per_case) == DICE_VOLUMES:
            break
        try:
            case = read_source_case(case_id, record, cases.label_cfg)
        except DataError as e:
            logger.warning("int8 Dice: validation case %s skipped (%s)", case_id, e.one_line())
            continue
        if case is None:
            continue
        d = [labels_dice(predict_volume(m, case.image, case.geometry, cfg, settings).labels, case.reference,
                         cfg.num_classes) for m in (keras_model, bundle_model)]
        per_case[case_id] = {"dice_float32": round(d[0], 4), "dice_int8": round(d[1], 4),
                             "dice_cost": round(d[0] - d[1], 4)}
    if not per_case:
        return None
    worst = max(per_case, key=lambda c: per_case[c]["dice_cost"])
    return {"cases": per_case, "worst_case": worst, "max_dice_cost": per_case[worst]["dice_cost"],
            "rule": INT8_DICE_RULE}


__all__ = ["CALIBRATION_SLICES", "DICE_SLICES", "DICE_VOLUMES", "INT8_DICE_RULE", "LITERT_FLOAT_OPS",
           "ONNX_INT8_OPS", "dice_cost", "labels_dice", "litert_int8", "litert_int8_kwargs", "mean_dice",
           "onnx_int8", "prepared_slices", "volume_dice_cost"]
