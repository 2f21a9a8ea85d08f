"""`segkit prepare`: 3D volumes (NIfTI/NRRD) -> case-split 2D PNG datasets.

Per volume (``slicing.py``): load, check image/label geometry, map label values to class ids, reorient to RAS
canonical, normalise intensity per volume (``normalize.py``), slice along ``prepare.axis``, turn each slice to
the display convention (``slicing.to_display``), resize (labels nearest only) and write PNG pairs.
``phantom.py`` makes the synthetic CT volumes of ``make demo`` and the tests.

Per dataset: ``run.py`` orchestrates (``run_prepare``, its options in ``PrepareOptions``); ``sources.py``
finds the cases of each raw layout (``SourceOptions``), ``split.py`` splits them by patient, ``cases.py``
prepares or verifies one case in a worker process, ``slices2d.py`` reads the 2D-slice sources, ``outdir.py``
guards the output folder, ``manifest.py`` writes ``dataset.json`` and ``report.py`` the ``PrepareReport`` and
``summary.png``.
"""

from __future__ import annotations

from segkit.prepare.report import PrepareReport
from segkit.prepare.run import PrepareOptions, run_prepare
from segkit.prepare.sources import SourceOptions
from segkit.prepare.split import load_user_split, split_cases

__all__ = [
    "PrepareOptions",
    "PrepareReport",
    "SourceOptions",
    "load_user_split",
    "run_prepare",
    "split_cases",
]
