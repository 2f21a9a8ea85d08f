"""What this machine computes fastest with: the CPU in words, and the ``auto`` choices of precision and XLA.

Measured with ``scripts/bench_train.py --only acdc-fp32,acdc-fp32-xla,acdc-bf16,acdc-bf16-xla`` (the ACDC
preset's fine stage, 96 x 96, batch 4, one core; README "Benchmarks"):

- On a CPU with AMX (Intel Xeon, Sapphire Rapids and later; ``amx_bf16`` in ``/proc/cpuinfo``) TensorFlow's
  oneDNN kernels run bfloat16 convolutions on the AMX tiles: a training step took 0.214 s in
  ``mixed_bfloat16`` without XLA, against 0.331 s in float32 with XLA and 0.277 s in float32 without. XLA's
  CPU backend does not use those kernels (0.329 s in bfloat16 with XLA), so on such a CPU ``auto`` means
  bfloat16 and no XLA; with XLA asked for (``jit_compile: true``) ``auto`` precision stays float32 there,
  bfloat16 under XLA being no faster.
- On a CPU without it (AMD EPYC Zen 1) bfloat16 is emulated and slower, and XLA is faster (1.45x for the
  demo model): ``auto`` means float32 and XLA.
- On a GPU: ``mixed_float16`` and XLA.

Example:
    >>> xla = resolve_jit_compile("auto", gpus=0, amx=True)
    >>> xla, resolve_precision("auto", gpus=0, xla=xla, amx=True)
    (False, 'mixed_bfloat16')
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Literal

from segkit.errors import ConfigError

CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo() -> str:
    try:
        return CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_name() -> str:
    """CPU model name and logical core count, e.g. ``AMD EPYC (2 cores)``."""
    name = platform.processor() or platform.machine()
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            name = line.partition(":")[2].strip()
            break
    return f"{name} ({os.cpu_count()} cores)"


AMX_ENV = "SEGKIT_AMX"
"""``SEGKIT_AMX=0`` makes ``auto`` choose as on a CPU without AMX (float32, XLA), e.g. to repeat a float32 run
on such a CPU; ``1`` as on one with it. The test suite sets 0, so that it trains alike on every CPU."""


def cpu_has_amx() -> bool:
    """Whether the CPU has AMX bfloat16 tiles (``amx_bf16`` among the flags of ``/proc/cpuinfo``; ``False``
    where there is no such file), unless ``SEGKIT_AMX`` is 0 or 1 (read at each call).

    Raises:
        ConfigError: ``SEGKIT_AMX`` is set to something else.
    """
    forced = os.environ.get(AMX_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ConfigError(f"{AMX_ENV} must be 0 or 1 (got {forced!r})", path=AMX_ENV,
                          hint=f"unset {AMX_ENV} to detect AMX from /proc/cpuinfo")
    return _amx_flag()


@functools.cache
def _amx_flag() -> bool:
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return "amx_bf16" in line.partition(":")[2].split()
    return False


def resolve_precision(requested: str, gpus: int, xla: bool = False, amx: bool | None = None) -> str:
    """The Keras dtype policy for ``train.precision``.

    ``auto`` is ``mixed_float16`` with a GPU, ``mixed_bfloat16`` on a CPU with AMX when not compiling with XLA
    (``xla``: ``resolve_jit_compile``'s answer), and ``float32`` otherwise; any other value is used as given.
    ``amx``: whether the CPU has AMX (default: ``cpu_has_amx()``).
    """
    if requested != "auto":
        return requested
    if gpus > 0:
        return "mixed_float16"
    return "mixed_bfloat16" if not xla and _amx(amx) else "float32"


def resolve_jit_compile(requested: bool | Literal["auto"], gpus: int, amx: bool | None = None) -> bool:
    """Whether to compile with XLA for ``train.jit_compile``: ``auto`` is on, except on a CPU with AMX (and
    no GPU), where oneDNN's kernels outrun XLA's; ``True``/``False`` are used as given."""
    if requested != "auto":
        return bool(requested)
    return gpus > 0 or not _amx(amx)


def resolve_policy(
    precision: str, jit_compile: bool | Literal["auto"], gpus: int, amx: bool | None = None
) -> tuple[str, bool]:
    """``(dtype policy, XLA)`` of ``train.precision`` and ``train.jit_compile`` on this machine: XLA first,
    then the precision that goes with it (``resolve_precision``)."""
    xla = resolve_jit_compile(jit_compile, gpus, amx)
    return resolve_precision(precision, gpus, xla, amx), xla


def _amx(given: bool | None) -> bool:
    return cpu_has_amx() if given is None else given


def visible_gpus() -> int:
    """How many GPUs TensorFlow sees."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


__all__ = ["AMX_ENV", "cpu_name", "cpu_has_amx", "resolve_precision", "resolve_jit_compile", "resolve_policy",
           "visible_gpus"]
