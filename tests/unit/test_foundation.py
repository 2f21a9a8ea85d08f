"""Registry, errors, atomic writes and the colour palette."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from segkit.errors import DataError, SegkitError
from segkit.io.atomic import atomic_path, write_json, write_text
from segkit.io.palette import decode_mask, encode_mask, palette_array
from segkit.registry import Registry


def test_registry_lookup_aliases_and_error_lists_names() -> None:
    reg: Registry[int] = Registry("model")
    reg.register("flex-unet")(1)
    reg.register("attention-unet")(2)
    assert reg.get("flex_unet") == 1 and reg.get("Attention-UNet") == 2
    assert "flex-unet" in reg and reg.names() == ["attention-unet", "flex-unet"]
    with pytest.raises(SegkitError) as e:
        reg.get("flexunett")
    assert "unknown model 'flexunett'" in e.value.one_line()
    assert "did you mean 'flex-unet'" in e.value.one_line()
    assert "attention-unet, flex-unet" in e.value.one_line()
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("flex_unet")(3)


def test_error_one_line_has_path_message_hint() -> None:
    e = DataError("bad\nthing", path=Path("/x/y.nii"), hint="fix it")
    assert e.one_line() == "/x/y.nii: bad thing (hint: fix it)"
    assert SegkitError("plain").one_line() == "plain"


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json(target, {"a": np.int64(3), "b": np.arange(2)})
    assert json.loads(target.read_text()) == {"a": 3, "b": [0, 1]}
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert json.loads(target.read_text()) == {"a": 3, "b": [0, 1]}
    assert sorted(os.listdir(tmp_path)) == ["out.json"]  # no temporary left behind
    write_text(tmp_path / "sub" / "t.txt", "hi")
    assert (tmp_path / "sub" / "t.txt").read_text() == "hi"


def test_atomic_temp_keeps_suffix_for_format_sniffing_writers(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "a.nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_bytes(b"x")


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_files_honour_the_umask_like_open(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        write_text(tmp_path / "a.json", "{}")
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    mode = os.stat(tmp_path / "a.json").st_mode & 0o777
    assert mode == os.stat(tmp_path / "plain.txt").st_mode & 0o777 == 0o666 & ~umask


def test_stale_temporaries_removed_only_when_ours_and_dead(tmp_path: Path) -> None:
    from segkit.io.atomic import _HOST, remove_stale_temps

    dead, alive = 99999999, os.getpid()
    names = {
        f".model.keras.{_HOST}.{dead}-abcd_123.tmp.keras": False,  # this host, process gone: removed
        f".model.keras.{_HOST}.{alive}-abcd_123.tmp.keras": True,  # a live process's (another shard): kept
        f".model.keras.otherhost.{dead}-abcd_123.tmp.keras": True,  # another machine's: kept
        ".backup.2024-05-01.tmp": True,  # the user's own files that merely look alike
        f".x.{_HOST}.7-abc.tmpl": True,
        f".notes.{_HOST}.{dead}-abcd1234.tmp.txt.bak~": True,
    }
    (tmp_path / "sub").mkdir()
    for n in names:
        (tmp_path / "sub" / n).write_text("x")
    assert remove_stale_temps(tmp_path) == 1
    assert {p.name for p in (tmp_path / "sub").iterdir()} == {n for n, keep in names.items() if keep}


def test_atomic_temporaries_carry_host_and_pid(tmp_path: Path) -> None:
    from segkit.io.atomic import _HOST, _STALE

    with atomic_path(tmp_path / "a.nii.gz") as tmp:
        m = _STALE.fullmatch(tmp.name)
        assert m is not None and m.group(1) == _HOST and int(m.group(2)) == os.getpid()
        tmp.write_bytes(b"x")


def test_palette_encode_decode_round_trip_and_noise() -> None:
    pal = palette_array([(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    labels = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    rgb = encode_mask(labels, pal)
    assert rgb[1, 1].tolist() == [0, 0, 255]
    noisy = rgb.astype(int) + np.array([[[12, -9, 7]]])
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    assert (decode_mask(noisy, pal, tolerance=60) == labels).all()


def test_palette_unknown_colour_and_bad_label() -> None:
    pal = palette_array([(255, 0, 0)])
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (0, 200, 200)
    with pytest.raises(DataError) as e:
        decode_mask(rgb, pal, tolerance=30, path=Path("m.png"))
    assert "m.png" in e.value.one_line() and "(0, 200, 200)" in str(e.value) and "1 pixels" in str(e.value)
    with pytest.raises(DataError, match="label value 5 has no colour"):
        encode_mask(np.array([[5]]), pal)
