"""scripts/bench_models.py: one tiny model measured end to end in its child process, the JSON it writes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bench():  # noqa: ANN202 - the script as a module
    spec = importlib.util.spec_from_file_location("bench_models", REPO / "scripts" / "bench_models.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_bench_models_measures_a_model_and_writes_json(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "models.json"
    assert _bench().main(["--only", "sharpunet", "--size", "32", "--steps", "1", "--warmup", "1",
                          "--json", str(out), "--no-jit"]) == 0
    rows = json.loads(out.read_text())
    assert [r["model"] for r in rows] == ["sharpunet"]
    r = rows[0]
    assert r["jit_compile"] is False and r["precision"] == "float32"  # as without native bf16
    assert r["size"] == 32 and r["batch"] == 4 and r["params"] > 0 and r["gflops_per_image"] > 0
    assert r["train_images_per_s"] > 0 and r["infer_images_per_s"] > r["train_images_per_s"]
    assert "| `sharpunet` |" in capsys.readouterr().out
