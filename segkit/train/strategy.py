"""Which ``tf.distribute`` strategy a run uses, how its global batch splits over replicas, its learning rate.

``train.strategy``:

- ``auto``: ``mirrored`` when more than one GPU is visible, else ``single`` (segkit's behaviour before the key
  existed); the choice is logged and printed in the run header.
- ``single``: the default strategy (one device).
- ``mirrored``: ``MirroredStrategy`` over this machine's GPUs, or over its logical CPU devices when it has no
  GPU (``tf.config.set_logical_device_configuration``; how the tests run it).
- ``multi_worker``: ``MultiWorkerMirroredStrategy`` configured by ``TF_CONFIG`` or, inside a SLURM job step,
  by ``SlurmClusterResolver``; trained by ``segkit.train.distributed`` (Keras 3 ``fit`` fails under this
  strategy: keras-team/keras#20585, tensorflow/tensorflow#72388).

Batch rule: ``train.batch_size`` is the *global* batch, split evenly over the replicas, so a config optimises
the same way on 1 or N devices and a run can be resumed on another device count. Learning-rate rule: with
``train.lr_reference_batch`` set, ``train.learning_rate`` is the rate for that batch and is scaled linearly to
the effective batch ``batch_size x accumulate_steps`` (Goyal et al. 2017); pair it with
``train.warmup_epochs``.

Example:
    >>> dist = resolve_strategy(cfg.train.strategy)
    >>> dist.name, dist.replicas        # ('mirrored', 2)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segkit.errors import ConfigError

if TYPE_CHECKING:
    from segkit.config import TrainConfig

log = logging.getLogger(__name__)

# Seconds after which a collective (gradient all-reduce) that a peer never joins fails with
# DeadlineExceeded, so a worker that died is reported on the others (TF's own peer health check alone can
# take 30 s x 3 retries).
COLLECTIVE_TIMEOUT_S = 45.0

# The process' MultiWorkerMirroredStrategy: TensorFlow configures the cluster's collectives once per process,
# so a second run in the same process (a resume, the next cross-validation fold) reuses it.
_MULTI_WORKER: dict[str, Any] = {}


@dataclass(frozen=True)
class Distribution:
    """The strategy a run trains under.

    Attributes:
        name: ``single``, ``mirrored`` or ``multi_worker`` (what ``train.strategy`` resolved to).
        requested: ``train.strategy`` as configured (``auto`` included).
        strategy: the ``tf.distribute.Strategy``.
        replicas: ``num_replicas_in_sync`` (over all workers).
        workers: number of worker processes (1 unless ``multi_worker``).
        worker_index: this process' task index among the workers.
        is_chief: this process writes the run folder (``strategy.extended.should_checkpoint``: worker 0, or
            the ``chief`` task of a ``TF_CONFIG`` that names one; always true for one worker).
    """

    name: str
    requested: str
    strategy: Any
    replicas: int
    workers: int = 1
    worker_index: int = 0
    is_chief: bool = True

    def describe(self, batch_size: int) -> str:
        """One line for the run header, e.g. ``mirrored (auto), 2 replicas x batch 4``."""
        how = f"{self.name} (auto)" if self.requested == "auto" else self.name
        workers = f", {self.workers} workers" if self.workers > 1 else ""
        return f"{how}, {self.replicas} replica{'s' if self.replicas > 1 else ''} x batch " \
               f"{batch_size // self.replicas}{workers}"

    def to_json(self, batch_size: int) -> dict[str, Any]:
        """The ``distribution`` record of ``train_summary.json``."""
        return {"strategy": self.name, "requested": self.requested, "replicas": self.replicas,
                "workers": self.workers, "global_batch": batch_size,
                "batch_per_replica": batch_size // self.replicas}


def effective_batch(train: TrainConfig) -> int:
    """Samples per optimizer update: ``batch_size x accumulate_steps``."""
    return train.batch_size * train.accumulate_steps


def scaled_learning_rate(train: TrainConfig) -> float:
    """The peak learning rate: ``learning_rate x effective batch / lr_reference_batch`` when
    ``lr_reference_batch`` is set (linear scaling), else ``learning_rate``.

    Example:
        >>> # learning_rate 1e-3 for a batch of 8; batch_size 16 x accumulate_steps 2 -> 4e-3
    """
    if train.lr_reference_batch is None:
        return train.learning_rate
    return train.learning_rate * effective_batch(train) / train.lr_reference_batch


def check_batch(train: TrainConfig, replicas: int) -> None:
    """Refuse a global batch that does not split evenly over ``replicas`` or a gradient accumulation that
    cannot run with them.

    Raises:
        ConfigError: ``batch_size`` is not a multiple of ``replicas``, or ``accumulate_steps > 1`` with more
            than one replica.
    """
    if replicas > 1 and train.batch_size % replicas:
        up = -(-train.batch_size // replicas) * replicas
        raise ConfigError(
            f"train.batch_size={train.batch_size} (the global batch) does not split evenly over "
            f"{replicas} replicas",
            path="train.batch_size",
            hint=f"use a multiple of {replicas}, e.g. --set train.batch_size={up}",
        )
    if replicas > 1 and train.accumulate_steps > 1:
        raise ConfigError(
            f"train.accumulate_steps={train.accumulate_steps} needs one replica; this run has {replicas}",
            path="train.accumulate_steps",
            hint="raise train.batch_size instead (more replicas hold a larger global batch), or set "
            "train.strategy=single",
        )


def _devices(gpus: list[Any]) -> list[str]:
    """The devices ``mirrored`` replicates over: the GPUs, else the logical CPU devices."""
    import tensorflow as tf

    if gpus:
        return [g.name.replace("physical_device:", "") for g in gpus]
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def cluster_resolver() -> Any:
    """The cluster of a ``multi_worker`` run: ``TF_CONFIG`` when set, else the SLURM job step.

    Raises:
        ConfigError: neither ``TF_CONFIG`` nor a SLURM job step with several tasks, or an unreadable
            ``TF_CONFIG``.
    """
    import tensorflow as tf

    raw = os.environ.get("TF_CONFIG")
    if raw:
        try:
            json.loads(raw)
        except json.JSONDecodeError as e:
            raise ConfigError(f"TF_CONFIG is not JSON ({e.msg})", path="TF_CONFIG",
                              hint='set it as {"cluster": {"worker": [...]}, "task": {"type": "worker", '
                                   '"index": i}}') from None
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if os.environ.get("SLURM_JOB_ID") and int(os.environ.get("SLURM_STEP_NUM_TASKS", "1") or 1) > 1:
        # TensorFlow's resolver places one task per GPU (counted by nvidia-smi unless SLURM says); it
        # cannot describe CPU-only nodes
        on_node = os.environ.get("SLURM_GPUS_ON_NODE")
        gpus = int(on_node) if on_node and on_node.isdigit() else (None if shutil.which("nvidia-smi") else 0)
        if gpus == 0:
            raise ConfigError(
                "train.strategy multi_worker from SLURM needs GPU nodes (TensorFlow's SlurmClusterResolver "
                "gives every task GPUs); this node has none",
                path="train.strategy",
                hint="on CPU nodes set TF_CONFIG in each task (README 'Scaling out', from SLURM_PROCID)",
            )
        return tf.distribute.cluster_resolver.SlurmClusterResolver(gpus_per_node=gpus)
    raise ConfigError(
        "train.strategy multi_worker needs a cluster: TF_CONFIG is not set and this is no SLURM job step "
        "with several tasks",
        path="train.strategy",
        hint="set TF_CONFIG on every worker, or start the workers with srun (README 'Scaling out')",
    )


def resolve_strategy(requested: str) -> Distribution:
    """The ``Distribution`` for ``train.strategy`` on this machine's GPUs.

    For ``multi_worker`` the cluster is resolved before TensorFlow lists the GPUs: ``SlurmClusterResolver``
    gives each task its GPUs through ``CUDA_VISIBLE_DEVICES``, which must be set before.

    Raises:
        ConfigError: ``multi_worker`` without a cluster (``cluster_resolver``).
    """
    import tensorflow as tf

    if requested == "multi_worker":
        return _multi_worker()
    gpus = tf.config.list_physical_devices("GPU")
    name = requested
    if requested == "auto":
        name = "mirrored" if len(gpus) > 1 else "single"
        log.info("train.strategy auto: %s (%d GPU%s visible)", name, len(gpus), "" if len(gpus) == 1 else "s")
    if name == "single":
        strategy = tf.distribute.get_strategy()
        return Distribution(name, requested, strategy, 1)
    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices=_devices(gpus))
        return Distribution(name, requested, strategy, int(strategy.num_replicas_in_sync))
    raise ValueError(f"unknown train.strategy {requested!r}")  # the config validates it


def _multi_worker() -> Distribution:
    """``MultiWorkerMirroredStrategy`` over ``cluster_resolver()`` (made once per process)."""
    import tensorflow as tf

    resolver = cluster_resolver()
    resolver.cluster_spec()  # SLURM: sets CUDA_VISIBLE_DEVICES for this task before TensorFlow sees GPUs
    if "strategy" not in _MULTI_WORKER:
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_S)
        _MULTI_WORKER["strategy"] = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver, communication_options=options)
    strategy = _MULTI_WORKER["strategy"]
    spec = resolver.cluster_spec().as_dict()
    workers = sum(len(spec.get(kind, [])) for kind in ("chief", "worker")) or 1
    return Distribution("multi_worker", "multi_worker", strategy, int(strategy.num_replicas_in_sync), workers,
                        int(resolver.task_id or 0), bool(strategy.extended.should_checkpoint))


__all__ = ["COLLECTIVE_TIMEOUT_S", "Distribution", "check_batch", "cluster_resolver", "effective_batch",
           "resolve_strategy", "scaled_learning_rate"]
