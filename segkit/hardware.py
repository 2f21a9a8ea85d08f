"""What this machine computes fastest with: the CPU in words, and the ``auto`` choices of precision and XLA.

Measured with ``scripts/bench_train.py --only acdc-fp32,acdc-fp32-xla,acdc-bf16,acdc-bf16-xla`` (the ACDC
preset's fine stage, 96 x 96, batch 4, one core; README "Benchmarks"):

- On a CPU with native bfloat16 (``BF16_FLAGS``) TensorFlow's oneDNN kernels run bfloat16 convolutions in
  hardware, and XLA's CPU backend does not use them:
  - AMX (Intel Xeon, Sapphire Rapids and later; ``amx_bf16``): a step took 0.214 s in ``mixed_bfloat16``
    without XLA, against 0.331 s in float32 with XLA, 0.277 s in float32 without and 0.329 s in bfloat16 with;
  - AVX512-BF16 without AMX (AMD EPYC Zen 4, ``avx512_bf16``): 0.127-0.130 s in bfloat16 without XLA, against
    0.217-0.221 s in float32 with XLA, 0.169 s in float32 without and 0.229 s in bfloat16 with (1.3x for the
    128 x 128 presets' net: 0.328 against 0.432 s).
  So on such a CPU ``auto`` means bfloat16 and no XLA; with XLA asked for (``jit_compile: true``) ``auto``
  precision stays float32 there, bfloat16 under XLA being no faster.
- On a CPU without it (AMD EPYC Zen 1) bfloat16 is emulated and slower, and XLA is faster (1.45x for the
  demo model): ``auto`` means float32 and XLA.
- On a GPU: ``mixed_float16`` and XLA.

Example:
    >>> xla = resolve_jit_compile("auto", gpus=0, bf16=True)
    >>> xla, resolve_precision("auto", gpus=0, xla=xla, bf16=True)
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


BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""``/proc/cpuinfo`` flags of native bfloat16 arithmetic: AMX tiles (Intel Xeon, Sapphire Rapids and later) or
AVX512-BF16 dot products (AMD Zen 4 and later; Intel Cooper Lake). Without either, bfloat16 is emulated."""
BF16_ENV = "SEGKIT_BF16"
"""``SEGKIT_BF16=0`` makes ``auto`` choose as on a CPU without native bfloat16 (float32, XLA), e.g. to repeat
a float32 run on such a CPU; ``1`` as on one with it. The test suite sets 0, so that it trains alike on every
CPU."""
AMX_ENV = "SEGKIT_AMX"
"""The older name of ``SEGKIT_BF16`` (when AMX was the only native bfloat16 segkit used), read when
``SEGKIT_BF16`` is unset."""


_OVERRIDES = (BF16_ENV, AMX_ENV)  # the first one set decides


def bf16_overridden() -> bool:
    """Whether ``SEGKIT_BF16`` or ``SEGKIT_AMX`` is set (not blank): the user's choice, which a script that
    pins float32 by default (the test suite, ``scripts/bench_deploy.py``) leaves alone."""
    return any(os.environ.get(name, "").strip() for name in _OVERRIDES)


def cpu_has_bf16() -> bool:
    """Whether the CPU computes in bfloat16 natively (one of ``BF16_FLAGS`` among the flags of
    ``/proc/cpuinfo``; ``False`` where there is no such file), unless ``SEGKIT_BF16`` (or, unset, the older
    ``SEGKIT_AMX``) is 0 or 1 (read at each call).

    Raises:
        ConfigError: the variable is set to something else.
    """
    for name in _OVERRIDES:
        forced = os.environ.get(name, "").strip()
        if forced in ("0", "1"):
            return forced == "1"
        if forced:
            raise ConfigError(f"{name} must be 0 or 1 (got {forced!r})", path=name,
                              hint=f"unset {name} to detect bfloat16 from /proc/cpuinfo")
    return _bf16_flag()


@functools.cache
def _bf16_flag() -> bool:
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return any(flag in BF16_FLAGS for flag in line.partition(":")[2].split())
    return False


def resolve_precision(requested: str, gpus: int, xla: bool = False, bf16: bool | None = None) -> str:
    """The Keras dtype policy for ``train.precision``.

    ``auto`` is ``mixed_float16`` with a GPU, ``mixed_bfloat16`` on a CPU with native bfloat16 when not
    compiling with XLA (``xla``: ``resolve_jit_compile``'s answer), and ``float32`` otherwise; any other value
    is used as given. ``bf16``: whether the CPU has native bfloat16 (default: ``cpu_has_bf16()``).
    """
    if requested != "auto":
        return requested
    if gpus > 0:
        return "mixed_float16"
    return "mixed_bfloat16" if not xla and _bf16(bf16) else "float32"


def resolve_jit_compile(requested: bool | Literal["auto"], gpus: int, bf16: bool | None = None) -> bool:
    """Whether to compile with XLA for ``train.jit_compile``: ``auto`` is on, except on a CPU with native
    bfloat16 (and no GPU), where oneDNN's bfloat16 kernels outrun XLA's; ``True``/``False`` are used as
    given."""
    if requested != "auto":
        return bool(requested)
    return gpus > 0 or not _bf16(bf16)


def resolve_policy(
    precision: str, jit_compile: bool | Literal["auto"], gpus: int, bf16: bool | None = None
) -> tuple[str, bool]:
    """``(dtype policy, XLA)`` of ``train.precision`` and ``train.jit_compile`` on this machine: XLA first,
    then the precision that goes with it (``resolve_precision``)."""
    xla = resolve_jit_compile(jit_compile, gpus, bf16)
    return resolve_precision(precision, gpus, xla, bf16), xla


def _bf16(given: bool | None) -> bool:
    return cpu_has_bf16() if given is None else given


def visible_gpus() -> int:
    """How many GPUs TensorFlow sees."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


__all__ = ["AMX_ENV", "BF16_ENV", "BF16_FLAGS", "bf16_overridden", "cpu_name", "cpu_has_bf16",
           "resolve_precision", "resolve_jit_compile", "resolve_policy", "visible_gpus"]
