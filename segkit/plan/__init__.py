"""``segkit plan``: a dataset fingerprint and a self-configured, commented config (nnU-Net's planning, for
segkit's 2D CPU-bound training).

``layout.py`` finds the ``segkit prepare`` source that reads a folder (the pairing stays ``prepare``'s),
``fingerprint.py`` measures every labelled case and summarises them, ``rules.py`` turns the fingerprint and a
budget into every config choice with its reason, ``render.py`` writes the commented YAML, and ``run.py``
(``run_plan``) does it all and writes ``fingerprint.json`` and ``config.yaml``.
"""

from __future__ import annotations

from segkit.plan.rules import PlanOptions
from segkit.plan.run import PlanResult, dataset_name, run_plan

__all__ = ["PlanOptions", "PlanResult", "dataset_name", "run_plan"]
