"""Post-processing, stage-neutral: the largest-component filter of the foreground and per class
(``components``) and the decision of TTA and that filter on validation volumes (``choice``), which ``train``
and ``cv`` make and ``evaluate`` and ``infer`` apply (``apply_postprocessing``).

It sits below those stages and above prediction (``segkit.predict``) and the metrics it scores with
(``segkit.metrics``). Importing this package does not import TensorFlow.
"""

from __future__ import annotations

from segkit.postprocess.choice import (
    POSTPROCESSING_FILE,
    Postprocessing,
    apply_postprocessing,
    choose_postprocessing,
    choose_postprocessing_pooled,
    decide,
    load_postprocessing,
)
from segkit.postprocess.components import (
    FOREGROUND,
    count_components,
    keep_largest,
    largest_component,
    largest_foreground,
    lcc_classes,
    lcc_foreground,
)

__all__ = ["FOREGROUND", "POSTPROCESSING_FILE", "Postprocessing", "apply_postprocessing",
           "choose_postprocessing", "choose_postprocessing_pooled", "count_components", "decide",
           "keep_largest", "largest_component", "largest_foreground", "lcc_classes", "lcc_foreground",
           "load_postprocessing"]
