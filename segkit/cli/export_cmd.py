"""``segkit export``: a deployment bundle of a run folder (a thin shell over ``segkit.export``)."""

from __future__ import annotations

from pathlib import Path

import typer

from segkit.cli.common import handle_errors, out, quiet_tensorflow


@handle_errors
def export(
    run_dir: Path = typer.Argument(
        ..., help="A run folder (segkit train) or a cross-validation folder (segkit cv)."
    ),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx, litert or savedmodel."),
    output: Path = typer.Option(None, "--out", "-o", help="Bundle folder (default: RUN_DIR/export-FORMAT)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle folder."),
    licence: str = typer.Option(None, "--licence", help="Licence of the model, recorded in the model card."),
    quantize: str = typer.Option(
        None, "--quantize", help="int8 (with --format litert or onnx): post-training quantization (LiteRT "
        "converter, or ONNX Runtime static QDQ) calibrated on prepared training slices; its Dice cost on "
        "prepared validation slices is printed."
    ),
) -> None:
    """Write a self-contained bundle: the model, its pre- and post-processing and bundle.json.

    A cross-validation folder exports as one graph that averages its folds' probabilities. The bundle runs
    with `segkit infer BUNDLE --input ...` (ONNX and LiteRT without TensorFlow) or any runtime of its
    format. Layout:

    \b
    BUNDLE/
      bundle.json          format_version, model (file, input/output shape), classes, preprocessing,
                           postprocessing, inference settings, ensemble members, model_card, config,
                           export_check (max |dp| vs Keras), files (sha256 of every other file)
      model.onnx | model.tflite | saved_model/   (SavedModel endpoint: serve)
      preprocessing.json   the prepare recipe applied to new volumes
      postprocessing.json  the run's chosen TTA / largest-component filter (when it chose one)

    A model that does not convert to FORMAT is refused with one line naming the model, format and reason.
    """
    from segkit.export import ExportOptions, export_run

    quiet_tensorflow()
    res = export_run(run_dir, ExportOptions(fmt=fmt, out=output, overwrite=overwrite, licence=licence,
                                            quantize=quantize))
    members = f"ensemble of {len(res.members)}" if len(res.members) > 1 else res.members[0]
    out.print(f"{res.fmt} bundle ({members}, {res.size_bytes / 1e6:.1f} MB, max |dp| vs Keras "
              f"{res.max_abs_diff:.1e}) -> {res.bundle}")
    q = res.quantization
    if q is not None:
        out.print(f"int8 Dice on {q['slices']} prepared {q['split']} slices: {q['dice_int8']:.4f} "
                  f"(float32 {q['dice_float32']:.4f}, cost {q['dice_cost']:+.4f})")
        v = q.get("volumes")
        if v is not None:
            worst = v["cases"][v["worst_case"]]
            out.print(f"int8 Dice on {len(v['cases'])} whole validation volume(s): worst {v['worst_case']} "
                      f"{worst['dice_int8']:.4f} (float32 {worst['dice_float32']:.4f}, cost "
                      f"{worst['dice_cost']:+.4f})")
            if v["max_dice_cost"] > v["rule"]:
                out.print(f"warning: int8 costs more than {v['rule']:g} Dice on {v['worst_case']}: prefer "
                          "--format onnx --quantize int8, or a float32 bundle")
