"""What the command line shows about itself: help with flags as flags, and shell completion."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from simulator.cli import app

COMMANDS = [[], ["run"], ["estimate"], ["validate"], ["models"], ["profiles"], ["schema"], ["sweep"], ["plan"],
            ["profile"], ["report"], ["calibrate"], ["calibrate", "run"], ["calibrate", "compare"], ["calibrate", "fit"]]


def test_every_command_is_listed_here():
    group = typer.main.get_command(app)
    assert {c for (c,) in (x for x in COMMANDS if len(x) == 1)} == set(group.commands)


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "specsim")
def test_help_shows_flags_as_flags_and_names_in_full(cmd):
    result = CliRunner().invoke(app, [*cmd, "--help"], terminal_width=60)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output and "--help" in result.output
    assert "…" not in result.output  # nothing cut to fit the width


def test_completion_script_for_bash(monkeypatch):
    # typer reads the shell from the option's value only when told not to detect it from the
    # parent processes (which fails under some test runners' worker processes)
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    result = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="specsim")
    assert result.exit_code == 0 and "complete -o default -F _specsim_completion specsim" in result.output
