"""The records of common knobs that the model builders take (``segkit.config.LEVEL_KEYS`` and ``CONV_KEYS``).

``build_model`` fills each record from the ``model`` section and passes a builder only the records its
signature names: every builder takes ``levels``; those built from FlexUNet's two-convolution blocks also take
``convs``; a model with its own options takes ``options``, its ``segkit.config`` section. So a builder never
receives a key it would ignore (the contract test in tests/unit/test_models.py checks both directions).

Example:
    >>> build_flexunet((64, 64, 1), 4, Levels(base_filters=4, num_layers=3), Convs(base_kernels=3))
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Levels:
    """The resolution levels: ``model.base_filters``, ``num_layers``, ``max_filters``, ``norm``.

    Attributes:
        base_filters: channels at level 0 (level i: ``base_filters * 2**i``).
        num_layers: resolution levels (``num_layers - 1`` poolings).
        max_filters: optional cap on the channels of any level.
        norm: "none" | "batch" | "group" | "instance", after each convolution.
    """

    base_filters: int = 16
    num_layers: int = 5
    max_filters: int | None = None
    norm: str = "none"


@dataclass(frozen=True)
class Convs:
    """FlexUNet's per-level convolution rules: ``model.base_kernels``, ``dilation``, ``dropout_rate``.

    Attributes:
        base_kernels: kernel size at level 0 (level i: ``max(base_kernels - 2*i, 3)``).
        dilation: dilation at level 0 (level i: ``max(dilation - i, 1)``).
        dropout_rate: dropout per level step (level i: ``dropout_rate * i``).
        block: the order inside each two-convolution block (``segkit.models.blocks.conv_block``).
    """

    base_kernels: int = 3
    dilation: int = 1
    dropout_rate: float = 0.0
    block: str = "relu_norm"
