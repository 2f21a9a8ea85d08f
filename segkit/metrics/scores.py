"""``ScoreTable``: per case x class metric values, accumulated, then reduced over cases.

The one accumulator of segkit, as MONAI's ``DiceMetric`` accumulates what ``compute_dice`` returns: the pure
per-case functions (``segkit.metrics.overlap``, ``segkit.metrics.surface``) give the values, the table keeps
them in the order they came, and every reduction goes through ``summarize`` (finite values only: NaN marks an
empty reference, inf a surface distance to an empty prediction; both are counted, never averaged) and
``foreground_mean``. ``segkit evaluate``'s per-class statistics, the cross-validation summary and the
post-processing choice all reduce their scores here, so the three agree.

Example:
    >>> t = ScoreTable(["LA"])
    >>> for case, d in (("c1", 0.8), ("c2", math.nan), ("c3", 0.6)):
    ...     t.add(case, "LA", {"dice": d})
    >>> t.mean("dice", "LA"), t.summary("dice", "LA")["n_nan"]
    (0.7, 1)
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from segkit.metrics.overlap import foreground_mean, summarize


class ScoreTable:
    """Metric values per case and class, in the order they were added.

    Args:
        classes: the class keys (ids or names) in report order; ``case_means`` takes the foreground mean over
            them in this order.
    """

    def __init__(self, classes: Sequence[Hashable]) -> None:
        self.classes = list(classes)
        self.rows: list[tuple[str, Hashable, dict[str, float | None]]] = []

    def add(self, case_id: str, cls: Hashable, values: Mapping[str, float | None]) -> None:
        """Record the metric values of one case x class (``None``: not computed, e.g. no spacing)."""
        self.rows.append((case_id, cls, dict(values)))

    def extend(
        self, rows: Iterable[Mapping[str, Any]], metrics: Sequence[str], key: str = "class_name"
    ) -> None:
        """Add report rows (``segkit evaluate``'s per case x class rows): their ``case_id``, the class under
        ``key`` and the values of ``metrics``."""
        for r in rows:
            self.add(str(r["case_id"]), r[key], {m: r.get(m) for m in metrics})

    def values(self, metric: str, cls: Hashable) -> list[float]:
        """The values of ``metric`` for class ``cls`` over cases, in order; ``None`` values are left out."""
        found = (v.get(metric) for _, c, v in self.rows if c == cls)
        return [float(x) for x in found if x is not None]

    def summary(self, metric: str, cls: Hashable) -> dict[str, float | int | None]:
        """``summarize`` of one class's values: mean / median / std over the finite ones, NaN and inf
        counted."""
        return summarize(self.values(metric, cls))

    def mean(self, metric: str, cls: Hashable) -> float | None:
        """Mean of one class's finite values (``None`` when it has none)."""
        mean = self.summary(metric, cls)["mean"]
        return None if mean is None else float(mean)

    def cases(self) -> list[str]:
        """The case ids, in the order of their first value."""
        return list(dict.fromkeys(case for case, _, _ in self.rows))

    def case_means(self, metric: str) -> list[float | None]:
        """Per case (``cases`` order), the foreground mean of ``metric`` over the classes it has a finite
        value for (``foreground_mean``; ``None`` for a case without any)."""
        per_case: dict[str, dict[Hashable, float | None]] = {}
        for case, cls, v in self.rows:
            per_case.setdefault(case, {})[cls] = v.get(metric)
        return [foreground_mean(scores[c] for c in self.classes if c in scores)
                for scores in per_case.values()]

    def count_infinite(self, metric: str) -> int:
        """How many case x class values of ``metric`` are infinite (``summarize``'s ``n_inf``)."""
        values = (v.get(metric) for _, _, v in self.rows)
        return sum(1 for x in values if x is not None and math.isinf(float(x)))
