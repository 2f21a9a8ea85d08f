"""Streaming training data: pair files by stem, decode in parallel, augment, one-hot, batch, prefetch.

Pipeline order (``make_dataset``)::

    file-name list -> shuffle (training; stateless, seeded by (seed, epoch)) -> parallel decode (AUTOTUNE)
    -> augment (training only; seeded by (seed, epoch, index)) -> one-hot -> batch -> prefetch

Only the list of file names is held in memory; decoded arrays live only while they pass through the pipeline,
so peak memory does not grow with the number of slices (``scripts/bench_data.py`` measures it).

Layout of a split folder: ``<split>/images/<stem>.{png,jpg,jpeg}`` and ``<split>/masks/<stem>.{png,jpg}``.
Masks are RGB colour masks decoded with the config's class table (nearest colour within
``data.mask_tolerance``), or grayscale masks thresholded at ``data.gray_threshold`` (``data.mask_mode: gray``,
binary tasks). Reading, decoding and resizing one slice file is ``segkit.io.slices`` (shared with evaluation
and inference); this module pairs the files, adds 2.5D neighbours and patches, and streams them.

Example:
    >>> cfg = load_config(Path("configs/demo.yaml"))
    >>> ds = make_dataset(cfg, "train", training=True)
    >>> images, onehot = next(iter(ds))   # (B, 64, 64, 1) float32, (B, 64, 64, 4) float32
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import numpy.typing as npt

from segkit.data.augment import Augmenter
from segkit.data.patches import center_patch, random_patch
from segkit.errors import DataError, SegkitError
from segkit.io.slices import (
    IMAGE_SUFFIXES,
    MASK_SUFFIXES,
    decode_image,
    decode_mask_file,
    fit_image,
    fit_mask,
    stack_context,
)
from segkit.io.slices import read_image as read_image  # re-exported (segkit.data API)
from segkit.io.slices import read_mask as read_mask  # re-exported (segkit.data API)
from segkit.prepare.split import SPLITS_FILE, fold_view, load_splits, split_of
from segkit.seeds import Stream, generator, seed_word

if TYPE_CHECKING:  # pragma: no cover - typing only; importing this module must not import TensorFlow
    import tensorflow as tf

    from segkit.config import Config

log = logging.getLogger(__name__)
R = TypeVar("R")  # a case record (segkit.prepare.record.CaseRecord)

_SHOW = 5  # file names listed in an error before "... and N more"
_STEM_RE = re.compile(r"^(?P<case>.+)_(?P<idx>\d+)$")
_VIEW_RE = re.compile(r"^(?P<case>.+)_ax[012]_\d+$")  # prepare.extra_axes' slices (outdir.slice_stem)
_VIEW_REST_RE = re.compile(r"ax[012]_\d+")  # what follows "<case>_" in such a stem


# === Pairing ===


def list_pairs(split_dir: Path) -> list[tuple[Path, Path]]:
    """Pair ``split_dir/images/*`` with ``split_dir/masks/*`` by file stem.

    Args:
        split_dir: a split folder such as ``data/train`` holding ``images/`` and ``masks/``.

    Returns:
        ``[(image_path, mask_path), ...]`` sorted by stem.

    Raises:
        DataError: the split folder or one of its sub-folders is missing, it holds no pairs, a stem appears
            twice with different suffixes, or a file has no partner (the error lists them by name).
    """
    split_dir = Path(split_dir)
    hint = "run `segkit prepare` first, or point data.dir at a dataset with train/valid/test folders"
    if not split_dir.is_dir():
        raise DataError("split folder not found", path=split_dir, hint=hint)
    images = _index(split_dir / "images", IMAGE_SUFFIXES, hint)
    masks = _index(split_dir / "masks", MASK_SUFFIXES, hint)
    lonely = sorted(
        [p.name for s, p in images.items() if s not in masks]
        + [p.name for s, p in masks.items() if s not in images]
    )
    if lonely:
        shown = ", ".join(lonely[:_SHOW]) + (
            f" ... and {len(lonely) - _SHOW} more" if len(lonely) > _SHOW else ""
        )
        raise DataError(
            f"{len(lonely)} unpaired file{'s' if len(lonely) != 1 else ''} "
            f"(image without mask or mask without image): {shown}",
            path=split_dir,
            hint="every images/<stem>.png needs a masks/<stem>.png with the same stem",
        )
    if not images:
        raise DataError("split holds no image/mask pairs", path=split_dir, hint=hint)
    return [(images[s], masks[s]) for s in sorted(images)]


def _index(folder: Path, suffixes: Sequence[str], hint: str) -> dict[str, Path]:
    """``{stem: path}`` of the files in ``folder`` with one of ``suffixes`` (case-insensitive)."""
    if not folder.is_dir():
        raise DataError(f"'{folder.name}' folder not found", path=folder, hint=hint)
    found: dict[str, Path] = {}
    for p in folder.iterdir():
        if p.suffix.lower() not in suffixes or p.name.startswith("."):
            continue
        if p.stem in found:
            raise DataError(
                f"two files share the stem '{p.stem}': {found[p.stem].name}, {p.name}",
                path=folder,
                hint="keep one file per stem",
            )
        found[p.stem] = p
    return found


def dataset_size(cfg: Config, split: str) -> int:
    """Number of image/mask pairs of ``split`` (see ``split_pairs``)."""
    return len(split_pairs(cfg, split))


def case_splits(cfg: Config) -> dict[str, str] | None:
    """case id -> split under ``data.fold`` (from ``splits.json``'s folds); ``None`` without a fold: the
    folders (and dataset.json's ``split``) are the split.

    Raises:
        DataError: no splits.json, no folds in it, or a fold out of range.
    """
    if cfg.data.fold is None:
        return None
    data_dir = Path(cfg.data.dir)
    return split_of(fold_view(load_splits(data_dir), int(cfg.data.fold), data_dir / SPLITS_FILE))


def cases_of_split(cfg: Config, records: Mapping[str, R], split: str) -> dict[str, R]:
    """The case records of ``split``: a cross-validation fold's cases under ``data.fold`` (``case_splits``),
    else each record's own ``split`` (dataset.json)."""
    where = case_splits(cfg)
    return {c: r for c, r in records.items()
            if (where.get(c) if where is not None else getattr(r, "split", None)) == split}


def split_pairs(cfg: Config, split: str) -> list[tuple[Path, Path]]:
    """The image/mask pairs of ``split``: the folder ``data.dir/<split>``, or under ``data.fold`` the slices
    of that fold's cases, picked by case id from ``train/`` and ``valid/`` (``test/`` stays the test set).
    With ``train.include_valid`` the ``train`` split is ``train/`` and ``valid/`` together.

    Raises:
        DataError: as ``list_pairs``, ``case_splits``; or no slice of the split's cases was found.
    """
    data_dir = Path(cfg.data.dir)
    where = case_splits(cfg)
    if split == "train" and cfg.train.include_valid and where is None:  # (a fold's config is refused)
        both = list_pairs(data_dir / "train") + list_pairs(data_dir / "valid")
        return sorted(both, key=lambda p: p[0].name)
    if where is None:
        return list_pairs(data_dir / split)
    folders = ("test",) if split == "test" else ("train", "valid")
    ids = sorted(where)
    pairs = [p for f in folders if (data_dir / f).is_dir() for p in list_pairs(data_dir / f)]
    cases = [case_of_stem(p[0].stem, ids)[0] for p in pairs]
    unknown = sorted({c for c in cases if c not in where})
    if unknown:
        raise DataError(
            f"slices of case(s) that splits.json does not list: {', '.join(unknown[:5])}",
            path=data_dir,
            hint="prepare the dataset again with --folds (its folders and splits.json disagree)",
        )
    chosen = sorted(
        (p for p, c in zip(pairs, cases, strict=True) if where[c] == split), key=lambda p: p[0].name
    )
    if not chosen:
        raise DataError(
            f"fold {cfg.data.fold}: no {split} slice found in {', '.join(folders)}",
            path=data_dir,
            hint="prepare the dataset again with --folds (its splits.json and folders disagree)",
        )
    return chosen


def is_view_stem(stem: str) -> bool:
    """Whether a slice stem is one of ``prepare.extra_axes``' views (``<case>_ax<k>_<NNNN>``)."""
    return _VIEW_RE.match(stem) is not None


def case_of_stem(stem: str, case_ids: Sequence[str] = ()) -> tuple[str, int | None]:
    """``<case_id>_<slice_index>`` -> (case_id, slice_index); known case ids (longest first) win.

    A slice along an extra axis (``<case_id>_ax<k>_<NNNN>``, ``prepare.extra_axes``) is its case's with slice
    index None (the index counts along ``prepare.axis`` only); a stem without a numeric suffix is its own
    case with slice index None.
    """
    for case in sorted(case_ids, key=len, reverse=True):
        rest = stem[len(case) + 1 :]
        if stem.startswith(case + "_") and rest.isdigit():
            return case, int(rest)
        if stem.startswith(case + "_") and _VIEW_REST_RE.fullmatch(rest):
            return case, None
    m = _VIEW_RE.match(stem)
    if m:
        return m.group("case"), None
    m = _STEM_RE.match(stem)
    return (m.group("case"), int(m.group("idx"))) if m else (stem, None)


# === 2.5D context ===


def context_table(
    pairs: Sequence[tuple[Path, Path]], k: int, dataset_json: Path | None = None
) -> npt.NDArray[np.int64]:
    """For each pair, the pair indices of slices ``-k..k`` of the same case (2.5D input).

    Neighbours are found by stem ``<case_id>_<slice_index>`` (case ids from ``dataset.json`` when given, so
    case ids that contain ``_`` work). When slice ``i + d`` was not written (a case border, or a dropped empty
    slice), the nearest written slice between ``i`` and ``i + d`` is used, so at borders the edge slice
    repeats. A stem without a slice index is its own neighbour.

    Returns:
        (n_pairs, 2k + 1) int64 indices into ``pairs``; column k is the pair itself.
    """
    cases: list[str] = []
    if dataset_json is not None and dataset_json.is_file():
        try:
            cases = sorted(
                json.loads(dataset_json.read_text(encoding="utf-8")).get("cases", {}), key=len, reverse=True
            )
        except (OSError, ValueError) as e:
            raise DataError(
                f"cannot read dataset.json: {e}",
                path=dataset_json,
                hint="run segkit prepare again to rewrite it",
            ) from e
    keys = [case_of_stem(img.stem, cases) for img, _ in pairs]
    by_case: dict[str, dict[int, int]] = {}
    for i, (case, index) in enumerate(keys):
        if index is not None:
            by_case.setdefault(case, {})[index] = i
    table = np.empty((len(pairs), 2 * k + 1), dtype=np.int64)
    for i, key in enumerate(keys):
        for col, d in enumerate(range(-k, k + 1)):
            case, index = key
            if index is None or d == 0:
                table[i, col] = i
                continue
            slices = by_case[case]
            step = 1 if d > 0 else -1
            j = next(index + t for t in range(d, -step, -step) if index + t in slices)
            table[i, col] = slices[j]
    return table


def read_sample(
    pairs: Sequence[tuple[Path, Path]],
    index: int,
    cfg: Config,
    context: npt.NDArray[np.int64] | None = None,
    patch: np.random.Generator | bool | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    """Decode pair ``index``: image (with 2.5D neighbours as extra channels) and mask.

    Args:
        pairs, index: the pair list and which pair.
        cfg: the config.
        context: ``context_table`` for 2.5D input.
        patch: with ``data.patches``: a Generator cuts a random training patch (foreground-oversampled),
            ``True`` the centre patch; ``None``/``False`` keep the slice at its prepared size.

    Returns:
        image (H, W, C * (2k + 1)) float32 0..1, channels ordered slice -k .. +k; mask (H, W) uint8 ids.
    """
    rows = [index] if context is None else [int(j) for j in context[index]]
    images = [decode_image(pairs[j][0], cfg) for j in rows]
    shapes = {im.shape[:2] for im in images}
    if len(shapes) > 1:
        raise DataError(
            f"2.5D neighbours of one slice differ in size: {sorted(shapes)}",
            path=pairs[index][0],
            hint="prepare the case again (all slices of a case have one size), or set data.context_slices=0",
        )
    mask = decode_mask_file(pairs[index][1], cfg)
    if mask.shape[:2] != images[0].shape[:2]:
        (h, w), (mh, mw) = images[0].shape[:2], mask.shape[:2]
        raise DataError(
            f"image is {h}x{w} but its mask {pairs[index][1].name} is {mh}x{mw}",
            path=pairs[index][0],
            hint="image and mask of a slice must have the same size; re-export the pair",
        )
    image = fit_image(stack_context(images, cfg.data.channels), cfg)
    mask = fit_mask(mask, cfg)
    if cfg.data.patches and isinstance(patch, np.random.Generator):
        return random_patch(image, mask, cfg.data.image_size, patch, cfg.data.foreground_oversample)
    if cfg.data.patches and patch is True:
        image, cropped = center_patch(image, mask, cfg.data.image_size)
        assert cropped is not None
        return image, cropped
    return image, mask


# === tf.data ===

_TF_DATA_ERROR = re.compile(r"DataError: ([^\n]+)")


def unwrap_data_error(exc: BaseException) -> DataError | None:
    """The ``DataError`` raised while ``make_dataset`` decoded a sample, recovered from TensorFlow's wrapper.

    TensorFlow turns an exception inside the pipeline into a ``tf.errors.OpError`` that keeps only the text.
    Callers that iterate the dataset (``fit``, ``evaluate``) can map it back to a one-line user error::

        except tf.errors.OpError as e:
            raise (unwrap_data_error(e) or e) from e

    Returns:
        A ``DataError`` whose message is the original one-line error (file name, problem, hint), or None when
        ``exc`` does not come from a bad data file.
    """
    found = _TF_DATA_ERROR.findall(str(exc))
    return DataError(found[-1].strip()) if found else None


def patch_rng(cfg: Config, epoch: int, index: int) -> np.random.Generator:
    """The generator that places sample ``index``'s training patch in ``epoch`` (``data.patches``; the
    ``Stream.PATCHES`` stream of ``segkit.seeds``)."""
    return generator(cfg.seed, Stream.PATCHES, int(epoch), int(index))


@dataclass(frozen=True)
class Shard:
    """One input pipeline's part of a split under a multi-worker strategy.

    Attributes:
        index: this pipeline's number, 0 .. ``count`` - 1.
        count: number of input pipelines (workers).
        batch_size: samples per batch of this pipeline (the global batch over its replicas' share).
    """

    index: int
    count: int
    batch_size: int


def without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    """``ds`` with tf.data's autotuning off, for a pipeline whose iterator is dropped and built again every
    epoch (validation). Dropping an autotuned iterator that had lived through an epoch left the process idle
    for up to ~30 s in ``RootDataset::Iterator``'s destructor (TensorFlow 2.21; README "The idle wait at
    validation"); the parallel map and prefetch then keep tf.data's fixed defaults."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def _sample_order(
    n: int, shuffle: int | None, seed_offset: int, shard: Shard | None, endless: bool,
    per_epoch: Callable[[tf.data.Dataset], tf.data.Dataset],
) -> tf.data.Dataset:
    """``per_epoch`` (decode and batch) applied to each epoch's ``(epoch, sample index)`` pairs in reading
    order (``make_dataset`` documents the epochs). Batching inside each epoch keeps batches from crossing
    an epoch boundary: every epoch ends with its own smaller batch, endless or not, so a resumed run reads
    what an uninterrupted one read.

    Args:
        n: samples in the split.
        shuffle: the seed word of each epoch's stateless shuffle, or ``None`` for file order.
        seed_offset: the first epoch number.
        shard: keep part ``shard.index`` of ``shard.count`` interleaved parts of each epoch.
        endless: epochs ``seed_offset, seed_offset + 1, ...`` in one infinite stream; otherwise one epoch per
            iteration, numbered by a counter of iterations.
        per_epoch: what each epoch's pairs become (``make_dataset``: decoded samples in batches).
    """
    import tensorflow as tf

    def one_epoch(e: tf.Tensor) -> tf.data.Dataset:
        idx = tf.range(n, dtype=tf.int64)
        if shuffle is not None:
            seed = tf.stack([tf.constant(shuffle, tf.int64), e])
            idx = tf.random.experimental.stateless_shuffle(idx, seed=seed)
        if shard is not None:
            idx = idx[shard.index :: shard.count]
        return per_epoch(tf.data.Dataset.from_tensor_slices((tf.fill(tf.shape(idx), e), idx)))

    if endless:
        return tf.data.Dataset.counter(seed_offset).flat_map(one_epoch)
    epoch = tf.Variable(seed_offset, dtype=tf.int64, trainable=False, name="data_epoch")

    def next_epoch(_: tf.Tensor) -> tf.Tensor:
        return epoch.assign_add(1) - 1

    return tf.data.Dataset.range(1).map(next_epoch).flat_map(one_epoch)


def make_dataset(
    cfg: Config,
    split: str,
    training: bool,
    *,
    seed_offset: int = 0,
    shard: Shard | None = None,
    endless: bool = False,
) -> tf.data.Dataset:
    """The streaming ``tf.data`` pipeline of one split.

    Each full iteration over the dataset is one epoch; the epoch number starts at ``seed_offset`` (pass the
    initial epoch when resuming) and increases by one every time the dataset is iterated again. Shuffling
    and augmentation are seeded by ``(cfg.seed, epoch)`` and ``(cfg.seed, epoch, sample index)``, so a rerun
    or a resume repeats itself exactly, while every epoch and every sample gets fresh randomness.
    Validation (``training=False``) is neither shuffled nor augmented.

    With ``endless``, the dataset is infinite: epochs ``seed_offset``, ``seed_offset + 1``, ... in a row, and
    every new iteration starts again at ``seed_offset``. Training uses it: Keras 3 ``fit`` under a strategy
    reads one batch through an iterator of its own first (``_maybe_symbolic_build``), which would advance
    the iteration counter and shift every epoch's shuffle and augmentation by one.

    With ``shard``, each epoch's (shuffled) order is cut into ``count`` interleaved parts and this pipeline
    reads part ``index`` in batches of ``shard.batch_size``: the workers of a multi-worker run read disjoint
    samples, and since the augmentation is seeded by the sample index every worker's samples get their own
    random streams, the same ones whichever worker reads them.

    Args:
        cfg: the config (``data``, ``augment``, ``train.batch_size``, ``seed``).
        split: ``train``, ``valid`` or ``test`` (a folder under ``cfg.data.dir``, or a fold's cases:
            ``split_pairs``).
        training: shuffle and augment.
        seed_offset: epoch number of the first iteration.
        shard: read only this pipeline's part of each epoch (``Shard``); ``None`` reads all of it in
            batches of ``train.batch_size``.
        endless: an infinite stream of epochs from ``seed_offset`` (see above).

    Returns:
        A dataset of ``(images, onehot)``: images (B, H, W, C') float32 in 0..1 with
        C' = ``data.channels * (1 + 2 * data.context_slices)``; onehot (B, H, W, cfg.num_classes) float32.
        The last batch may be smaller.

    Raises:
        DataError: missing/empty split, unpaired files (at once); unreadable files or unknown mask colours
            (when the bad sample is decoded; the error names the file).
    """
    import tensorflow as tf

    pairs = split_pairs(cfg, split)
    n = len(pairs)
    k = cfg.data.context_slices
    context = context_table(pairs, k, Path(cfg.data.dir) / "dataset.json") if k > 0 else None
    h, w = cfg.data.image_size
    c = cfg.data.channels * (1 + 2 * k)
    augmenter = Augmenter(cfg) if (training and cfg.augment.enabled) else None
    shuffle = seed_word(cfg.seed, Stream.SHUFFLE) if training else None

    def decode_np(e: np.int64, i: np.int64) -> tuple[np.ndarray, np.ndarray]:
        patch = patch_rng(cfg, int(e), int(i)) if training else True
        try:
            image, mask = read_sample(pairs, int(i), cfg, context, patch)
        except SegkitError as err:  # TF keeps the text only: name the file in it (unwrap_data_error)
            raise DataError(err.one_line()) from None
        if augmenter is not None:
            image, mask = augmenter(image, mask, epoch=int(e), index=int(i))
        return image.astype(np.float32, copy=False), mask.astype(np.uint8, copy=False)

    def decode(e: tf.Tensor, i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image, mask = tf.numpy_function(decode_np, [e, i], [tf.float32, tf.uint8], stateful=False)
        image.set_shape((h, w, c))
        mask.set_shape((h, w))
        return image, tf.one_hot(tf.cast(mask, tf.int32), cfg.num_classes, dtype=tf.float32)

    batch = shard.batch_size if shard is not None else cfg.train.batch_size

    def decoded(pairs_ds: tf.data.Dataset) -> tf.data.Dataset:
        return pairs_ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(batch)

    log.debug("dataset %s: %d pairs, training=%s, epoch starts at %d", split, n, training, seed_offset)
    return _sample_order(n, shuffle, seed_offset, shard, endless, decoded).prefetch(tf.data.AUTOTUNE)
