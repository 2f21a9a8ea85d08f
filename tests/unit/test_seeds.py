"""``segkit.seeds``: each random stream's first draws are pinned (computed with the constructions segkit used
before the streams got one owner), and the streams differ from one another."""

from __future__ import annotations

import subprocess
import sys
import zlib

import numpy as np
import pytest

from segkit.seeds import Stream, case_key, generator, seed_sequence, seed_word

SEED = 1234


def _draws(rng: np.random.Generator) -> list[int]:
    return [int(v) for v in rng.integers(0, 2**31, 4)]


def test_shuffle_word_is_pinned() -> None:
    assert seed_word(SEED, Stream.SHUFFLE) == 1453298515


def test_patches_stream_is_pinned() -> None:
    assert seed_word(SEED, Stream.PATCHES) == 2129986185
    assert _draws(generator(SEED, Stream.PATCHES, 3, 17)) == [284465940, 731880510, 1899970219, 245507590]


def test_augment_stream_is_pinned() -> None:
    words = seed_sequence(SEED, Stream.AUGMENT, 3, 17).generate_state(4)
    assert words.tolist() == [157113594, 2531984246, 989444866, 1107199500]


def test_split_stream_is_pinned() -> None:
    assert _draws(generator(SEED, Stream.SPLIT)) == [1525787169, 1532845534, 1713161172, 1276782961]


def test_cases_stream_is_pinned() -> None:
    assert case_key("la_003") == zlib.crc32(b"la_003")
    assert _draws(generator(SEED, Stream.CASES, case_key("la_003"))) == [
        97696105,
        1799839762,
        68538448,
        175236953,
    ]


def test_phantom_stream_is_pinned_and_equals_spawn() -> None:
    pinned = {
        0: [923416902, 1136761651, 920687946, 500615524],
        2: [619315327, 166100927, 1792035970, 1840451852],
    }
    for i, want in pinned.items():
        assert _draws(generator(SEED, Stream.PHANTOM, i)) == want
    for i, child in enumerate(np.random.SeedSequence(SEED).spawn(3)):
        assert _draws(generator(SEED, Stream.PHANTOM, i)) == _draws(np.random.default_rng(child))


def test_preview_has_its_own_tag() -> None:
    """The preview no longer shares ``[seed, 2]`` (PATCHES' entropy); its draws are those of ``[seed, 3]``."""
    assert _draws(generator(SEED, Stream.PREVIEW)) == _draws(
        np.random.default_rng(np.random.SeedSequence([SEED, 3]))
    )
    assert _draws(generator(SEED, Stream.PREVIEW)) != [
        353963199,
        1800373004,
        1380338044,
        1097477427,
    ]  # [seed, 2]


def _first_draws(stream: Stream, seed: int) -> list[int]:
    keys = {Stream.AUGMENT: (0, 0), Stream.PATCHES: (0, 0), Stream.CASES: (case_key("case_000"),),
            Stream.PHANTOM: (0,)}.get(stream, ())
    return _draws(generator(seed, stream, *keys))


@pytest.mark.parametrize("seed", [0, 1, SEED])
def test_streams_are_distinct(seed: int) -> None:
    first = {stream: tuple(_first_draws(stream, seed)) for stream in Stream}
    assert len(set(first.values())) == len(Stream)


def test_keys_change_the_draws_and_seeds_repeat() -> None:
    assert _draws(generator(SEED, Stream.AUGMENT, 0, 1)) != _draws(generator(SEED, Stream.AUGMENT, 0, 2))
    assert _draws(generator(SEED, Stream.AUGMENT, 1, 1)) != _draws(generator(SEED, Stream.AUGMENT, 0, 1))
    assert _draws(generator(SEED, Stream.SPLIT)) != _draws(generator(SEED + 1, Stream.SPLIT))
    assert _draws(generator(SEED, Stream.SPLIT)) == _draws(generator(SEED, Stream.SPLIT))


def test_wrong_keys_and_spawn_word_are_refused() -> None:
    with pytest.raises(ValueError, match="takes 2 key"):
        seed_sequence(SEED, Stream.AUGMENT, 1)
    with pytest.raises(ValueError, match="takes 0 key"):
        seed_sequence(SEED, Stream.SPLIT, 1)
    with pytest.raises(ValueError, match="no seed word"):
        seed_word(SEED, Stream.SPLIT)


def test_seeds_config_and_prepare_cli_stay_tensorflow_free() -> None:
    code = ("import sys, segkit.seeds, segkit.config, segkit.cli.prepare; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
