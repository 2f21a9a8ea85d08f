"""Post-processing chosen on validation volumes: flip TTA and, per class, keeping the largest component.

nnU-Net decides its post-processing on the cross-validation predictions and applies it only where it helps;
segkit does the same on the validation cases of a run. ``choose_postprocessing`` segments every validation
volume (in its original geometry, as ``segkit infer`` does) without and with flip TTA, scores each class with
and without the largest-connected-component filter, and keeps

- TTA when it raises the mean foreground Dice (with the best component choice for each variant), and
- the component filter for each class whose mean Dice it raises (a class with two legitimate parts, such as
  both lungs, keeps them because the filter lowers its Dice), and for each class that is one connected piece in
  every validation reference when the filter leaves its Dice unchanged (see ``decide``).

The decision is written to ``<run_dir>/postprocessing.json``; ``apply_postprocessing`` makes ``evaluate`` and
``infer`` use it unless the config sets ``infer.tta`` / ``infer.largest_component`` itself.

Example:
    >>> pp = choose_postprocessing(cfg)          # after training
    >>> pp.tta, pp.largest_component
    (False, (1,))
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segkit.config import Config
from segkit.errors import DataError
from segkit.io.atomic import write_json
from segkit.progress import NULL_PROGRESS, Part, Progress

logger = logging.getLogger(__name__)

POSTPROCESSING_FILE = "postprocessing.json"


@dataclass(frozen=True)
class Postprocessing:
    """A run's post-processing decision.

    Attributes:
        tta: use flip test-time augmentation.
        largest_component: class ids whose largest connected component is kept.
        split: the split it was decided on.
        cases: the case ids scored.
        dice: mean Dice per variant (``plain``, ``plain+lcc``, ``tta``, ``tta+lcc``) and class name.
        reference_components: connected components of each class in each validation reference that has it.
    """

    tta: bool
    largest_component: tuple[int, ...]
    split: str = "valid"
    cases: tuple[str, ...] = ()
    dice: dict[str, dict[str, float | None]] = field(default_factory=dict)
    reference_components: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"tta": self.tta, "largest_component": list(self.largest_component), "split": self.split,
                "cases": list(self.cases), "dice": self.dice, "reference_components": self.reference_components}

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: Path | None = None) -> Postprocessing:
        try:
            return cls(bool(obj["tta"]), tuple(int(c) for c in obj["largest_component"]), str(obj.get("split", "")),
                       tuple(obj.get("cases", ())), dict(obj.get("dice", {})),
                       dict(obj.get("reference_components", {})))
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


def apply_postprocessing(cfg: Config, run_dir: Path | None, volumes: bool = True) -> Config:
    """``cfg`` with ``infer.tta`` / ``infer.largest_component`` resolved: a value the config (or ``--set``) gives
    wins; ``null`` (the default) takes the choice in ``run_dir/postprocessing.json``, and is off without one.

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


def count_components(mask: np.ndarray) -> int:
    """Connected components of a boolean mask, with the connectivity of ``largest_component`` (26 in 3D)."""
    from scipy import ndimage

    return int(ndimage.label(mask, structure=ndimage.generate_binary_structure(mask.ndim, mask.ndim))[1])


def _dice(pred: np.ndarray, ref: np.ndarray, cid: int) -> float:
    p, r = pred == cid, ref == cid
    denom = int(p.sum()) + int(r.sum())
    return math.nan if denom == 0 else 2.0 * int(np.logical_and(p, r).sum()) / denom


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def decide(
    means: dict[str, dict[int, float | None]],
    class_ids: Sequence[int],
    single_structure: dict[int, bool] | None = None,
) -> tuple[bool, tuple[int, ...], float, float]:
    """The decision from mean Dice per variant (``plain``, ``plain+lcc``, ``tta``, ``tta+lcc``) and class.

    For each TTA setting, every class takes the filter if it raises that class's mean Dice, or if it leaves it
    unchanged (the validation predictions had no stray piece to remove) and the class is one connected structure
    in every validation reference that contains it (``single_structure``): a piece apart from it is then an error wherever it shows
    up (on ACDC's held-out patients, stray LV/MYO blobs on basal slices that one validation patient never had).
    A class with several pieces in a reference (both lungs) gets the filter only on a strict gain. TTA is kept
    only if the resulting mean foreground Dice beats the plain one. Classes never seen (``None``) are skipped.

    Returns:
        ``(tta, largest-component class ids, plain score, tta score)``.

    Example:
        >>> decide({"plain": {1: .8, 2: .7}, "plain+lcc": {1: .85, 2: .6},
        ...         "tta": {1: .8, 2: .7}, "tta+lcc": {1: .84, 2: .6}}, [1, 2])
        (False, (1,), 0.775, 0.77)  # doctest: +SKIP
    """

    def best(variant: str) -> tuple[float, tuple[int, ...]]:
        total: list[float] = []
        chosen: list[int] = []
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

    plain_score, plain_lcc = best("plain")
    tta_score, tta_lcc = best("tta")
    use_tta = tta_score > plain_score
    return use_tta, (tta_lcc if use_tta else plain_lcc), plain_score, tta_score


