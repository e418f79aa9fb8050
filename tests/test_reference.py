"""The scenario reference is generated from the models, documents every field, and cannot drift.

docs/scenario-reference.md must be exactly what `specsim schema` prints; every field of every
model reachable from Scenario (each union member included) and from ProfileMeta must carry a
description; every model-level rule must be listed; `schema --json` must be JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

from pydantic import BaseModel
from typer.testing import CliRunner

from simulator import profiles, reference, strategies
from simulator import scenario as sc
from simulator.cli import app

DOC = Path(__file__).resolve().parent.parent / "docs" / "scenario-reference.md"
runner = CliRunner()


def test_committed_reference_matches_the_command():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    assert DOC.read_text() == result.stdout, (
        "docs/scenario-reference.md is stale: run `specsim schema > docs/scenario-reference.md`")


def test_every_field_of_every_model_has_a_description():
    missing = [f"{model.__name__}.{name}" for model, _ in reference.models()
               for name, field in model.model_fields.items() if not (field.description or "").strip()]
    assert missing == []


def test_the_walk_reaches_every_union_member():
    found = {model for model, _ in reference.models()}
    unions = (sc.Strategy, sc.Acceptance, sc.Arrival, sc.Length, sc.InlineProfile)
    members = {m for u in unions for m in _models_in(u)}
    assert {strategies.Autoregressive, strategies.Speculative, sc.Iid, sc.ClosedLoop, sc.Uniform, profiles.ConstantSpec,
            profiles.RooflineSpec} <= members
    assert members | {profiles.ProfileMeta} <= found
    text = reference.render()
    for model in found:
        assert f"\n## {model.__name__}\n" in text


def _models_in(tp) -> set:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {tp}
    return {m for arg in get_args(tp) for m in _models_in(arg)}


def test_every_model_validator_is_listed():
    """Each model with a validator has its rules listed, and every listed rule names a model the
    reference shows (a strategy may list rules that its `check` enforces against the scenario)."""
    models = {model.__name__: model for model, _ in reference.models()}
    with_validators = {name for name, model in models.items() if model.__pydantic_decorators__.model_validators}
    assert with_validators <= set(reference.CHECKS) <= set(models)


def test_schema_json_parses():
    result = runner.invoke(app, ["schema", "--json"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema == sc.Scenario.model_json_schema()
    assert {"strategy", "workload", "links"} <= set(schema["properties"])


def test_version_and_python_dash_m():
    import subprocess
    import sys

    from simulator import __version__

    assert runner.invoke(app, ["--version"]).stdout.strip() == f"specsim {__version__}"
    out = subprocess.run([sys.executable, "-m", "simulator", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"specsim {__version__}"


def test_profiles_and_models_list_every_name_whole_and_as_json():
    """The names are what one types: never cut, however narrow the output; --json gives the same list."""
    import json

    from simulator import catalog, profiles

    table = runner.invoke(app, ["profiles"]).stdout
    assert all(name in table for name in profiles.available())
    listed = json.loads(runner.invoke(app, ["profiles", "--json"]).stdout)
    assert set(listed) == set(profiles.available())
    assert listed["h200-torch-graph-bf16"]["execution"] == "graph"
    assert set(json.loads(runner.invoke(app, ["models", "--json"]).stdout)) == set(catalog.PRESETS)


def test_progress_off_a_terminal_is_a_plain_line_now_and_then(capsys):
    from simulator.cli import _lines

    quiet = _lines("runs", 5)  # every 10 s: a short run prints nothing
    quiet(1)
    assert capsys.readouterr().err == ""
    chatty = _lines("runs", 5, every_s=0.0)
    chatty(2)
    assert capsys.readouterr().err.startswith("runs: 2/5 after ")
