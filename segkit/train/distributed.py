"""Multi-worker training (``train.strategy: multi_worker``): a custom loop in place of Keras' ``fit``.

Keras 3 ``model.fit`` under ``tf.distribute.MultiWorkerMirroredStrategy`` fails in every worker with
``ValueError: Attempt to convert a value (PerReplica:...)`` (keras-team/keras#20585,
tensorflow/tensorflow#72388; reproduced with TF 2.21 / Keras 3.15). ``fit_distributed`` runs the same steps
itself: ``strategy.distribute_datasets_from_function`` feeds each worker its own shard of every epoch
(``segkit.data.pipeline.Shard``), ``strategy.run(model.train_step)`` trains (Keras' own step: the loss is
scaled by the replica count, the optimizer all-reduces the gradients, the compiled metrics sum over all
replicas) and ``strategy.run(model.test_step)`` validates on the sharded valid split. The run's Keras
callbacks (history, checkpoints, backup, schedules, early stopping, time limit, progress) are driven through a
``keras.callbacks.CallbackList``, so they behave as under ``fit``.

Every worker sees the same logs (the metrics are all-reduced), so the callbacks decide the same; the one
decision made from a local clock (``train.time_limit``), SIGTERM and a NaN loss are agreed on by an all-reduce
(``any_worker``) before any worker stops. Only the chief writes the run folder; the other workers write to a
private temporary folder (``worker_run_dir``), seeded from the chief's folder on ``--resume`` (the run folder
must be on a filesystem all workers read, as on a cluster's shared home or scratch).

A worker that dies leaves the others blocked in a collective: it fails after
``segkit.train.strategy.COLLECTIVE_TIMEOUT_S`` (or earlier by TensorFlow's peer health check) and is reported
as ``WorkerLost``. SIGTERM (SLURM preemption) stops every worker at the next step; the run folder keeps the
backup of the last completed epoch and ``--resume`` continues from it (``Preempted``).

Example:
    >>> fit_distributed(model, callbacks, LoopPlan(cfg, dist, initial_epoch=0, steps=20, val_steps=4))
"""

from __future__ import annotations

import logging
import math
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segkit.errors import ConfigError, SegkitError
from segkit.io.run_folder import (
    BACKUP_DIR,
    CONFIG_FILE,
    HISTORY_CSV,
    HISTORY_JSON,
    LAST_MODEL_FILE,
    MODEL_FILE,
)

if TYPE_CHECKING:
    import keras

    from segkit.config import Config
    from segkit.train.strategy import Distribution

log = logging.getLogger(__name__)

# What a non-chief worker copies from the chief's run folder to resume in its own (the restore reads these).
_RESUME_FILES = (CONFIG_FILE, HISTORY_CSV, HISTORY_JSON, LAST_MODEL_FILE, MODEL_FILE)


class WorkerLost(SegkitError):
    """Another worker of a multi-worker run stopped answering (it died, or its machine did)."""


class Preempted(SegkitError):
    """The run received SIGTERM (e.g. SLURM preemption) and stopped; ``--resume`` continues it."""


@dataclass(frozen=True)
class LoopPlan:
    """What ``fit_distributed`` runs.

    Attributes:
        cfg: the validated config.
        dist: the ``multi_worker`` distribution.
        initial_epoch: epochs already done (resume).
        steps: training steps per epoch (global batches).
        val_steps: ``train.validation_steps`` when set (else ``_val_steps`` makes one pass of ``n_valid``).
        n_valid: image/mask pairs of the valid split.
    """

    cfg: Config
    dist: Distribution
    initial_epoch: int
    steps: int
    val_steps: int
    n_valid: int = 0


def worker_run_dir(run_dir: Path, resuming: bool) -> Path:
    """A private temporary run folder for a non-chief worker; when ``resuming``, holding a copy of what the
    restore reads from the chief's ``run_dir`` (``backup/``, ``history.csv``, the model files)."""
    tmp = Path(tempfile.mkdtemp(prefix="segkit-worker-"))
    if resuming:
        for name in _RESUME_FILES:
            try:
                shutil.copy2(run_dir / name, tmp / name)
            except FileNotFoundError:
                pass
        if (run_dir / BACKUP_DIR).is_dir():
            shutil.copytree(run_dir / BACKUP_DIR, tmp / BACKUP_DIR, dirs_exist_ok=True)
    return tmp


