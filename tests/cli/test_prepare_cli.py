"""`segkit prepare` through the Typer app: happy path, verify, shards, overwrite rules, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from segkit.cli.app import app

runner = CliRunner()
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
AFFINE = np.array([[-1.2, 0, 0, 20], [0, -1.2, 0, 10], [0, 0, 2.5, -30], [0, 0, 0, 1]], dtype=float)


def invoke(*args: str | Path):  # noqa: ANN201
    return runner.invoke(app, ["prepare", *(str(a) for a in args)])


def err_lines(r) -> list[str]:  # noqa: ANN001
    return [line for line in r.stderr.splitlines() if line.startswith("error:")]


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def slice_files(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.glob("*/*/*.png")}


def phantom(out: Path, *extra: str) -> object:
    return invoke("phantom", "--out", out, "--n", "4", "--workers", "1", *extra)


# === happy path ===


def test_phantom_happy_path_then_idempotent_rerun(tmp_path: Path) -> None:
    out = tmp_path / "data"
    r = phantom(out)
    assert r.exit_code == 0, r.output
    assert "train" in r.stdout and "4 case(s) prepared, 0 already complete, 0 failed" in r.stdout
    manifest = json.loads((out / "dataset.json").read_text())
    splits = json.loads((out / "splits.json").read_text())
    assert manifest["source"] == "phantom" and manifest["name"] == "demo"
    assert [c["name"] for c in manifest["classes"]] == ["ventricle", "atrium", "vessel"]
    assert sorted(manifest["cases"]) == ["case_000", "case_001", "case_002", "case_003"]
    # no case in two splits; every case in the split that dataset.json says
    ids = splits["train"] + splits["valid"] + splits["test"]
    assert sorted(ids) == sorted(manifest["cases"]) and len(set(ids)) == 4
    expected = set()
    for cid, rec in manifest["cases"].items():
        assert cid in splits[rec["split"]]
        assert rec["sha256"]["image"] and rec["shape"] == [64, 64, 40]
        for k in rec["slices"]:
            expected |= {
                f"{rec['split']}/images/{cid}_{k:04d}.png",
                f"{rec['split']}/masks/{cid}_{k:04d}.png",
            }
    assert slice_files(out) == expected
    assert (out / "summary.png").read_bytes()[:4] == b"\x89PNG"
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/*/*.png")}
    r = phantom(out)  # same config: resumes, every case already complete
    assert r.exit_code == 0, r.output
    assert "0 case(s) prepared, 4 already complete" in r.stdout
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*/*.png")} == before


def test_shards_together_equal_a_single_run(tmp_path: Path) -> None:
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    r = invoke("phantom", "--out", single, "--n", "4", "--workers", "2")
    assert r.exit_code == 0, r.output
    r = phantom(sharded, "--shard", "0/2")
    assert r.exit_code == 0, r.output
    assert not (sharded / "dataset.json").exists()
    assert "2 case(s) not prepared yet" in r.stderr
    r = phantom(sharded, "--shard", "1/2")
    assert r.exit_code == 0, r.output
    a, b = (json.loads((d / "dataset.json").read_text()) for d in (single, sharded))
    for m, d in ((a, single), (b, sharded)):  # source paths differ (OUT/raw): compare relative to OUT
        for rec in m["cases"].values():
            rec["image"] = str(Path(rec["image"]).relative_to(d))
            rec["label"] = str(Path(rec["label"]).relative_to(d))
    assert a == b
    assert (single / "splits.json").read_text() == (sharded / "splits.json").read_text()
    ta, tb = tree(single), tree(sharded)
    pngs = [k for k in ta if k.endswith(".png") and k != "summary.png"]
    assert pngs and all(ta[k] == tb[k] for k in pngs) and set(pngs) == {k for k in tb if k in pngs}
    assert (sharded / "records" / "shard-0-of-2.json").is_file()


def test_kfold_and_binary_options(tmp_path: Path) -> None:
    out = tmp_path / "kf"
    r = invoke(
        "phantom",
        "--out",
        out,
        "--n",
        "5",
        "--workers",
        "1",
        "--folds",
        "2",
        "--fold",
        "1",
        "--binary",
        "--set",
        "prepare.split.test=0.2",
    )
    assert r.exit_code == 0, r.output
    splits = json.loads((out / "splits.json").read_text())
    assert splits["folds"] == 2 and splits["fold"] == 1 and len(splits["kfold"]) == 2
    assert splits["valid"] == splits["kfold"][1]
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["classes"] == [{"id": 1, "name": "foreground", "color": [255, 0, 0]}]


# === overwrite rules ===


def test_refuses_non_empty_out_and_overwrite_works(tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = phantom(out)
    assert r.exit_code == 2
    assert err_lines(r) == [r.stderr.strip()] and "refusing to overwrite" in r.stderr and str(out) in r.stderr
    assert "Traceback" not in r.output
    assert tree(out) == {"notes.txt": b"mine"}
    assert not list(tmp_path.glob(".*raw-tmp*"))
    r = phantom(out, "--overwrite")
    assert r.exit_code == 0, r.output
    assert (out / "dataset.json").is_file() and (out / "notes.txt").read_text() == "mine"


def test_overwrite_removes_only_what_segkit_wrote(tmp_path: Path) -> None:
    out = tmp_path / "d"
    assert phantom(out).exit_code == 0
    ours = tree(out)
    mine = {
        "train/images/my_notes.txt": b"keep me",
        "valid/masks/hand_drawn.png": b"mine",
        "records/my_log.txt": b"mine too",
        "raw/README.md": b"the phantom's raw folder, my note",
        "test/extra/sub/file.bin": b"deep",
    }
    for rel, data in mine.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    from segkit.io.atomic import _HOST

    (out / "train" / "images" / f".case_000_0001.png.{_HOST}.99999999-abcd1234.tmp.png").write_bytes(
        b"killed run's"
    )
    r = phantom(out, "--overwrite", "--set", "prepare.size=[32,32]")
    assert r.exit_code == 0, r.output
    after = tree(out)
    assert all(after[rel] == data for rel, data in mine.items())  # every file of the user's survives
    assert set(after) - set(mine) == set(ours)  # segkit's own files are rewritten, nothing else appears
    assert all(
        after[k] != ours[k] for k in ours if k.endswith(".png") and "/images/" in k
    )  # re-sliced at 32x32


def test_failed_phantom_leaves_no_temporary_folder_and_stale_ones_are_cleared(tmp_path: Path) -> None:
    stale = tmp_path / ".d.raw-tmp-99999999"  # a killed run's (no such process)
    stale.mkdir()
    (stale / "case_000_image.nii.gz").write_bytes(b"half")
    assert phantom(tmp_path / "d").exit_code == 0
    assert not stale.exists() and not list(tmp_path.glob(".*raw-tmp*"))


@pytest.mark.parametrize("fault", ["full", "readonly"])
def test_full_or_read_only_disk_is_one_line_and_leaves_nothing(small_disk, fault: str) -> None:  # noqa: ANN001
    disk = small_disk("300K", readonly=fault == "readonly")
    out = disk / "data"
    r = phantom(out)
    assert r.exit_code == 2, r.output
    lines = err_lines(r)
    assert len(lines) == 1 and "Traceback" not in r.output and "internal error" not in r.output
    what = "no space left on the device" if fault == "full" else "the file system is read-only"
    assert lines[0].startswith(f"error: {out}: cannot write: {what} (hint: ")
    assert not list(disk.glob(".*raw-tmp*")) and not [p for p in disk.rglob("*") if ".tmp" in p.name]


def test_user_split_file_is_used_checked_and_part_of_the_dataset_key(tmp_path: Path) -> None:
    split = tmp_path / "my_split.json"
    split.write_text(
        json.dumps({"train": ["case_000", "case_001"], "valid": ["case_002"], "test": ["case_003"]})
    )
    out = tmp_path / "d"
    r = phantom(out, "--splits", split)
    assert r.exit_code == 0, r.output
    written = json.loads((out / "splits.json").read_text())
    assert (written["train"], written["valid"], written["test"]) == (
        ["case_000", "case_001"],
        ["case_002"],
        ["case_003"],
    )
    assert {p.split("/")[0] for p in slice_files(out) if "case_003" in p} == {"test"}
    other = tmp_path / "other.json"
    other.write_text(
        json.dumps({"train": ["case_000", "case_002"], "valid": ["case_001"], "test": ["case_003"]})
    )
    r = phantom(out, "--splits", other)
    assert (
        r.exit_code == 2 and "prepared with a different config" in r.stderr
    )  # another split: another dataset
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": ["case_000", "case_001"], "valid": ["case_002"], "test": ["case_9"]}))
    r = phantom(tmp_path / "e", "--splits", bad)
    assert r.exit_code == 2
    assert err_lines(r) == [
        f"error: {bad}: 1 case id(s) are not in the dataset: case_9 (hint: check the ids against "
        "the source files (case id = file name without its suffix))"
    ]


def test_different_config_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "d"
    assert phantom(out).exit_code == 0
    snapshot = tree(out)
    r = phantom(out, "--set", "prepare.size=[32,32]")
    assert r.exit_code == 2 and "prepared with a different config" in r.stderr
    assert tree(out) == snapshot


# === bad input ===


def nii(path: Path, arr: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(arr, affine), str(path))
    return path


def image(shape: tuple[int, int, int] = (16, 16, 8)) -> np.ndarray:
    return np.linspace(-300, 500, int(np.prod(shape)), dtype=np.float32).reshape(shape)


def label(shape: tuple[int, int, int] = (16, 16, 8), value: int = 1) -> np.ndarray:
    lbl = np.zeros(shape, np.uint8)
    lbl[4:10, 4:12, 2:6] = value
    return lbl


@pytest.fixture
def bad_raw(tmp_path: Path) -> Path:
    """hocm layout: 1, 2 good; 3 corrupt image; 4 shape mismatch; 5 unexpected label 9; 6 NaN image."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in (1, 2):
        nii(raw / f"{i}_image.nii", image())
        nii(raw / f"{i}_label.nii", label())
    (raw / "3_image.nii").write_bytes(b"this is not a nifti file" * 20)
    nii(raw / "3_label.nii", label())
    nii(raw / "4_image.nii", image())
    nii(raw / "4_label.nii", label((16, 16, 7)))
    nii(raw / "5_image.nii", image())
    nii(raw / "5_label.nii", label(value=9))
    nan = image()
    nan[3, 3, 3] = np.nan
    nii(raw / "6_image.nii", nan)
    nii(raw / "6_label.nii", label())
    return raw


