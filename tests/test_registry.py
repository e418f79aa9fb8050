"""A strategy is one module and its registration: a toy strategy defined here (spec, process,
closed form, description) runs through the CLI, its closed form agrees with its simulation, and
it appears in the scenario reference; a strategy without a closed form fails loudly."""

from __future__ import annotations

import json
from typing import ClassVar, Literal

import pytest
import yaml
from helpers import constant_scenario
from pydantic import Field
from typer.testing import CliRunner

from simulator import analytic, reference, strategies
from simulator import scenario as sc
from simulator.closed_form import Closed
from simulator.records import StepRecord
from simulator.strategies import Placement, StrategySpec

runner = CliRunner()


class Pairs(StrategySpec):
    """Toy: the target makes two tokens per forward (a query of 2), always right."""

    rules: ClassVar[str] = "nothing beyond its fields."
    kind: Literal["toy_pairs"] = Field(description="Strategy kind: two tokens per target forward.")
    target: Placement = Field(description="Where the target model runs.")

    def build(self, world):
        return PairsProcess(self, world)

    def estimate(self, f) -> Closed:
        fwd = f.forward(self.target)
        step = fwd.forward_s(1, 2, f.ctx) + fwd.step_s
        ttft = f.add(self.target.device, fwd.prefill_s(1, f.prompt, 0))
        f.add(self.target.device, step * (f.output - 1) / 2)
        return Closed(ttft, step / 2, {"tokens_per_step": 2.0})

    def describe(self) -> str:
        return f"toy pairs: {self.target.model} on {self.target.device}"


class PairsProcess:
    def __init__(self, spec, world):
        dev = world.devices[spec.target.device]
        self.env, self.steps, self.server, self.fwd = world.env, world.steps, dev.server, dev.forward[spec.target.model]

    def serve(self, r):
        yield from self.server.serve(self.fwd.prefill_s(1, r.prompt_tokens, 0), "prefill")
        r.first_token_s = self.env.now
        done, context = 1, r.prompt_tokens
        while done < r.output_tokens:
            start = self.env.now
            yield from self.server.serve(self.fwd.forward_s(1, 2, context) + self.fwd.step_s, "decode")
            c = min(2, r.output_tokens - done)
            done, context, r.steps = done + c, context + c, r.steps + 1
            self.steps.append(StepRecord(r.id, start, self.env.now, 0, 0, c))
        r.finish_s = self.env.now


class NoClosedForm(StrategySpec):
    kind: Literal["toy_opaque"] = Field(description="Strategy kind: a process without a closed form.")
    target: Placement = Field(description="Where the target model runs.")


@pytest.fixture
def toys():
    strategies.register(Pairs)
    strategies.register(NoClosedForm)
    yield
    strategies.unregister("toy_pairs")
    strategies.unregister("toy_opaque")


def _toy(kind: str) -> dict:
    data = constant_scenario(target_ms=10.0, output=101, requests=3)
    data["strategy"] = {"kind": kind, "target": {"model": "target", "device": "gpu"}}
    return data


def test_a_registered_strategy_runs_through_the_cli_and_matches_its_closed_form(toys, tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(_toy("toy_pairs")))
    result = runner.invoke(strategies_app(), ["run", str(path), "--json"])
    assert result.exit_code == 0, result.output
    rep = json.loads(result.stdout)
    assert rep["strategy"] == "toy_pairs" and rep["tokens_per_step"] == 2.0
    # constant profile: 50 forwards of 10 ms after a 10 ms prefill, each request in turn
    assert rep["simulated_s"] == pytest.approx(3 * 0.51)
    assert rep["throughput_tokens_per_s"] == pytest.approx(rep["estimate"]["throughput_tokens_per_s"])
    assert "toy pairs: target on gpu" in runner.invoke(strategies_app(), ["validate", str(path)]).stdout
    assert "\n## Pairs\n" in reference.render()


def test_the_registry_is_the_schema(toys):
    assert set(strategies.SPECS) >= {"speculative", "batched", "toy_pairs"}
    assert isinstance(sc.parse(_toy("toy_pairs"), "test").strategy, Pairs)
    strategies.unregister("toy_pairs")
    with pytest.raises(Exception, match="toy_pairs"):
        sc.parse(_toy("toy_pairs"), "test")
    strategies.register(Pairs)


def test_a_strategy_without_a_closed_form_raises_rather_than_passing_for_autoregressive(toys):
    spec = sc.parse(_toy("toy_opaque"), "test")
    with pytest.raises(NotImplementedError, match="toy_opaque"):
        analytic.estimate(spec)


def test_every_shipped_strategy_has_a_process_and_a_closed_form():
    for kind, spec in strategies.SPECS.items():
        assert strategies.kind_of(spec) == kind
        assert spec.build is not StrategySpec.build and spec.estimate is not StrategySpec.estimate, kind


def strategies_app():
    from simulator.cli import app
    return app