@contextmanager
def sigterm_flag() -> Iterator[list[bool]]:
    """While open, SIGTERM sets ``flag[0]`` instead of killing the process (restored on exit)."""
    flag = [False]

    def handler(signum: int, frame: Any) -> None:
        flag[0] = True
        log.warning("SIGTERM: stopping at the next step (the backup of the last completed epoch stays)")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: SIGTERM keeps its handler
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def _datasets(plan: LoopPlan) -> tuple[Any, Any]:
    """The distributed train and valid datasets. Training: each worker reads its shard of every epoch.
    Validation: every worker reads the whole split, from its start each epoch (``_val_steps``): the
    all-reduced metrics are sums (Dice from TP/FP/FN, the loss as total / count), which every worker adding
    the same samples leaves unchanged, so uneven shards cannot make one worker wrap into the next pass."""
    from segkit.data.pipeline import Shard, make_dataset, without_autotune

    cfg, strategy = plan.cfg, plan.dist.strategy

    def train_fn(ctx: Any) -> Any:
        shard = Shard(ctx.input_pipeline_id, ctx.num_input_pipelines,
                      ctx.get_per_replica_batch_size(cfg.train.batch_size))
        return make_dataset(cfg, "train", True, seed_offset=plan.initial_epoch, shard=shard, endless=True)

    def valid_fn(ctx: Any) -> Any:
        whole = Shard(0, 1, ctx.get_per_replica_batch_size(cfg.train.batch_size))
        # a new iterator every epoch (_epoch): autotuned, dropping the last one stalled (without_autotune)
        return without_autotune(make_dataset(cfg, "valid", False, shard=whole).repeat())

    return (strategy.distribute_datasets_from_function(train_fn),
            strategy.distribute_datasets_from_function(valid_fn))


