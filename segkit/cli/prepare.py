"""``segkit prepare``: raw dataset -> case-split 2D PNG dataset (a thin shell over ``run_prepare``)."""

from __future__ import annotations

import inspect
from pathlib import Path

import typer
from rich.table import Table

from segkit.cli.common import RichProgress, err, handle_errors, load, out
from segkit.config import preset_path
from segkit.errors import ConfigError, SegkitError
from segkit.prepare.report import PrepareReport
from segkit.prepare.run import PrepareOptions, parse_shard, run_prepare
from segkit.prepare.sources import SOURCES, SourceOptions

# "\b" keeps Click from rewrapping the paragraph that follows (one command a line)
_EPILOG = "Examples (one per source):\n\n\b\n" + "\n".join(
    f"  {SOURCES.get(name).example}" for name in SOURCES.names()
) + (
    "\n\n\b\n  segkit prepare hocm HOCMvalves/ --out data/hocm --shard 0/4   (and 1/4, 2/4, 3/4; same --out)"
    "\n  segkit prepare left-atrial Task02_Heart/ --verify   (checks the raw data, writes nothing)"
    "\n  segkit prepare alcapa ImageALCAPA/ --out data/alcapa --folds 5 --fold 2 --workers 4"
    "\n  segkit prepare left-atrial Task02_Heart/ --out data/la --splits splits_final.json --fold 0"
    "\n  segkit prepare nifti study/ --image-glob '*/dicom' --label-glob '*/label.nii.gz' --series 401 "
    "--config my.yaml"
)
_TILT_HELP = "DICOM: resample a gantry-tilted series onto an untilted grid (refused otherwise)."


def preset_config(source: str) -> Path:
    """The preset config of a source: ``configs/<preset>.yaml``, packaged as ``segkit.presets`` (never a file
    of that name in the working directory).

    Raises:
        SegkitError: the source has no preset (``nifti``: pass ``--config``).
    """
    adapter = SOURCES.get(source)
    if adapter.preset is None:
        raise ConfigError(
            f"source '{adapter.name}' has no preset config",
            hint="pass --config with the class table, e.g. --config configs/whole-heart.yaml",
        )
    return preset_path(adapter.preset)