def hocm(raw: Path, out: Path, *extra: str | Path):  # noqa: ANN201
    return invoke(
        "hocm",
        raw,
        "--out",
        out,
        "--config",
        CONFIGS / "demo.yaml",
        "--set",
        "prepare.size=[16,16]",
        "--workers",
        "1",
        *extra,
    )


def test_failing_cases_are_listed_and_the_others_finish(tmp_path: Path, bad_raw: Path) -> None:
    out = tmp_path / "out"
    r = hocm(bad_raw, out)
    assert r.exit_code == 2
    lines = err_lines(r)
    assert len(lines) == 4, r.stderr
    assert "Traceback" not in r.output
    by_file = {
        n: next((ln for ln in lines if n in ln), "")
        for n in ("3_image.nii", "4_label.nii", "5_label.nii", "6_image.nii")
    }
    assert "cannot read volume" in by_file["3_image.nii"]
    assert "shapes differ" in by_file["4_label.nii"] and "(16, 16, 7)" in by_file["4_label.nii"]
    assert "unexpected label values 9" in by_file["5_label.nii"]
    assert "NaN" in by_file["6_image.nii"]
    # good cases were written; failed cases left nothing; no commit marker
    stems = {Path(p).name.split("_")[0] for p in slice_files(out)}
    assert stems == {"1", "2"}
    assert not (out / "dataset.json").exists()
    assert not list(out.rglob(".*.tmp*"))
    # Fix the bad cases, rerun: good ones are skipped, dataset completes.
    for i in (3, 4, 5, 6):
        nii(bad_raw / f"{i}_image.nii", image())
        nii(bad_raw / f"{i}_label.nii", label())
    r = hocm(bad_raw, out)
    assert r.exit_code == 0, r.output
    assert "4 case(s) prepared, 2 already complete" in r.stdout
    assert len(json.loads((out / "dataset.json").read_text())["cases"]) == 6


