"""`segkit prepare`: 3D volumes (NIfTI/NRRD) -> case-split 2D PNG datasets.

Per volume (``slicing.py``): load, check image/label geometry, map label values to class ids, reorient to RAS
canonical, normalise intensity per volume (``normalize.py``), slice along ``prepare.axis``, turn each slice to
the display convention (``slicing.to_display``), resize (labels nearest only) and write PNG pairs.
``phantom.py`` makes the synthetic CT volumes of ``make demo`` and the tests.
"""

from __future__ import annotations

from segkit.prepare.run import PrepareReport, run_prepare
from segkit.prepare.split import load_user_split, split_cases

__all__ = ["PrepareReport", "load_user_split", "run_prepare", "split_cases"]
