"""Deployment bundles: ``export_run`` writes a run folder's (or a cross-validation folder's) model as ONNX,
LiteRT or a TensorFlow SavedModel with its pre- and post-processing and a ``bundle.json``
(``segkit.predict.bundle`` reads and runs them). ``segkit.export.graph`` gives the graph that is converted,
``segkit.export.quantize`` the int8 options."""

from __future__ import annotations

from segkit.export.bundle import REFUSED, ExportOptions, ExportResult, export_run, refusal

__all__ = ["REFUSED", "ExportOptions", "ExportResult", "export_run", "refusal"]