@pytest.mark.parametrize("policy", ["warn", "error", "allow"])
def test_all_zero_label_is_named_by_policy(tmp_path: Path, policy: str) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in (1, 2, 3):
        nii(raw / f"{i}_image.nii", image())
        nii(raw / f"{i}_label.nii", label())
    nii(raw / "2_label.nii", np.zeros((16, 16, 8), np.uint8))
    tiny = np.zeros((16, 16, 8), np.uint8)
    tiny[7, 7, 3] = 1  # one voxel: gone after resizing to 8x8, but not an empty label
    nii(raw / "3_label.nii", tiny)
    out = tmp_path / "out"
    r = hocm(raw, out, "--set", "prepare.size=[8,8]", "--set", f"prepare.empty_labels={policy}")
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    if policy == "error":
        assert r.exit_code == 2
        assert err_lines(r) == [
            f"error: {raw / '2_label.nii'}: label volume is empty (no foreground voxel) "
            "(hint: fix the label, or set prepare.empty_labels=allow (real negatives) or warn)"
        ]
        assert {Path(p).name.split("_")[0] for p in slice_files(out)} == {"1", "3"}
        return
    assert r.exit_code == 0, r.output
    if policy == "warn":
        assert warnings == ["warning: 2_label.nii: label volume is empty (no foreground voxel); kept (set "
                            "prepare.empty_labels=allow for real negatives, or error to refuse such cases)"]
        assert "3 case(s) prepared, 0 already complete, 0 failed, 1 warning(s)" in r.stdout
        again = hocm(raw, out, "--set", "prepare.size=[8,8]")  # a rerun still names it (from the records)
        assert "0 case(s) prepared, 3 already complete, 0 failed, 1 warning(s)" in again.stdout
    else:
        assert warnings == [] and "3 case(s) prepared, 0 already complete, 0 failed\n" in r.stdout


