"""Subprocess driver of the distributed-training tests (tests/distributed/test_strategies.py).

A separate process because the logical CPU devices of ``mirrored`` must be configured before TensorFlow
initialises, and a multi-worker run needs one process per worker. Prints one JSON line (``RESULT {...}``).

    python worker.py mirrored CONFIG DATA OUT           # single vs mirrored on 2 logical CPUs, + resume
    python worker.py worker CONFIG DATA RUN INDEX PORTS   # one worker of a localhost cluster, + resume
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

TINY = [
    "data.image_size=[32,32]",
    "model.num_layers=2",
    "model.base_filters=4",
    "model.norm=group",
    "train.batch_size=4",
    "train.validation_steps=1",  # training: one pass over the 40 train slices, 10 steps of the global batch 4
    "train.learning_rate=0.003",
    "train.jit_compile=false",
    "train.epoch_change_infer.num_images=2",
]


def _cfg(config: str, data: str, run: Path, *extra: str):  # noqa: ANN202 - segkit Config
    from segkit.config import load_config

    return load_config(config, [*TINY, f"data.dir={data}", f"train.run_dir={run}", *extra])


def _weights(run: Path) -> list[float]:
    import keras
    import numpy as np

    model = keras.saving.load_model(run / "last.keras", compile=False)
    return [float(np.sum(w)) for w in model.get_weights()]


class Killed(Exception):
    """Raised from the progress callback after epoch 1's backup: the run stops as after ``kill -9``."""


def _kill_after_epoch_1(event) -> None:  # noqa: ANN001 - segkit.train.callbacks.TrainEvent
    if event.kind == "epoch_end" and event.epoch == 1:
        raise Killed


def mirrored(config: str, data: str, out: Path) -> dict:
    """Single: 2 epochs. Mirrored: killed after epoch 1 (backup written), then ``--resume`` with
    ``train.epochs=3`` and a time limit that stops it after epoch 2."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from segkit.train import callbacks as cb
    from segkit.train import train_model

    quiet = "train.epoch_change_infer.enabled=false"
    single = train_model(_cfg(config, data, out / "single", "train.epochs=2", "train.strategy=single", quiet))
    run = out / "mirrored"
    try:
        train_model(_cfg(config, data, run, "train.epochs=2", "train.strategy=mirrored", quiet),
                    progress=_kill_after_epoch_1)
    except Killed:
        pass
    backup = sorted(p.name for p in (run / "backup").iterdir())
    spent_min = cb.read_history_csv(run / "history.csv")[-1]["time_s"] / 60
    limit = f"train.time_limit={spent_min + 1 / 60:.6f}"  # room to resume, not for a third epoch
    second = train_model(_cfg(config, data, run, "train.epochs=3", "train.strategy=mirrored", quiet, limit),
                         resume=True)
    summary = json.loads((run / "train_summary.json").read_text())
    return {"single": single.history, "backup": backup, "second": second.history,
            "initial_epoch": second.initial_epoch, "stop": second.stop_reason, "summary": summary,
            "single_w": _weights(out / "single"), "mirrored_w": _weights(run)}


def worker(config: str, data: str, run: Path, index: int, ports: str) -> dict:
    """Epochs 1-2 where worker 1 gets SIGTERM at step 3 of epoch 2 (every worker must stop: ``Preempted``),
    then ``--resume`` from the backup of epoch 1, in the same process (the strategy is made once per
    process)."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports.split(",")]}
    os.environ["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    import keras
    import numpy as np

    import segkit.train.distributed as distributed
    from segkit.train import train_model

    class Sigterm(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if self.epoch == 1 and batch == 2:
                os.kill(os.getpid(), signal.SIGTERM)

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch

    held: list[list[float]] = []
    loop = distributed.fit_distributed

    def keep_weights(model, callbacks, plan):  # noqa: ANN001, ANN202 - the weights this worker ends with
        loop(model, [*callbacks, *([Sigterm()] if index == 1 and not held else [])], plan)
        held.append([float(np.sum(w)) for w in model.get_weights()])

    distributed.fit_distributed = keep_weights
    cfg = _cfg(config, data, run, "train.epochs=2", "train.strategy=multi_worker",
               "train.validation_steps=null")  # each worker: one pass over the 4 valid slices
    try:
        train_model(cfg)
        preempted = ""
    except distributed.Preempted as e:
        preempted = e.one_line()
    held.append([])
    backup = sorted(p.name for p in (run / "backup").iterdir()) if index == 0 else None
    second = train_model(cfg, resume=True)
    return {"index": index, "preempted": preempted, "backup": backup, "epochs": second.epochs_done,
            "initial_epoch": second.initial_epoch, "history": second.history, "weights": held[-1],
            "run_dir": str(second.run_dir), "file_weights": _weights(run) if index == 0 else None}


def main(argv: list[str]) -> None:
    if argv[0] == "mirrored":
        out = mirrored(argv[1], argv[2], Path(argv[3]))
    else:
        out = worker(argv[1], argv[2], Path(argv[3]), int(argv[4]), argv[5])
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
