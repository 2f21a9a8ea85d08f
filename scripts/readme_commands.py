"""Run the README's runnable command blocks verbatim, as a user would after the install step.

Every ```bash block of README.md is preceded by an HTML comment marking it ``<!-- runnable -->`` or
``<!-- illustrative: why -->``; an unmarked block is an error. Each runnable block runs with ``bash -e`` in a
fresh shell whose PATH starts with the virtual environment's ``bin/`` (what ``source .venv/bin/activate``
does), in a scratch folder holding a link to the checkout's ``configs/`` (so the commands see what they see at
the repository root, and write nothing into the checkout).

    python scripts/readme_commands.py            # run them; exit 1 on the first failure
    python scripts/readme_commands.py --list     # print the blocks and their marks
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"^(?P<mark><!--.*?-->)?\n?```bash\n(?P<body>.*?)^```", re.S | re.M)


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """``(mark, body)`` of every bash block: mark is ``runnable``, ``illustrative`` or ``""`` (unmarked)."""
    blocks = []
    for m in _BLOCK.finditer(text):
        mark = (m["mark"] or "").strip("<!- >")
        kind = "runnable" if mark == "runnable" else "illustrative" if mark.startswith("illustrative") else ""
        blocks.append((kind, m["body"]))
    return blocks


def run_block(body: str, cwd: Path, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``body`` with ``bash -e`` in ``cwd``, the interpreter's ``bin/`` first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return subprocess.run(["bash", "-e", "-c", body], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout_s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="print the blocks and their marks; run nothing")
    ap.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = ap.parse_args(argv)
    blocks = readme_blocks(args.readme.read_text(encoding="utf-8"))
    unmarked = [body.splitlines()[0] for kind, body in blocks if not kind]
    if unmarked:
        print(f"error: README bash blocks without a runnable/illustrative mark: {unmarked}", file=sys.stderr)
        return 1
    for kind, body in blocks:
        if args.list:
            print(f"[{kind}] {body.splitlines()[0]}")
    if args.list:
        return 0
    with tempfile.TemporaryDirectory(prefix="segkit-readme-") as tmp:
        os.symlink(REPO / "configs", Path(tmp) / "configs")
        for kind, body in blocks:
            if kind != "runnable":
                continue
            t0 = time.perf_counter()
            res = run_block(body, Path(tmp))
            first = body.splitlines()[0]
            print(f"{'ok' if res.returncode == 0 else 'FAILED'} ({time.perf_counter() - t0:.0f} s): {first}")
            if res.returncode != 0:
                print(res.stdout[-3000:], res.stderr[-3000:], sep="\n", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
