"""Post-processing chosen on validation volumes: flip TTA and keeping the largest component, of the whole
foreground and per class.

nnU-Net decides its post-processing on the cross-validation predictions and applies it only where it helps;
segkit does the same on the validation cases of a run. ``choose_postprocessing`` segments every validation
volume (in its original geometry, as ``segkit infer`` does: ``segkit.predict.volume.predict_volume``) without
and with flip TTA, scores each class on the prediction as it is and with only its foreground's largest
component, each with and without the class's own largest-connected-component filter, and keeps

- TTA when it raises the mean foreground Dice (with the best component choice for each variant),
- nnU-Net's first step, keeping the largest component of the whole foreground (every class together), when
  it raises the mean foreground Dice, or leaves it unchanged while the foreground is one connected piece in
  every validation reference, and
- then the component filter for each class whose mean Dice it raises (a class with two legitimate parts, such
  as both lungs, keeps them because the filter lowers its Dice), and for each class that is one connected
  piece in every validation reference when the filter leaves its Dice unchanged (see ``decide``).

Scores are ``segkit evaluate``'s: the per-case Dice of ``segkit.metrics.overlap`` (an empty reference gives
NaN, ``empty="nan"``), averaged per class over the cases with a finite value (``segkit.metrics.scores``), so
the ``plain`` scores of a decision equal the per-class mean Dice that ``evaluate`` reports for the same model
and cases without TTA and filter.

The decision is written to ``<run_dir>/postprocessing.json``; ``apply_postprocessing`` makes ``evaluate`` and
``infer`` use it unless the config sets ``infer.tta`` / ``infer.largest_component`` itself.

Example:
    >>> pp = choose_postprocessing(cfg)          # after training
    >>> pp.tta, pp.largest_component
    (False, ('foreground', 1))
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segkit.config import Config
from segkit.errors import DataError
from segkit.io.atomic import write_json
from segkit.io.run_folder import MODEL_FILE, POSTPROCESSING_FILE
from segkit.metrics.overlap import class_counts, dice_from_counts
from segkit.metrics.scores import ScoreTable
from segkit.postprocess.components import FOREGROUND, count_components, largest_component, largest_foreground
from segkit.progress import NULL_PROGRESS, Part, Progress

if TYPE_CHECKING:
    import keras

    from segkit.predict.cases import SourceCase
    from segkit.prepare.record import CaseRecord

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class Postprocessing:
    """A run's post-processing decision.

    Attributes:
        tta: use flip test-time augmentation.
        largest_component: what keeps only its largest connected component: ``"foreground"`` (every class
            together, applied first) and class ids.
        split: the split it was decided on.
        cases: the case ids scored.
        dice: mean Dice per variant (``VARIANTS``: ``plain``, ``plain+lcc``, ``plain+fg``, ``plain+fg+lcc``
            and the same with ``tta``) and class name.
        reference_components: connected components of each class in each validation reference that has it.
        foreground_components: connected components of the foreground in each validation reference that has
            one.
    """

    tta: bool
    largest_component: tuple[int | str, ...]
    split: str = "valid"
    cases: tuple[str, ...] = ()
    dice: dict[str, dict[str, float | None]] = field(default_factory=dict)
    reference_components: dict[str, list[int]] = field(default_factory=dict)
    foreground_components: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"tta": self.tta, "largest_component": list(self.largest_component), "split": self.split,
                "cases": list(self.cases), "dice": self.dice,
                "reference_components": self.reference_components,
                "foreground_components": list(self.foreground_components)}

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: Path | None = None) -> Postprocessing:
        try:
            return cls(bool(obj["tta"]),
                       tuple(c if c == FOREGROUND else int(c) for c in obj["largest_component"]),
                       str(obj.get("split", "")), tuple(obj.get("cases", ())), dict(obj.get("dice", {})),
                       dict(obj.get("reference_components", {})),
                       tuple(int(n) for n in obj.get("foreground_components", ())))
        except KeyError as e:
            raise DataError(f"invalid {POSTPROCESSING_FILE}: the key {e} is missing", path=path,
                            hint="delete the file (post-processing then stays off) or retrain") from e
        except (TypeError, ValueError) as e:
            raise DataError(f"invalid {POSTPROCESSING_FILE}: {e}", path=path,
                            hint="delete the file (post-processing then stays off) or retrain") from e


def load_postprocessing(run_dir: Path) -> Postprocessing | None:
    """The decision stored in ``run_dir`` (``None`` when there is none)."""
    path = Path(run_dir) / POSTPROCESSING_FILE
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {POSTPROCESSING_FILE}: {e}", path=path,
                        hint="delete the file (post-processing then stays off) or retrain") from e
    return Postprocessing.from_json(obj, path)


def apply_postprocessing(cfg: Config, run_dir: Path | None, *, volumes: bool = True) -> Config:
    """``cfg`` with ``infer.tta`` / ``infer.largest_component`` resolved: a value the config (or ``--set``)
    gives wins; ``null`` (the default) takes the choice in ``run_dir/postprocessing.json``, and is off without
    one.

    Args:
        cfg: the config.
        run_dir: the folder of the model (``postprocessing.json`` beside ``model.keras``); ``None``: no
            decision (an ensemble of models from several runs), so both are off unless the config sets them.
        volumes: the input is volumes. For 2D slices the component choice (made on 3D volumes, where one
            structure can cross a slice twice) is not applied.
    """
    pp = load_postprocessing(run_dir) if run_dir is not None else None
    update: dict[str, Any] = {}
    if cfg.infer.tta is None:
        update["tta"] = pp.tta if pp is not None else False
    if cfg.infer.largest_component is None:
        update["largest_component"] = pp.largest_component if (pp is not None and volumes) else False
    if not update:
        return cfg
    logger.debug("post-processing (%s): %s", run_dir, update)
    return cfg.model_copy(update={"infer": cfg.infer.model_copy(update=update)})


def decide(
    means: dict[str, dict[int, float | None]],
    class_ids: Sequence[int],
    single_structure: dict[int, bool] | None = None,
    single_foreground: bool = False,
) -> tuple[bool, tuple[int | str, ...], float, float]:
    """The decision from mean Dice per variant (``VARIANTS``) and class.

    For each TTA setting, every class takes the filter if it raises that class's mean Dice, or if it leaves it
    unchanged (the validation predictions had no stray piece to remove) and the class is one connected
    structure in every validation reference that contains it (``single_structure``): a piece apart from it is
    then an error wherever it shows up (on ACDC's held-out patients, stray LV/MYO blobs on basal slices that
    one validation patient never had).
    A class with several pieces in a reference (both lungs) gets the filter only on a strict gain.

    When ``means`` has the ``+fg`` variants (the foreground's largest component kept first, nnU-Net's
    order), the per-class choice is made again on them, and the foreground filter is kept if that mean
    foreground Dice is higher, or equal while the foreground is one piece in every validation reference
    (``single_foreground``). On a tie the per-class choice is the one made on the foreground-filtered labels,
    which may leave out a class filter that won only by removing what the foreground filter removes.
    TTA is kept only if the resulting mean foreground Dice beats the plain one.
    Classes never seen (``None``) are skipped.

    Returns:
        ``(tta, the filter's targets ("foreground" first, then class ids), plain score, tta score)``.

    Example:
        >>> decide({"plain": {1: .8, 2: .7}, "plain+lcc": {1: .85, 2: .6},
        ...         "tta": {1: .8, 2: .7}, "tta+lcc": {1: .84, 2: .6}}, [1, 2])
        (False, (1,), 0.775, 0.77)  # doctest: +SKIP
    """

    def per_class(variant: str) -> tuple[float, tuple[int | str, ...]]:
        total: list[float] = []
        chosen: list[int | str] = []
        for cid in class_ids:
            plain, lcc = means[variant].get(cid), means[variant + "+lcc"].get(cid)
            if plain is None:
                continue
            one_piece = bool((single_structure or {}).get(cid))
            if lcc is not None and (lcc > plain or (one_piece and lcc == plain)):
                chosen.append(cid)
                total.append(lcc)
            else:
                total.append(plain)
        return (float(np.mean(total)) if total else 0.0), tuple(chosen)

    def best(variant: str) -> tuple[float, tuple[int | str, ...]]:
        score, chosen = per_class(variant)
        if variant + "+fg" not in means:
            return score, chosen
        fg_score, fg_chosen = per_class(variant + "+fg")
        if fg_score > score or (single_foreground and fg_score == score):
            return fg_score, (FOREGROUND, *fg_chosen)
        return score, chosen

    plain_score, plain_lcc = best("plain")
    tta_score, tta_lcc = best("tta")
    use_tta = tta_score > plain_score
    return use_tta, (tta_lcc if use_tta else plain_lcc), plain_score, tta_score


VARIANTS = ("plain", "plain+lcc", "plain+fg", "plain+fg+lcc", "tta", "tta+lcc", "tta+fg", "tta+fg+lcc")


@dataclass(frozen=True)
class _Member:
    """One model of a choice with the validation cases it scores (volume cases whose sources exist)."""

    cfg: Config
    model_path: Path
    cases: dict[str, CaseRecord]
    label_cfg: Config


@dataclass
class _Scores:
    """What the choice accumulates: Dice per variant (``VARIANTS``) per case x class, and the connected
    components of each class (and of the foreground) in each reference that has it."""

    class_ids: list[int]
    table: ScoreTable
    pieces: dict[int, list[int]]
    scored: list[str] = field(default_factory=list)
    foreground_pieces: list[int] = field(default_factory=list)


def choose_postprocessing(
    cfg: Config,
    model_path: Path | None = None,
    split: str = "valid",
    progress: Progress = NULL_PROGRESS,
    write: bool = True,
) -> Postprocessing | None:
    """Decide TTA and the component filters (foreground, per class) on the volume cases of ``split`` (see the
    module docs).

    Args:
        cfg: the run's config (``data.dir`` with dataset.json, ``train.run_dir``, classes; under ``data.fold``
            the split is that fold's).
        model_path: default ``<train.run_dir>/model.keras``.
        split: the cases to decide on (never the test cases).
        progress: started once (description ``"postprocessing"``) with the number of slices to segment
            (every slice of each volume case, twice: without and with flip TTA), then advanced by the slices
            done.
        write: store the decision as ``<run_dir>/postprocessing.json``.

    Returns:
        The decision, or ``None`` when the split has no volume case whose source files still exist
        (2D datasets, moved sources): nothing is written then.
    """
    run_dir = Path(cfg.train.run_dir)
    model = Path(model_path) if model_path else run_dir / MODEL_FILE
    return choose_postprocessing_pooled([(cfg, model)], run_dir, split, progress, write)


def choose_postprocessing_pooled(
    members: Sequence[tuple[Config, Path]],
    out_dir: Path,
    split: str = "valid",
    progress: Progress = NULL_PROGRESS,
    write: bool = True,
) -> Postprocessing | None:
    """``choose_postprocessing`` over several (config, model) pairs, each scored on its own ``split`` cases
    and the scores pooled -- cross-validation: every fold's model on its validation fold, so every case is
    scored once by a model that never trained on it (nnU-Net decides its post-processing this way).

    Args:
        members: (config, model file) pairs; the configs differ in ``data.fold``.
        out_dir: where ``postprocessing.json`` goes (``write``).
        split: ``valid``.
        progress: as for ``choose_postprocessing`` (one task over every member's cases).
        write: store the decision as ``<out_dir>/postprocessing.json``.

    Returns:
        The decision (``split`` recorded as ``valid`` or ``cv`` for several members), or ``None`` without any
        volume case whose source files exist.
    """
    classes = [(c.id, c.name) for c in members[0][0].effective_classes]
    work = _members(members, split)  # first: the progress total is their slices
    if work:  # every slice of each case is segmented twice: without and with flip TTA
        from segkit.predict.volume import slices_visited

        progress.start(2 * sum(slices_visited(r.geometry, w.cfg) for w in work for r in w.cases.values()),
                       "postprocessing")
    ids = [cid for cid, _ in classes]
    scores = _Scores(ids, ScoreTable(ids), {cid: [] for cid in ids})
    for member in work:
        _score_member(member, scores, progress)
    if not scores.scored:
        logger.info("no %s volume with its source files: post-processing left off", split)
        return None
    pp = _decision(scores, classes, split if len(members) == 1 else "cv")
    if write:
        write_json(Path(out_dir) / POSTPROCESSING_FILE, pp.to_json())
    return pp


def _members(members: Sequence[tuple[Config, Path]], split: str) -> list[_Member]:
    """The members with at least one volume case of ``split`` whose source files exist."""
    from segkit.predict.cases import dataset_cases

    work = []
    for cfg, model_path in members:
        cases = dataset_cases(cfg, split)
        if cases.with_sources:
            work.append(_Member(cfg, Path(model_path), cases.with_sources, cases.label_cfg))
    return work


def _score_member(member: _Member, scores: _Scores, progress: Progress) -> None:
    """Segment each case of ``member`` without and with TTA and record every variant's Dice per class."""
    from segkit.predict.cases import read_source_case
    from segkit.predict.models import load_model
    from segkit.predict.volume import slices_visited

    cfg = member.cfg
    model: Any = load_model(member.model_path, cfg, precision=cfg.train.precision)
    if cfg.cascade.enabled:  # the volumes go through both stages, as segkit infer runs them
        from segkit.predict.cascade import load_cascade

        model = load_cascade(Path(cfg.train.run_dir), cfg, fine=model, precision=cfg.train.precision)
    for case_id in sorted(member.cases):
        record = member.cases[case_id]
        case = read_source_case(case_id, record, member.label_cfg)
        if case is None:  # source files changed since prepare: not scored
            progress.advance(2 * slices_visited(record.geometry, cfg))
            continue
        for cid in scores.class_ids:
            if (case.reference == cid).any():
                scores.pieces[cid].append(count_components(case.reference == cid))
        if case.reference.any():
            scores.foreground_pieces.append(count_components(case.reference != 0))
        dice: dict[int, dict[str, float]] = {cid: {} for cid in scores.class_ids}
        for tta in (False, True):
            _variant_dice(model, case, cfg, tta, dice, progress)
        for cid in scores.class_ids:
            scores.table.add(case_id, cid, dice[cid])
        scores.scored.append(case_id)


def _variant_dice(
    model: keras.Model, case: SourceCase, cfg: Config, tta: bool, dice: dict[int, dict[str, float]],
    progress: Progress,
) -> None:
    """Dice of each class without and with the per-class component filter, on the prediction as it is and
    with only its largest foreground component, for one TTA setting, into ``dice``."""
    from segkit.predict.volume import VolumeSettings, predict_volume

    settings = VolumeSettings(batch_size=int(cfg.infer.batch_size), tta=tta)
    pred = predict_volume(model, case.image, case.geometry, cfg, settings, Part(progress)).labels
    ref = case.reference
    for name, labels in (("tta" if tta else "plain", pred), ("tta+fg" if tta else "plain+fg",
                                                               largest_foreground(pred))):
        counts = class_counts(labels, ref, list(dice))
        for cid in dice:
            c, f = counts[cid], class_counts(largest_component(labels, [cid]), ref, [cid])[cid]
            dice[cid][name] = dice_from_counts(c.tp, c.fp, c.fn)
            dice[cid][name + "+lcc"] = dice_from_counts(f.tp, f.fp, f.fn)


def _decision(scores: _Scores, classes: Sequence[tuple[int, str]], split: str) -> Postprocessing:
    """The decision from the accumulated scores (``decide``), with its evidence."""
    means = {v: {cid: scores.table.mean(v, cid) for cid, _ in classes} for v in VARIANTS}
    single = {cid: bool(n) and all(k == 1 for k in n) for cid, n in scores.pieces.items()}
    one_foreground = bool(scores.foreground_pieces) and all(k == 1 for k in scores.foreground_pieces)
    use_tta, lcc, plain_score, tta_score = decide(means, [cid for cid, _ in classes], single, one_foreground)
    pp = Postprocessing(
        tta=use_tta,
        largest_component=lcc,
        split=split,
        cases=tuple(sorted(scores.scored)),
        dice={v: {name: means[v][cid] for cid, name in classes} for v in means},
        reference_components={name: scores.pieces[cid] for cid, name in classes},
        foreground_components=tuple(scores.foreground_pieces),
    )
    logger.info("post-processing chosen on %d %s case(s): tta %s (mean Dice %.4f vs %.4f), "
                "largest component %s", len(scores.scored), pp.split, use_tta, tta_score, plain_score,
                list(pp.largest_component) or "none")
    return pp


__all__ = ["POSTPROCESSING_FILE", "Postprocessing", "apply_postprocessing", "choose_postprocessing",
           "choose_postprocessing_pooled", "decide", "load_postprocessing"]