def _val_steps(plan: LoopPlan) -> int:
    """Validation steps of one pass over the whole split on each worker: a step reads one batch of
    ``batch_size / replicas`` per local replica (the last step may wrap to the split's first samples, the
    same ones on every worker, every epoch)."""
    cfg, dist = plan.cfg, plan.dist
    if cfg.train.validation_steps is not None or not plan.n_valid:
        return plan.val_steps
    per_worker = (cfg.train.batch_size // dist.replicas) * max(1, dist.replicas // dist.workers)
    return max(1, math.ceil(plan.n_valid / per_worker))


class _Steps:
    """The compiled per-step functions of a run: train, validate, and the all-workers flag."""

    def __init__(self, model: keras.Model, strategy: Any) -> None:
        import tensorflow as tf

        self.model = model

        @tf.function
        def train(iterator: Any) -> None:
            strategy.run(model.train_step, args=(next(iterator),))

        @tf.function
        def test(iterator: Any) -> None:
            strategy.run(model.test_step, args=(next(iterator),))

        @tf.function
        def anyone(x: Any) -> Any:
            per_replica = strategy.run(tf.identity, args=(x,))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        self.train, self.test, self._anyone = train, test, anyone

    def any_worker(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any worker (a collective: every worker must call it)."""
        import tensorflow as tf

        return float(self._anyone(tf.constant(1.0 if flag else 0.0))) > 0

    def same_on_every_worker(self, value: int) -> bool:
        """Whether every worker passes the same small integer ``value`` (a collective): with n replicas,
        n * sum(x^2) == sum(x)^2 exactly when all x are equal."""
        import tensorflow as tf

        n = float(self._anyone(tf.constant(1.0)))
        total = float(self._anyone(tf.constant(float(value))))
        squares = float(self._anyone(tf.constant(float(value) ** 2)))
        return n * squares == total * total

    def logs(self, prefix: str = "") -> dict[str, float]:
        """The compiled metrics' values (all replicas), keys prefixed."""
        return {f"{prefix}{k}": float(v) for k, v in self.model.get_metrics_result().items()}


def _epoch(steps: _Steps, callbacks: Any, iterators: tuple[Any, Any], plan: LoopPlan,
           stop: list[bool]) -> dict[str, float] | None:
    """One epoch: ``plan.steps`` training steps, then ``plan.val_steps`` validation steps.

    Returns:
        The epoch logs (train and ``val_`` metrics), or ``None`` when SIGTERM reached a worker.
    """
    model = steps.model
    model.reset_metrics()
    logs: dict[str, float] = {}
    for step in range(plan.steps):
        callbacks.on_train_batch_begin(step)
        steps.train(iterators[0])
        logs = steps.logs()
        callbacks.on_train_batch_end(step, logs)
        if steps.any_worker(stop[0]):
            return None
        if model.stop_training:  # a NaN loss (NaNGuard): the same on every worker, the loss is all-reduced
            break
    model.reset_metrics()
    valid = iter(iterators[1])  # from the start of the split every epoch
    callbacks.on_test_begin()  # as fit's validation does (train.ema: validation with the weight average)
    for _ in range(_val_steps(plan)):
        steps.test(valid)
    val_logs = steps.logs()
    callbacks.on_test_end(val_logs)
    return {**logs, **{f"val_{k}": v for k, v in val_logs.items()}}


def fit_distributed(model: keras.Model, callbacks: list[Any], plan: LoopPlan) -> None:
    """Train ``model`` (compiled under ``plan.dist.strategy``) from ``plan.initial_epoch`` to
    ``train.epochs``, driving ``callbacks`` as ``fit`` would.

    Raises:
        Preempted: SIGTERM reached a worker; every worker stops at the same step.
        WorkerLost: a collective failed because another worker is gone (the one-line error names the
            timeout and how to resume).
    """
    import keras
    import tensorflow as tf

    cfg, dist = plan.cfg, plan.dist
    cbs = keras.callbacks.CallbackList(callbacks, model=model, epochs=cfg.train.epochs, steps=plan.steps)
    steps = _Steps(model, dist.strategy)
    if not steps.same_on_every_worker(plan.initial_epoch):
        raise ConfigError(
            f"the workers resume from different epochs (this one from epoch {plan.initial_epoch})",
            path=cfg.train.run_dir,
            hint="every worker must read the chief's run folder (a file system they share); rerun with "
            "--resume on every worker")
    train_ds, valid_ds = _datasets(plan)
    iterators = (iter(train_ds), valid_ds)
    model.stop_training = False
    logs: dict[str, float] | None = {}
    try:
        with sigterm_flag() as stop:
            cbs.on_train_begin()
            for epoch in range(plan.initial_epoch, cfg.train.epochs):
                cbs.on_epoch_begin(epoch)
                logs = _epoch(steps, cbs, iterators, plan, stop)
                if logs is None:
                    raise Preempted(f"SIGTERM during epoch {epoch + 1}: stopped every worker; the run folder "
                                    f"holds epoch {epoch}", path=cfg.train.run_dir,
                                    hint="rerun the same command with --resume on every worker")
                cbs.on_epoch_end(epoch, logs)
                if steps.any_worker(bool(model.stop_training)):  # early stop, time limit, NaN: all agree
                    break
            model.optimizer.finalize_variable_values(model.trainable_variables)  # as fit: train.ema
            cbs.on_train_end(logs)
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError, tf.errors.CancelledError,
            tf.errors.AbortedError, tf.errors.InternalError) as e:
        raise _lost(e, dist, cfg) from e


def _lost(e: Exception, dist: Distribution, cfg: Config) -> SegkitError:
    """The one-line error of a collective that failed because a peer is gone (TensorFlow's own message, many
    lines long, is logged above it)."""
    from segkit.train.strategy import COLLECTIVE_TIMEOUT_S

    return WorkerLost(
        f"worker {dist.worker_index} of {dist.workers}: another worker stopped answering ({type(e).__name__} "
        f"in a collective; TensorFlow's peer heartbeat or the {COLLECTIVE_TIMEOUT_S:g} s collective timeout)",
        path=cfg.train.run_dir,
        hint="look at the other workers' logs, then start all workers again with --resume",
    )


__all__ = ["LoopPlan", "Preempted", "WorkerLost", "fit_distributed", "sigterm_flag", "worker_run_dir"]