def test_case_id_that_cannot_name_files_is_refused(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for cid in ("1", "2", "..", ".hidden"):  # img_...nii.gz: the '*' of the glob matches '..'
        nii(raw / f"img_{cid}.nii", image())
        nii(raw / f"lbl_{cid}.nii", label())
    out = tmp_path / "out"
    r = invoke("nifti", raw, "--out", out, "--config", CONFIGS / "demo.yaml", "--image-glob", "img_*.nii",
               "--label-glob", "lbl_*.nii", "--set", "prepare.size=[16,16]", "--workers", "1")
    assert r.exit_code == 2
    lines = err_lines(r)
    assert len(lines) == 2, r.stderr
    assert (
        lines[0].startswith("error: img_...nii: case id '..' cannot name slice files")
        and "rename" in lines[0]
    )
    assert lines[1].startswith("error: img_.hidden.nii: case id '.hidden' cannot name slice files")
    assert not out.exists() or not list(out.rglob("*.png"))


def test_verify_reports_problems_and_writes_nothing(tmp_path: Path, bad_raw: Path) -> None:
    nii(bad_raw / "7_image.nii", image())
    nii(bad_raw / "7_label.nii", np.zeros((16, 16, 8), np.uint8))  # empty label
    nii(bad_raw / "8_image.nii", image())  # no label
    shifted = AFFINE.copy()
    shifted[0, 3] += 5
    nii(bad_raw / "9_image.nii", image())
    nii(bad_raw / "9_label.nii", label(), shifted)  # affine mismatch
    before = tree(bad_raw.parent)
    r = hocm(bad_raw, tmp_path / "never", "--verify")
    assert r.exit_code == 2
    lines = err_lines(r)
    assert len(lines) == 7, r.stderr
    for name, reason in [
        ("3_image.nii", "cannot read volume"),
        ("4_label.nii", "shapes differ"),
        ("5_label.nii", "unexpected label values 9"),
        ("6_image.nii", "NaN"),
        ("7_label.nii", "label volume is empty"),
        ("8_image.nii", "no label file for case '8'"),
        ("9_label.nii", "affines differ"),
    ]:
        assert any(name in ln and reason in ln for ln in lines), (name, reason, lines)
    assert "verify hocm: 8 case(s), 7 problem(s)" in r.stdout
    assert tree(bad_raw.parent) == before and not (tmp_path / "never").exists()
    good = tmp_path / "good"
    good.mkdir()
    for name in ("1_image.nii", "1_label.nii", "2_image.nii", "2_label.nii"):
        (good / name).write_bytes((bad_raw / name).read_bytes())
    r = invoke("hocm", good, "--config", CONFIGS / "demo.yaml", "--verify")
    assert r.exit_code == 0, r.output
    assert "verify hocm: 2 case(s), no problems found" in r.stdout


def test_missing_pair_stops_before_writing(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in (1, 2, 3):
        nii(raw / f"{i}_image.nii", image())
        nii(raw / f"{i}_label.nii", label())
    (raw / "2_label.nii").unlink()
    r = hocm(raw, tmp_path / "out")
    assert r.exit_code == 2
    assert err_lines(r) == ["error: 2_image.nii: no label file for case '2'"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["hocm", "{tmp}/missing", "--out", "{tmp}/o"], "missing: source folder not found"),
        (["hvsmrr", "{tmp}", "--out", "{tmp}/o"], "unknown source 'hvsmrr'"),
        (["hocm", "--out", "{tmp}/o"], "source 'hocm' needs a SRC folder"),
        (["phantom", "--out", "{tmp}/o", "--n", "1"], "split 'valid' would be empty: 1 case"),
        (
            ["phantom", "--out", "{tmp}/o", "--config", "{tmp}/typo.yaml"],
            "unknown key 'prepare.sizee'; did you mean 'prepare.size'?",
        ),
        (["nifti", "{tmp}", "--out", "{tmp}/o"], "source 'nifti' has no preset config"),
        (["phantom", "--out", "{tmp}/o", "--shard", "2/2"], "--shard '2/2' must be i/n"),
        (["hocm", "{tmp}", "--out", "{tmp}", "--overwrite"], "--out must not be the source folder"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "typo.yaml").write_text(
        (CONFIGS / "demo.yaml").read_text().replace("  size: [64, 64]", "  sizee: [64, 64]")
    )
    r = invoke(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert r.exit_code == 2, r.output
    assert len(err_lines(r)) == 1 and message in err_lines(r)[0], r.stderr
    assert "Traceback" not in r.output
    assert not (tmp_path / "o").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["typo.yaml"]


def test_help_has_an_example_per_source() -> None:
    r = runner.invoke(app, ["prepare", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    for src in ("hvsmr", "hocm", "alcapa", "left-atrial", "chest-ct", "nifti", "phantom"):
        assert f"segkit prepare {src}" in r.stdout, src


def test_phantom_verify_leaves_nothing(tmp_path: Path) -> None:
    r = invoke("phantom", "--out", tmp_path / "v", "--n", "2", "--verify", "--workers", "1")
    assert r.exit_code == 0, r.output
    assert "verify phantom: 2 case(s), no problems found" in r.stdout
    assert list(tmp_path.iterdir()) == []


def test_out_defaults_to_the_configs_data_dir(tmp_path: Path) -> None:
    """One key for the dataset folder: without --out, prepare writes where train will read (data.dir)."""
    target = tmp_path / "from_config"
    r = invoke("phantom", "--config", CONFIGS / "demo.yaml", "--set", f"data.dir={target}", "--n", "3",
               "--workers", "1")
    assert r.exit_code == 0, r.output
    assert (target / "dataset.json").is_file() and f"data.dir = {target}" in r.stderr