@handle_errors
def prepare(
    source: str = typer.Argument(..., help=f"Source layout: {', '.join(SOURCES.names())}."),
    src: Path = typer.Argument(None, help="Raw dataset folder (not for 'phantom').", show_default=False),
    out_dir: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Dataset folder to write (DIR/{train,valid,test}/...); default: the config's data.dir.",
    ),
    config: Path = typer.Option(
        None, "--config", "-c", help="YAML config or preset name (default: the source's preset)."
    ),
    sets: list[str] = typer.Option(
        None, "--set", metavar="KEY=VALUE", help="Config override KEY=VALUE, e.g. prepare.size=[256,256]."
    ),
    workers: int = typer.Option(
        None, "--workers", "-j", min=1, help="Worker processes (default: all cores)."
    ),
    shard: str = typer.Option(
        None, "--shard", help="i/n: process every n-th case starting at i (array jobs)."
    ),
    folds: int = typer.Option(
        None, "--folds", min=2, help="K-fold split: K folds after holding out the test set."
    ),
    fold: int = typer.Option(
        None,
        "--fold",
        min=0,
        help="With --folds (or a --splits file with folds): the validation fold (0..K-1).",
    ),
    splits: Path = typer.Option(
        None,
        "--splits",
        help="Your own split: JSON with train/valid/test case lists, nnU-Net's splits_final.json, "
        "or test + folds.",
    ),
    binary: bool = typer.Option(False, "--binary", help="Merge every foreground class into one."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
    verify: bool = typer.Option(False, "--verify", help="Check the raw dataset only; write nothing."),
    n: int = typer.Option(6, "--n", min=1, help="phantom: number of cases."),
    seed: int = typer.Option(None, "--seed", help="phantom: generator seed (default: the config seed)."),
    image_glob: str = typer.Option(None, "--image-glob", help="nifti: image pattern with one '*' = case id."),
    label_glob: str = typer.Option(None, "--label-glob", help="nifti: label pattern with one '*' = case id."),
    series: str = typer.Option(
        None, "--series", help="An image (or label) holding several volumes (DICOM series, cine phases, a 4D "
        "NIfTI): the one to take, by series number (4), name as listed (s004_T1w, la_003_phase02) or glob "
        "('*_phase01')."
    ),
    resample_tilt: bool = typer.Option(False, "--resample-tilt", help=_TILT_HELP),
) -> None:
    """Turn a raw 3D dataset (or 2D slices) into a patient-split 2D PNG dataset.

    Writes DIR/{train,valid,test}/{images,masks}/<case>_<slice>.png, DIR/splits.json, DIR/summary.png and,
    last, DIR/dataset.json. Exit code 2 on bad input or when any case failed (each listed on stderr).
    """
    adapter = SOURCES.get(source)
    adapter.check_src(src)
    if not adapter.needs_src and src is not None:
        raise SegkitError(
            f"source '{adapter.name}' takes no SRC folder (got {src})", hint=f"e.g. {adapter.example}"
        )
    cfg = load(config or preset_config(adapter.name), sets)
    if out_dir is None and (not verify or not adapter.needs_src):
        out_dir = Path(cfg.data.dir)  # one key for the dataset folder: --out overrides data.dir
        err.print(f"writing to data.dir = {out_dir} (--out to choose another folder)", highlight=False,
                  soft_wrap=True)
    sources = SourceOptions(image_glob=image_glob, label_glob=label_glob, phantom_n=n, phantom_seed=seed,
                            series=series, resample_tilt=resample_tilt)
    options = PrepareOptions(workers=workers, shard=parse_shard(shard) if shard else None,
                             overwrite=overwrite, folds=folds, fold=fold, binary=binary, verify_only=verify,
                             splits_file=splits, source_options=sources)
    with RichProgress() as bar:  # "prepare" (or "verify"): one bar over the cases
        report = run_prepare(adapter.name, src, out_dir, cfg, options, progress=bar)
    _render(report)
    if report.coarse is not None:  # a cascade's second dataset (<out>/coarse)
        _render(report.coarse)
    if report.failures:
        for line in report.failures:
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2)


def _render(report: PrepareReport) -> None:
    if report.verify_only:
        state = "no problems found" if report.ok else f"{len(report.failures)} problem(s)"
        out.print(f"verify {report.source}: {report.n_cases} case(s), {state}")
        return
    if not report.summary:
        return
    splits = list(report.summary)
    classes = list(next(iter(report.summary.values()))["pixels"])
    table = Table(title=f"segkit prepare {report.source} -> {report.out}")
    table.add_column("split")
    table.add_column("cases", justify="right")
    table.add_column("slices", justify="right")
    for c in classes:
        table.add_column(f"{c} px", justify="right")
    for s in splits:
        row = report.summary[s]
        table.add_row(s, str(row["cases"]), str(row["slices"]), *(f"{row['pixels'][c]:,}" for c in classes))
    out.print(table)
    for line in report.warnings:
        typer.echo(f"warning: {line}", err=True)
    warned = f", {len(report.warnings)} warning(s)" if report.warnings else ""
    out.print(
        f"{len(report.done)} case(s) prepared, {len(report.skipped)} already complete, "
        f"{len(report.failures)} failed{warned}",
        highlight=False,
    )
    if report.manifest is not None:
        out.print(f"dataset complete: {report.manifest}  (summary chart: {report.summary_png})")
    elif report.pending:
        err.print(
            f"{report.pending} case(s) not prepared yet (other shards or failures): dataset.json not written"
        )


prepare.__doc__ = inspect.cleandoc(prepare.__doc__ or "") + "\n\n" + _EPILOG
