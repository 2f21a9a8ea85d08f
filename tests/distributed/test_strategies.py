"""train.strategy: mirrored on 2 logical CPU devices matches one device; two localhost workers train to the
same weights; the chief's run folder is complete and resumable.

Each training runs in a subprocess (``worker.py``): logical CPU devices must be configured before TensorFlow
initialises, and every worker of a multi-worker run is its own process. Data: 40 train / 4 valid synthetic
32x32 slices (three discs of the demo's class colours); model: flexunet, 2 levels, 4 filters, GroupNorm.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from segkit.config import load_config
from segkit.errors import ConfigError
from segkit.train.strategy import check_batch, scaled_learning_rate

WORKER = Path(__file__).with_name("worker.py")
REPO = Path(__file__).resolve().parents[2]
COLORS = np.array([(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)], np.uint8)  # demo.yaml's classes
RUN_FILES = ("config.yaml", "versions.json", "history.csv", "history.json", "curves.png", "model.keras",
             "last.keras", "train_summary.json", "epoch_infer")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 train and 4 valid 32x32 slices: three discs (ventricle, atrium, vessel colours) on noise."""
    out = tmp_path_factory.mktemp("tiny") / "data"
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("valid", 4)):
        (out / split / "images").mkdir(parents=True)
        (out / split / "masks").mkdir(parents=True)
        for i in range(n):
            label = np.zeros((32, 32), np.uint8)
            for c in (1, 2, 3):
                y, x = rng.integers(4, 28, 2)
                cv2.circle(label, (int(x), int(y)), int(rng.integers(2, 6)), c, -1)
            image = (label * 50 + rng.integers(0, 40, (32, 32))).astype(np.uint8)
            cv2.imwrite(str(out / split / "images" / f"case{i:02d}_{i:03d}.png"), image)
            cv2.imwrite(str(out / split / "masks" / f"case{i:02d}_{i:03d}.png"), COLORS[label][..., ::-1])
    return out


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


