"""Post-processing, stage-neutral: the largest-component filter (``components``) and the decision of TTA and
that filter on validation volumes (``choice``), which ``train`` and ``cv`` make and ``evaluate`` and ``infer``
apply (``apply_postprocessing``).

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
from segkit.postprocess.components import count_components, keep_largest, largest_component, lcc_classes

__all__ = ["POSTPROCESSING_FILE", "Postprocessing", "apply_postprocessing", "choose_postprocessing",
           "choose_postprocessing_pooled", "count_components", "decide", "keep_largest", "largest_component",
           "lcc_classes", "load_postprocessing"]
