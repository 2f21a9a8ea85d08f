"""Training data: file pairing, decoding, augmentation and the ``tf.data`` pipeline.

Importing this package does not import TensorFlow; ``make_dataset`` imports it when called.
"""

from __future__ import annotations

from segkit.data.pipeline import (
    case_of_stem,
    case_splits,
    dataset_size,
    list_pairs,
    make_dataset,
    read_image,
    read_mask,
    read_sample,
    split_pairs,
    unwrap_data_error,
)

__all__ = [
    "case_of_stem",
    "case_splits",
    "dataset_size",
    "list_pairs",
    "make_dataset",
    "read_image",
    "read_mask",
    "read_sample",
    "split_pairs",
    "unwrap_data_error",
]
