"""README command blocks: each is marked runnable or illustrative, and every runnable one runs verbatim
(``scripts/readme_commands.py``, as CI runs it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("readme_commands", REPO / "scripts" / "readme_commands.py")
assert _spec is not None and _spec.loader is not None
readme_commands = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_commands)


def test_every_bash_block_is_marked() -> None:
    blocks = readme_commands.readme_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    assert blocks and all(kind in ("runnable", "illustrative") for kind, _ in blocks)
    runnable = [body for kind, body in blocks if kind == "runnable"]
    assert any("segkit prepare nifti" in b and "--video" in b for b in runnable)  # the five-command start


def test_an_unmarked_block_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n```bash\necho hi\n```\n", encoding="utf-8")
    assert readme_commands.main(["--readme", str(readme)]) == 1
    assert "without a runnable/illustrative mark" in capsys.readouterr().err


@pytest.mark.slow
def test_runnable_blocks_run_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    assert readme_commands.main([]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert out.count("ok (") == 2 and "FAILED" not in out
