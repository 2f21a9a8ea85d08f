"""Compare two scripts/protocol.sh output folders: history (timing columns dropped), evaluation CSVs,
postprocessing.json and every inferred label volume must be identical. Exit 1 on any difference.

Usage: python scripts/protocol_compare.py BEFORE_DIR AFTER_DIR
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def _timing(column: str) -> bool:
    """Wall-clock columns (history.csv's epoch_s and time_s, any *_seconds): excluded from the comparison."""
    return column.endswith("_s") or "second" in column or "time" in column


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return [{k: v for k, v in r.items() if not _timing(k)} for r in csv.DictReader(f)]


def main(before: Path, after: Path) -> int:
    diffs: list[str] = []
    checked = 0
    for a in sorted(before.rglob("*")):
        rel = a.relative_to(before)
        b = after / rel
        if a.suffix == ".csv" or a.name == "postprocessing.json" or a.name.endswith("_seg.nii.gz"):
            checked += 1
            if not b.exists():
                diffs.append(f"missing after: {rel}")
            elif a.suffix == ".csv" and _rows(a) != _rows(b):
                diffs.append(f"differs: {rel}")
            elif a.suffix == ".json" and json.loads(a.read_text()) != json.loads(b.read_text()):
                diffs.append(f"differs: {rel}")
            elif a.name.endswith(".nii.gz"):
                x, y = nib.load(a), nib.load(b)
                if not (np.array_equal(np.asarray(x.dataobj), np.asarray(y.dataobj))
                        and np.array_equal(x.affine, y.affine)):
                    diffs.append(f"differs: {rel}")
    print(f"{checked} files compared, {len(diffs)} differ")
    for d in diffs:
        print("  " + d)
    return 1 if diffs or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
