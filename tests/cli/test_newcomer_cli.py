"""The newcomer stumbles of issue 21 the CLI decides: help at 80 columns (6), `segkit models` (7), --set
blamed (8), a volume as CONFIG (10), --version."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from segkit import __version__
from segkit.cli.app import app

runner = CliRunner()
COMMANDS = (["prepare"], ["train"], ["cv"], ["evaluate"], ["infer"], ["augment-preview"], ["models"],
            ["config", "show"])


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_help_is_readable_at_80_columns(cmd: list[str]) -> None:
    r = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert "<bool>" not in r.output and "…" not in r.output and "[bold]" not in r.output
    for line in r.output.splitlines():  # only example command lines (kept whole to copy) may be longer
        assert len(line) <= 80 or line.lstrip().startswith("segkit "), line
    options = re.findall(r"--[a-z][a-z-]+", r.output)
    assert "--help" in options


def test_infer_help_names_every_option_in_full() -> None:
    r = runner.invoke(app, ["infer", "--help"], env={"COLUMNS": "80"})
    for name in ("--largest-component", "--all-components", "--save-probabilities", "--overwrite"):
        assert name in r.output
    assert "--set KEY=VALUE" in r.output


def test_cv_help_does_not_break_mid_sentence() -> None:
    r = runner.invoke(app, ["cv", "--help"], env={"COLUMNS": "80"})
    text = r.output.split("Arguments:")[0]
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()][1:]
    assert paragraphs and all(p.endswith((".", ":", ")")) for p in paragraphs), paragraphs


def test_version() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"segkit {__version__}"


def test_set_error_and_binary_config_are_one_line() -> None:
    r = runner.invoke(app, ["config", "show", "left-atrial", "--set", "prepare.size=96"])
    assert r.exit_code == 2
    assert r.output.startswith("error: --set: key 'prepare.size'") and "hint: a list" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_models_spells_names_as_configs_and_describes_in_full() -> None:
    r = runner.invoke(app, ["models", "attention_unet", "--size", "32"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "attention_unet" in r.output and "attention-unet" not in r.output
    assert "``" not in r.output
    row = next(line for line in r.output.splitlines() if line.startswith("│ attention_unet"))
    assert "with FlexUNet's level rules" in row  # the whole first paragraph, not its first source line
    r = runner.invoke(app, ["models", "flexunet", "--size", "32"], env={"COLUMNS": "200"})
    assert "TensorFlowFlexUNet" in r.output and "``" not in r.output


def test_models_plot_writes_the_summary_and_the_picture_or_says_why_not(tmp_path) -> None:  # noqa: ANN001
    import importlib.util
    import shutil

    png = tmp_path / "flexunet.png"
    r = runner.invoke(app, ["models", "flexunet", "--size", "32", "--set", "model.num_layers=3",
                            "--plot", str(png)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    summary = (tmp_path / "flexunet_summary.txt").read_text(encoding="utf-8")
    assert 'Model: "flexunet"' in summary and "head_softmax" in summary and "Total params" in summary
    if importlib.util.find_spec("pydot") and shutil.which("dot"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert not png.exists()
        line = next(x for x in r.output.splitlines() if "not drawn" in x)
        assert "pydot" in line and "hint: pip install pydot" in line
    r = runner.invoke(app, ["models", "--plot", str(png)])
    assert r.exit_code == 2 and "--plot: --plot draws one model" in r.output
