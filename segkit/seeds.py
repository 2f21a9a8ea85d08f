"""The one owner of segkit's random streams: every generator derived from the config seed comes from here.

Each consumer names its ``Stream`` and passes the seed (``cfg.seed``, or the phantom's ``--seed``) and its
keys (epoch, sample index, case, ...); no other module builds a ``SeedSequence`` or ``default_rng`` from the
seed.

The streams and their derivations (the constructions segkit has always used, so prepared datasets, splits and
training runs repeat bit for bit):

- SHUFFLE (no keys; ``segkit.data.pipeline``): ``[seed, 0]``; its ``seed_word`` and the epoch seed
  TensorFlow's stateless shuffle;
- AUGMENT (epoch, sample index; ``segkit.data.augment``): ``[seed, 1, epoch, index]``;
- PATCHES (epoch, sample index; ``segkit.data.pipeline``): ``[seed_word(seed, PATCHES), epoch, index]``, the
  word taken from ``[seed, 2]``;
- PREVIEW (no keys; ``segkit.preview``): ``[seed, 3]``;
- SPLIT (no keys; ``segkit.prepare.split``): ``SeedSequence(seed, spawn_key=(1,))``;
- CASES (crc32 of the case id, ``case_key``; ``segkit.prepare.cases``):
  ``SeedSequence([seed, crc32], spawn_key=(2,))``;
- PHANTOM (case number ``i``; ``segkit.prepare.phantom``): ``SeedSequence(seed, spawn_key=(i,))``, which is
  ``SeedSequence(seed).spawn(n)[i]``.

Two derivations, then:

- *entropy tags* (SHUFFLE, AUGMENT, PATCHES, PREVIEW): the tag is mixed into the entropy,
  ``[seed, tag, *keys]``; PATCHES first reduces ``[seed, 2]`` to a 31-bit word (``seed_word``) and seeds
  ``[word, *keys]``;
- *spawn keys* (SPLIT, CASES, PHANTOM): the entropy is the seed (CASES: ``[seed, crc32(case id)]``) and the
  tag is numpy's ``spawn_key``, the key of a child of ``SeedSequence(seed).spawn``.

Known overlaps kept for bit-identity: PHANTOM case 1 has the key of SPLIT (``spawn_key=(1,)``), so with
``--seed`` equal to the config seed the phantom volume ``case_001`` and the split permutation start from the
same state (the phantom is synthetic data, the split a permutation of case ids: nothing couples them).
PREVIEW had the tag 2 of PATCHES until the streams got this owner; it now has its own tag 3, which changes
only which samples ``segkit augment-preview`` shows.

Example:
    >>> ss = seed_sequence(cfg.seed, Stream.AUGMENT, epoch, index)   # one sample's augmentation
    >>> rng = generator(cfg.seed, Stream.SPLIT)                        # the case split's permutation
    >>> word = seed_word(cfg.seed, Stream.SHUFFLE)   # 31-bit int for TF's stateless_shuffle
"""

from __future__ import annotations

import enum
import zlib

import numpy as np


class Stream(enum.Enum):
    """A random stream derived from the config seed (see the module docstring for each derivation)."""

    SHUFFLE = "shuffle"  # training order of the slices, per epoch (TF stateless shuffle)
    AUGMENT = "augment"  # augmentation of one sample in one epoch
    PATCHES = "patches"  # placement of one sample's training patch in one epoch (data.patches)
    PREVIEW = "preview"  # which samples the augmentation preview shows
    SPLIT = "split"  # train / valid / test / fold assignment of the case ids
    CASES = "cases"  # per-case draws while preparing (the empty_slices fraction)
    PHANTOM = "phantom"  # the synthetic phantom volumes, one child per case


# entropy-tag streams: SeedSequence([seed, tag, *keys])
_ENTROPY_TAGS = {Stream.SHUFFLE: 0, Stream.AUGMENT: 1, Stream.PATCHES: 2, Stream.PREVIEW: 3}
# spawn-key streams: SeedSequence(entropy, spawn_key=(tag,)); PHANTOM's key is the case number
_SPAWN_KEYS = {Stream.SPLIT: 1, Stream.CASES: 2}


def seed_word(seed: int, stream: Stream) -> int:
    """A 31-bit child seed of ``seed`` for an entropy-tag stream: the first word of ``[seed, tag]`` >> 1.

    Raises:
        ValueError: ``stream`` is a spawn-key stream (SPLIT, CASES, PHANTOM).
    """
    if stream not in _ENTROPY_TAGS:
        raise ValueError(f"stream {stream.name} has no seed word (it derives by spawn key)")
    state = np.random.SeedSequence([seed, _ENTROPY_TAGS[stream]]).generate_state(1, dtype=np.uint32)
    return int(state[0] >> 1)


def seed_sequence(seed: int, stream: Stream, *keys: int) -> np.random.SeedSequence:
    """The ``SeedSequence`` of ``stream`` for ``seed`` and ``keys`` (see the module docstring's table).

    Args:
        seed: the config seed (PHANTOM: the phantom seed).
        stream: which stream.
        keys: AUGMENT, PATCHES: ``(epoch, sample index)``; CASES: ``(crc32 of the case id,)`` (use
            ``case_key``); PHANTOM: ``(case number,)``; SHUFFLE, PREVIEW, SPLIT: none.

    Raises:
        ValueError: the wrong number of keys for ``stream``.
    """
    wanted = {Stream.AUGMENT: 2, Stream.PATCHES: 2, Stream.CASES: 1, Stream.PHANTOM: 1}.get(stream, 0)
    if len(keys) != wanted:
        raise ValueError(f"stream {stream.name} takes {wanted} key(s), got {len(keys)}")
    ints = [int(k) for k in keys]
    if stream is Stream.PATCHES:
        return np.random.SeedSequence([seed_word(seed, stream), *ints])
    if stream in _ENTROPY_TAGS:
        return np.random.SeedSequence([seed, _ENTROPY_TAGS[stream], *ints])
    if stream is Stream.PHANTOM:
        return np.random.SeedSequence(seed, spawn_key=(ints[0],))
    if stream is Stream.CASES:
        return np.random.SeedSequence([seed, ints[0]], spawn_key=(_SPAWN_KEYS[stream],))
    return np.random.SeedSequence(seed, spawn_key=(_SPAWN_KEYS[stream],))


def generator(seed: int, stream: Stream, *keys: int) -> np.random.Generator:
    """``np.random.default_rng(seed_sequence(seed, stream, *keys))``."""
    return np.random.default_rng(seed_sequence(seed, stream, *keys))


def case_key(case_id: str) -> int:
    """The CASES key of a case: the crc32 of its id (so a case's draws depend on its id only, not on order,
    shard or worker)."""
    return zlib.crc32(case_id.encode())