def choose_postprocessing(
    cfg: Config,
    model_path: Path | None = None,
    split: str = "valid",
    progress: Progress = NULL_PROGRESS,
    write: bool = True,
) -> Postprocessing | None:
    """Decide TTA and the per-class component filter on the volume cases of ``split`` (see the module docs).

    Args:
        cfg: the run's config (``data.dir`` with dataset.json, ``train.run_dir``, classes; under ``data.fold``
            the split is that fold's).
        model_path: default ``<train.run_dir>/model.keras``.
        split: the cases to decide on (never the test cases).
        progress: started once (description ``"postprocessing"``) with the number of slices to segment
            (every slice of each volume case, twice: without and with flip TTA), then advanced by the slices done.
        write: store the decision as ``<run_dir>/postprocessing.json``.

    Returns:
        The decision, or ``None`` when the split has no volume case whose source files still exist
        (2D datasets, moved sources): nothing is written then.
    """
    run_dir = Path(cfg.train.run_dir)
    model = Path(model_path) if model_path else run_dir / "model.keras"
    return choose_postprocessing_pooled([(cfg, model)], run_dir, split, progress, write)


def choose_postprocessing_pooled(
    members: Sequence[tuple[Config, Path]],
    out_dir: Path,
    split: str = "valid",
    progress: Progress = NULL_PROGRESS,
    write: bool = True,
) -> Postprocessing | None:
    """``choose_postprocessing`` over several (config, model) pairs, each scored on its own ``split`` cases and
    the scores pooled -- cross-validation: every fold's model on its validation fold, so every case is scored
    once by a model that never trained on it (nnU-Net decides its post-processing this way).

    Args:
        members: (config, model file) pairs; the configs differ in ``data.fold``.
        out_dir: where ``postprocessing.json`` goes (``write``).
        split: ``valid``.
        progress: as for ``choose_postprocessing`` (one task over every member's cases).

    Returns:
        The decision (``split`` recorded as ``valid`` or ``cv`` for several members), or ``None`` without any
        volume case whose source files exist.
    """
    from segkit.data.pipeline import cases_of_split
    from segkit.evaluate.run import _labels_config, _sources_exist
    from segkit.infer.predict import largest_component, load_model
    from segkit.infer.volume import predict_volume
    from segkit.io.volumes import load_volume
    from segkit.prepare.manifest import MANIFEST_FILE, load_manifest
    from segkit.prepare.record import Geometry, case_records
    from segkit.prepare.slicing import map_labels

    cfg0 = members[0][0]
    classes = [(c.id, c.name) for c in cfg0.effective_classes]
    scores: dict[str, dict[int, list[float]]] = {v: {c: [] for c, _ in classes}
                                                for v in ("plain", "plain+lcc", "tta", "tta+lcc")}
    pieces: dict[int, list[int]] = {c: [] for c, _ in classes}  # connected components per validation reference
    scored: list[str] = []
    # the volume cases whose source files exist, of every member, first: the progress total is their slices
    work: list[tuple[Config, Path, dict[str, tuple[Geometry, tuple[Path, Path]]], dict[str, Any], Path]] = []
    for cfg, model_path in members:
        data_dir = Path(cfg.data.dir)
        manifest_path = data_dir / MANIFEST_FILE
        if not manifest_path.is_file():
            continue
        manifest = load_manifest(data_dir)
        cases: dict[str, tuple[Geometry, tuple[Path, Path]]] = {}
        for c, r in cases_of_split(cfg, case_records(manifest, manifest_path), split).items():
            files = r.volume_files()
            if files is not None and _sources_exist(r):
                cases[c] = (r.geometry, files)
        if cases:
            work.append((cfg, Path(model_path), cases, manifest, manifest_path))
    if work:  # every slice of each case is segmented twice: without and with flip TTA
        progress.start(2 * sum(g.n_slices for w in work for g, _ in w[2].values()), "postprocessing")
    for cfg, model_path, cases, manifest, manifest_path in work:
        model = load_model(model_path, cfg, precision=cfg.train.precision)
        label_cfg = _labels_config(cfg, manifest, manifest_path)
        bs = int(cfg.infer.batch_size)
        for case_id in sorted(cases):
            geometry, (image_path, label_path) = cases[case_id]
            image, label = load_volume(image_path), load_volume(label_path)
            ref = map_labels(label.data, label_cfg, label.path)
            for cid, _ in classes:
                if (ref == cid).any():
                    pieces[cid].append(count_components(ref == cid))
            for tta in (False, True):
                pred = predict_volume(model, image.data, image.affine, geometry, cfg, bs, tta, False, Part(progress),
                                      path=image.path).labels
                name = "tta" if tta else "plain"
                for cid, _ in classes:
                    scores[name][cid].append(_dice(pred, ref, cid))
                    scores[name + "+lcc"][cid].append(_dice(largest_component(pred, [cid]), ref, cid))
            scored.append(case_id)
    if not scored:
        logger.info("no %s volume with its source files: post-processing left off", split)
        return None
    means = {v: {cid: _mean(vals) for cid, vals in per.items()} for v, per in scores.items()}
    single = {cid: bool(n) and all(k == 1 for k in n) for cid, n in pieces.items()}
    use_tta, lcc, plain_score, tta_score = decide(means, [cid for cid, _ in classes], single)
    pp = Postprocessing(
        tta=use_tta,
        largest_component=lcc,
        split=split if len(members) == 1 else "cv",
        cases=tuple(sorted(scored)),
        dice={v: {name: means[v][cid] for cid, name in classes} for v in means},
        reference_components={name: pieces[cid] for cid, name in classes},
    )
    logger.info("post-processing chosen on %d %s case(s): tta %s (mean Dice %.4f vs %.4f), largest component %s",
                len(scored), pp.split, use_tta, tta_score, plain_score, list(pp.largest_component) or "none")
    if write:
        write_json(Path(out_dir) / POSTPROCESSING_FILE, pp.to_json())
    return pp


__all__ = ["Postprocessing", "choose_postprocessing", "choose_postprocessing_pooled", "decide", "apply_postprocessing", "load_postprocessing",
           "POSTPROCESSING_FILE"]
