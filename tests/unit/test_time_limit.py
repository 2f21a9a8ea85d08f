"""train.time_limit and the learning-rate schedules: TimeLimit with a fake clock, ScheduledLR, spent_time."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from segkit.config import TrainConfig
from segkit.errors import ConfigError
from segkit.train import callbacks as cb
from segkit.train.fit import spent_time


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _limit(
    limit_s: float, spent: float = 0.0, previous: tuple[float, ...] = ()
) -> tuple[cb.TimeLimit, FakeClock]:
    fake = FakeClock()
    clock = cb.TrainClock(spent, clock=fake)
    tl = cb.TimeLimit(limit_s, clock, previous)
    tl.set_model(SimpleNamespace(stop_training=False))  # type: ignore[arg-type]
    return tl, fake


def _epochs(tl: cb.TimeLimit, fake: FakeClock, lengths: list[float]) -> int:
    """Run epochs of the given lengths until the callback stops; return how many ran."""
    tl.on_train_begin()
    for i, length in enumerate(lengths):
        fake.t += length
        tl.on_epoch_end(i)
        if tl.model.stop_training:
            return i + 1
    return len(lengths)


def test_stops_when_the_next_epoch_would_not_fit() -> None:
    # first epoch 30 s (compilation), then 10 s each: after epoch 1 the estimate is 30 s (nothing else known),
    # afterwards 10 s; the limit of 75 s fits 30 + 4 x 10 = 70 and not a fifth 10-s epoch.
    tl, fake = _limit(75.0)
    ran = _epochs(tl, fake, [30.0] + [10.0] * 20)
    assert ran == 5
    assert tl.stopped_epoch == 5
    assert tl.clock.elapsed() == pytest.approx(70.0) and tl.clock.elapsed() <= 75.0


def test_the_first_epoch_always_runs_even_past_the_limit() -> None:
    tl, fake = _limit(5.0)
    assert _epochs(tl, fake, [20.0, 20.0]) == 1  # a complete model exists after one epoch
    assert tl.stopped_epoch == 1


def test_estimate_is_the_longest_recent_steady_epoch() -> None:
    tl, fake = _limit(10_000.0)
    _epochs(tl, fake, [50.0, 10.0, 12.0, 11.0, 14.0, 9.0])
    assert tl.next_epoch_estimate() == pytest.approx(14.0)  # max of the last three, compile epoch ignored


def test_resume_counts_the_time_already_spent() -> None:
    # 60 s spent in 10-s epochs before the interruption: with a 100-s limit, four more 10-s epochs fit
    # (the resumed call's compile-heavy first epoch is judged by the earlier steady epochs).
    tl, fake = _limit(100.0, spent=60.0, previous=(10.0, 10.0, 10.0))
    assert _epochs(tl, fake, [12.0, 10.0, 10.0, 10.0, 10.0, 10.0]) == 3
    assert tl.clock.elapsed() == pytest.approx(92.0)


def test_spent_time_reads_time_s_and_steady_epoch_lengths_from_history_rows() -> None:
    nan = float("nan")
    # two calls: epochs 0-1, then a resume at epoch 2 (its first epoch, with compilation, is logged as NaN)
    rows = [{"epoch": 0.0, "time_s": 30.0, "epoch_s": nan}, {"epoch": 1.0, "time_s": 41.0, "epoch_s": 11.0},
            {"epoch": 2.0, "time_s": 80.0, "epoch_s": nan}, {"epoch": 3.0, "time_s": 89.5, "epoch_s": 9.5}]
    spent, durations = spent_time(rows)
    assert spent == 89.5
    assert durations == pytest.approx([11.0, 9.5])  # the 39-s gap across the resume is not an epoch
    assert spent_time([{"epoch": 0.0, "loss": 1.0}]) == (0.0, [])  # runs from before time_s count as 0
    assert spent_time([]) == (0.0, [])


@pytest.mark.parametrize(
    ("name", "progress", "expected"),
    [
        ("constant", 0.7, 1.0),
        ("poly", 0.0, 1.0),
        ("poly", 0.5, 0.5**0.9),
        ("poly", 1.0, 0.0),
        ("poly", 1.5, 0.0),
        ("cosine", 0.5, 0.5),
        ("cosine", 0.25, (1 + math.cos(math.pi / 4)) / 2),
    ],
)
def test_schedule_factor(name: str, progress: float, expected: float) -> None:
    assert cb.schedule_factor(name, progress) == pytest.approx(expected)


def test_scheduled_lr_warmup_then_decay_by_epochs() -> None:
    s = cb.ScheduledLR(cb.LRSchedule(1e-3, "poly", epochs=10, steps=4, warmup_epochs=1))
    assert s.lr_at(0, 0) == pytest.approx(1e-3 * 0.25 * (1 - 0.0) ** 0.9)  # first warm-up step
    assert s.lr_at(0, 3) == pytest.approx(1e-3 * (1 - 0.075) ** 0.9)  # warm-up done at the epoch's last step
    assert s.lr_at(5, 0) == pytest.approx(1e-3 * 0.5**0.9)


def test_scheduled_lr_follows_the_time_budget_when_it_ends_first() -> None:
    fake = FakeClock()
    clock = cb.TrainClock(0.0, clock=fake)
    s = cb.ScheduledLR(cb.LRSchedule(1e-3, "cosine", epochs=1000, steps=10), clock=clock, limit_s=100.0)
    fake.t += 50.0  # half the time budget, a tiny fraction of the epochs
    assert s.lr_at(2, 0) == pytest.approx(0.5e-3)
    fake.t += 60.0
    assert s.lr_at(3, 0) == pytest.approx(0.0)


def test_warmup_needs_a_schedule() -> None:
    from segkit.config import validate_config

    with pytest.raises(ConfigError, match="train.warmup_epochs needs train.schedule"):
        validate_config({"classes": [{"id": 1, "name": "a", "color": [1, 2, 3]}],
                         "train": {"warmup_epochs": 1}})
    assert TrainConfig(schedule="poly", warmup_epochs=2).warmup_epochs == 2
    with pytest.raises(ValueError):
        TrainConfig(time_limit=0)


def test_history_of_an_older_run_gets_the_new_columns_in_csvlogger_order(tmp_path) -> None:  # noqa: ANN001
    from segkit.train.fit import add_history_columns

    path = tmp_path / "history.csv"
    path.write_text("epoch,fg_dice,loss,lr\r\n0,0.5,0.9,0.001\r\n1,0.6,0.8,0.001\r\n")
    add_history_columns(path)
    lines = path.read_text().splitlines()
    # Keras' CSVLogger writes "epoch" then the sorted log keys: appended rows now line up with this header
    assert lines[0] == "epoch,epoch_s,fg_dice,loss,lr,time_s"
    assert lines[1:] == ["0,nan,0.5,0.9,0.001,nan", "1,nan,0.6,0.8,0.001,nan"]


def test_a_run_saved_before_new_keys_existed_can_still_be_resumed() -> None:
    import yaml

    from segkit.config import validate_config
    from segkit.train.fit import config_difference

    cfg = validate_config({"classes": [{"id": 1, "name": "a", "color": [1, 2, 3]}]})
    old = yaml.safe_load(cfg.to_yaml())
    for key in ("time_limit", "schedule", "warmup_epochs", "choose_postprocessing"):
        del old["train"][key]
    del old["data"]["patches"]
    assert config_difference(yaml.safe_dump(old), cfg) is None
    old["train"]["learning_rate"] = 0.5
    assert config_difference(yaml.safe_dump(old), cfg).startswith("train.learning_rate")
