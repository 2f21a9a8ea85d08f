"""Issue 21 stumble 4: without a terminal, training prints a status line at least every interval -- during the
first epoch's compile, within epochs, and during the post-processing choice -- and the ETA leaves the compile
epoch out."""

from __future__ import annotations

import time

import pytest

from segkit.cli.train import RichTrainProgress
from segkit.train.callbacks import ProgressReporter, TaskEvents, TrainEvent

INFO = {"model": "flexunet", "params": 1000, "gflops_per_image": 0.1, "precision": "float32",
        "jit_compile": True, "device": "CPU", "train_pairs": 8, "valid_pairs": 2, "batch_size": 4,
        "steps_per_epoch": 2, "initial_epoch": 0, "run_dir": "run"}


def test_status_lines_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    events: list[TrainEvent] = []
    with RichTrainProgress(interval_s=0.2) as progress:
        progress(TrainEvent("start", 0, 3, 0, 2, info=INFO))
        progress(TrainEvent("epoch_begin", 1, 3, 0, 2))
        time.sleep(0.7)  # the compile: no batch has finished
        compiling = capsys.readouterr().err
        progress(TrainEvent("batch", 1, 3, 1, 2, {"loss": 0.5, "fg_dice": 0.25}))
        time.sleep(0.5)
        stepping = capsys.readouterr().err
        progress(TrainEvent("epoch_end", 1, 3, 2, 2, {"loss": 0.5}, 10.0, 20.0))
        tasks = TaskEvents(lambda ev: (events.append(ev), progress(ev)), 1, 3)
        tasks.start(40, "postprocessing")
        tasks.advance(10)
        time.sleep(0.5)
        post = capsys.readouterr().err
        progress(TrainEvent("end", 1, 3))
        time.sleep(0.5)
    assert "epoch 1/3  step 0/2  compiling the model" in compiling
    assert compiling.count("compiling") >= 2  # repeated while it lasts
    assert "epoch 1/3  step 1/2  loss 0.5000  fg_dice 0.2500" in stepping
    assert "postprocessing: 40 slices to segment" in post and "postprocessing  step 10/40" in post
    assert [(e.kind, e.step, e.steps) for e in events] == [("task", 0, 40), ("task_step", 10, 40)]
    assert capsys.readouterr().err == ""  # nothing after the end


def test_eta_leaves_the_first_epoch_out() -> None:
    sent: list[TrainEvent] = []
    reporter = ProgressReporter(sent.append, epochs=10, steps=1)
    reporter.on_train_begin()
    t = [0.0]
    reporter._elapsed = lambda: t[0]  # type: ignore[method-assign]
    for epoch, end in enumerate((100.0, 110.0, 120.0)):  # 100 s with the compile, then 10 s per epoch
        reporter.on_epoch_begin(epoch)
        t[0] = end
        reporter.on_epoch_end(epoch)
    ends = [e for e in sent if e.kind == "epoch_end"]
    assert ends[0].eta_s == pytest.approx(900.0)  # one epoch known: 100 s x 9
    assert ends[1].eta_s == pytest.approx(80.0)  # 10 s x 8, not 55 s x 8
    assert ends[2].eta_s == pytest.approx(70.0)
