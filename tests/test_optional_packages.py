"""A command that needs an optional package says which extra installs it, in one line, before doing any work."""

from __future__ import annotations

import importlib.util

import pytest

from benchmarks import benchmark
from trl_policysplit.tools import optional


@pytest.fixture
def without_matplotlib(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else find_spec(name, *a)
    )


@pytest.mark.parametrize("command", [["testbed", "--quick"], ["learning", "--quick"]])
def test_a_study_without_matplotlib_stops_at_once_naming_the_extra(without_matplotlib, capsys, command) -> None:
    assert benchmark.main(command) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    assert "needs matplotlib, which is not installed: pip install 'trl-policysplit[demo]'" in error


def test_plot_script_without_matplotlib_is_one_line(without_matplotlib, tmp_path, capsys, monkeypatch) -> None:
    import runpy
    from pathlib import Path

    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    scripts = Path(__file__).resolve().parent.parent / "scripts"
    monkeypatch.syspath_prepend(str(scripts))  # as `python scripts/plot.py` has it
    script = runpy.run_path(str(scripts / "plot.py"))
    assert script["main"]([str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("plot.py: error: plotting a run needs matplotlib") and "\n" not in error


def test_every_named_extra_is_declared() -> None:
    import configparser
    from pathlib import Path

    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    extras = config["options.extras_require"]
    for module, (distribution, extra) in optional.OPTIONAL.items():
        assert distribution in extras[extra], (module, extra)