def _result(stdout: str) -> dict:
    line = next(x for x in stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def _free_ports(n: int) -> str:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = ",".join(str(s.getsockname()[1]) for s in socks)
    for s in socks:
        s.close()
    return ports


def _workers(data: Path, run: Path, *extra: str, timeout: float = 170) -> list[dict]:
    """Two workers of a localhost cluster, started together; both must finish within ``timeout``."""
    ports = _free_ports(2)
    procs = [subprocess.Popen([sys.executable, str(WORKER), "worker", str(REPO / "configs/demo.yaml"),
                               str(data), str(run), str(i), ports, *extra], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, err[-3000:]
            outs.append(_result(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return outs


def test_global_batch_must_split_over_replicas_and_accumulation_needs_one() -> None:
    cfg = load_config(REPO / "configs/demo.yaml", ["train.batch_size=6"])
    check_batch(cfg.train, 2)  # 3 per replica
    with pytest.raises(ConfigError, match="does not split evenly over 4 replicas") as e:
        check_batch(cfg.train, 4)
    assert "train.batch_size=8" in str(e.value.hint)
    acc = load_config(REPO / "configs/demo.yaml", ["train.accumulate_steps=2"])
    check_batch(acc.train, 1)
    with pytest.raises(ConfigError, match="accumulate_steps=2 needs one replica"):
        check_batch(acc.train, 2)
    with pytest.raises(ConfigError, match="accumulate_steps > 1 needs one replica"):
        load_config(REPO / "configs/demo.yaml", ["train.accumulate_steps=2", "train.strategy=mirrored"])
    with pytest.raises(ConfigError, match="strategy"):
        load_config(REPO / "configs/demo.yaml", ["train.strategy=ddp"])


def test_linear_learning_rate_rule() -> None:
    cfg = load_config(REPO / "configs/demo.yaml", ["train.learning_rate=0.001", "train.batch_size=16"])
    assert scaled_learning_rate(cfg.train) == 0.001  # no reference batch: as given
    ref = load_config(REPO / "configs/demo.yaml", ["train.learning_rate=0.001", "train.batch_size=16",
                                                   "train.accumulate_steps=2", "train.lr_reference_batch=8"])
    assert scaled_learning_rate(ref.train) == pytest.approx(0.004)  # 1e-3 x (16 x 2) / 8


def test_the_header_and_the_run_summary_name_the_strategy(tmp_path: Path) -> None:
    from segkit.io.run_folder import TrainSummary, read_train_summary, write_train_summary
    from segkit.train.strategy import Distribution

    assert Distribution("single", "auto", None, 1).describe(8) == "single (auto), 1 replica x batch 8"
    mw = Distribution("multi_worker", "multi_worker", None, 4, workers=2, worker_index=1, is_chief=False)
    assert mw.describe(8) == "multi_worker, 4 replicas x batch 2, 2 workers"
    write_train_summary(tmp_path, TrainSummary("epochs", 1, 1, 2.0, None, distribution=mw.to_json(8)))
    assert read_train_summary(tmp_path)["distribution"] == {  # type: ignore[index]
        "strategy": "multi_worker", "requested": "multi_worker", "replicas": 4, "workers": 2,
        "global_batch": 8, "batch_per_replica": 2}


def test_multi_worker_without_a_cluster_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from segkit.train.strategy import cluster_resolver

    for key in ("TF_CONFIG", "SLURM_JOB_ID", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="multi_worker needs a cluster"):
        cluster_resolver()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG is not JSON"):
        cluster_resolver()


def test_shards_split_each_epoch_and_an_endless_stream_restarts_at_its_first_epoch(tiny_data: Path) -> None:
    from segkit.data.pipeline import Shard, make_dataset

    cfg = load_config(REPO / "configs/demo.yaml", ["data.image_size=[32,32]", f"data.dir={tiny_data}",
                                                   "train.batch_size=4", "augment.enabled=false"])

    def samples(ds, batches: int) -> list[float]:  # noqa: ANN001 - one number per sample: its image sum
        return [round(float(x.sum()), 3) for images, _ in ds.take(batches) for x in images.numpy()]

    epoch = samples(make_dataset(cfg, "train", True, endless=True), 10)  # 40 slices: one epoch
    parts = [samples(make_dataset(cfg, "train", True, shard=Shard(i, 2, 2), endless=True), 10)
             for i in (0, 1)]
    assert parts[0] == epoch[0::2] and parts[1] == epoch[1::2]  # interleaved halves of the same order
    stream = make_dataset(cfg, "train", True, seed_offset=3, endless=True)
    first = samples(stream, 2)
    assert samples(stream, 2) == first  # a new iteration starts at epoch 3 again (Keras' extra read)
    counted = make_dataset(cfg, "train", True, seed_offset=3)
    assert samples(counted, 2) == first and samples(counted, 2) != first  # re-iteration: the next epoch


def test_slurm_job_step_gives_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """srun with 2 nodes x 2 tasks on GPU nodes: four workers, ports from 8888, this task = SLURM_PROCID."""
    from segkit.train.strategy import cluster_resolver

    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the resolver sets it for its task: restored after
    for key, value in {"SLURM_JOB_ID": "7", "SLURM_STEP_NUM_TASKS": "4", "SLURM_NTASKS": "4",
                       "SLURM_PROCID": "3", "SLURM_STEP_NODELIST": "gpu[1-2]",
                       "SLURM_STEP_TASKS_PER_NODE": "2(x2)", "SLURM_GPUS_ON_NODE": "2"}.items():
        monkeypatch.setenv(key, value)
    resolver = cluster_resolver()
    assert resolver.cluster_spec().as_dict() == {
        "worker": ["gpu1:8888", "gpu1:8889", "gpu2:8888", "gpu2:8889"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 3)
    monkeypatch.setenv("SLURM_GPUS_ON_NODE", "0")
    with pytest.raises(ConfigError, match="needs GPU nodes"):
        cluster_resolver()


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_one_device_and_resumes(tiny_data: Path, tmp_path: Path) -> None:
    """Single: 2 epochs x 10 steps. Mirrored (2 replicas x batch 2): killed after epoch 1, resumed from its
    backup, stopped by train.time_limit after epoch 2. The losses after 20 steps agree within 1e-3."""
    proc = subprocess.run([sys.executable, str(WORKER), "mirrored", str(REPO / "configs/demo.yaml"),
                           str(tiny_data), str(tmp_path)], env=_env(), capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = _result(proc.stdout)
    assert r["backup"] == ["epoch_0001.weights.h5", "state.json"] and r["initial_epoch"] == 1
    assert r["stop"] == "time_limit" and r["summary"]["stop_reason"] == "time_limit"
    assert r["summary"]["distribution"] == {"strategy": "mirrored", "requested": "mirrored", "replicas": 2,
                                            "workers": 1, "global_batch": 4, "batch_per_replica": 2}
    single, mirrored = r["single"], r["second"]
    assert [row["epoch"] for row in mirrored] == [1, 2]
    for key in ("loss", "val_loss"):
        assert mirrored[-1][key] == pytest.approx(single[-1][key], rel=1e-3)
    assert np.allclose(r["mirrored_w"], r["single_w"], rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_two_localhost_workers_stop_together_on_sigterm_and_resume(tiny_data: Path, tmp_path: Path) -> None:
    """Two workers (TF_CONFIG, 127.0.0.1), 2 epochs: worker 1 gets SIGTERM in epoch 2, both stop (Preempted)
    with the backup of epoch 1 in the chief's folder; --resume (same processes) trains epoch 2. Both workers
    end with the same weights, those of the chief's last.keras; only the chief wrote the run folder."""
    run = tmp_path / "run"
    w0, w1 = _workers(tiny_data, run)
    for w in (w0, w1):
        assert "SIGTERM during epoch 2" in w["preempted"] and "--resume" in w["preempted"]
    assert w0["backup"] == ["epoch_0001.weights.h5", "state.json"]
    assert w0["initial_epoch"] == w1["initial_epoch"] == 1 and w0["epochs"] == w1["epochs"] == 2
    assert w0["weights"] == w1["weights"]  # bit for bit
    assert np.allclose(w0["file_weights"], w0["weights"], rtol=1e-6)
    clock_free = [[{k: v for k, v in row.items() if k not in ("time_s", "epoch_s")} for row in w["history"]]
                  for w in (w0, w1)]  # the logs agree; each worker's clock is its own
    assert clock_free[0] == clock_free[1] and [row["epoch"] for row in clock_free[0]] == [1, 2]
    assert w0["run_dir"] == w1["run_dir"] == str(run)
    for name in RUN_FILES:
        assert (run / name).exists(), name
    assert not (run / "backup").exists()  # a finished run keeps none
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["epochs_done"] == 2 and summary["distribution"]["workers"] == 2
    assert summary["distribution"]["strategy"] == "multi_worker"
    assert len((run / "history.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
