"""segkit.progress: the one progress protocol (``start(total, description)``, ``advance(n)``), its no-op
default, ``Part``, the CLI's rich adapter and what ``run_prepare`` reports through it.

evaluate / infer / post-processing report through it too: tests/unit/test_evaluate_volumes.py.
"""

from __future__ import annotations

from pathlib import Path

from segkit.progress import NULL_PROGRESS, NullProgress, Part, Progress


def test_null_progress_and_part(recording_progress) -> None:  # noqa: ANN001 - conftest.RecordingProgress
    null: Progress = NULL_PROGRESS
    assert isinstance(null, NullProgress)
    null.start(5, "x")
    null.advance()
    rec = recording_progress()
    rec.start(4, "job")
    part: Progress = Part(rec)
    part.start(2, "piece")  # the caller's task is already started: dropped
    part.advance(2)
    part.advance()
    assert rec.tasks == [("job", 4, 3)]


def test_rich_progress_draws_one_bar_per_start() -> None:
    from segkit.cli.common import RichProgress

    with RichProgress() as bar:
        bar.advance(1)  # before any start: nothing to advance, no error
        bar.start(3, "first")
        first = bar._bar
        assert first is not None
        bar.advance(2)
        assert first.tasks[0].description == "first" and first.tasks[0].completed == 2
        bar.start(1, "second")  # closes the first bar: rich draws one live display at a time
        assert not first.live.is_started and bar._bar is not first
        bar.advance()
        second = bar._bar
        assert second is not None and second.tasks[0].completed == 1
    assert bar._bar is None


def test_run_prepare_starts_once_and_advances_per_case(
    tmp_path: Path, repo_root: Path, recording_progress  # noqa: ANN001 - conftest.RecordingProgress
) -> None:
    from segkit.config import load_config
    from segkit.prepare import PrepareOptions, SourceOptions, run_prepare

    cfg = load_config(repo_root / "configs" / "demo.yaml", ["prepare.size=[32,32]"])
    rec = recording_progress()
    three = SourceOptions(phantom_n=3)
    report = run_prepare(
        "phantom", None, tmp_path / "data", cfg, PrepareOptions(workers=1, source_options=three), progress=rec
    )
    assert report.ok and rec.tasks == [("prepare", 3, 3)]
    rec = recording_progress()
    report = run_prepare("phantom", None, tmp_path / "verify", cfg,
                         PrepareOptions(workers=1, verify_only=True, source_options=three), progress=rec)
    assert report.ok and rec.tasks == [("verify", 3, 3)]
    rec = recording_progress()  # the shard 1/2 of the first dataset: its cases only, all already complete
    report = run_prepare("phantom", None, tmp_path / "data", cfg,
                         PrepareOptions(workers=1, shard=(1, 2), source_options=three), progress=rec)
    assert rec.tasks == [("prepare", 1, 1)] and len(report.skipped) == 1
