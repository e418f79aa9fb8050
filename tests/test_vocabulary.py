"""A draft of another tokenizer than its target's: refused without a vocabulary bridge; with one,
its costs enter every step (host time per drafted token) and its loss every acceptance draw."""

from __future__ import annotations

import copy

import pytest
import yaml
from helpers import constant_scenario, run, stderr_of
from typer.testing import CliRunner

from simulator import scenario as sc
from simulator.cli import app


def mismatched(**bridge):
    data = constant_scenario(draft_ms=1.0, target_ms=10.0, gamma=4, alpha=0.8, output=200, requests=3)
    data["models"]["draft"]["vocab"] = 128256  # a Llama-3-sized vocabulary drafting for a 32k target
    if bridge:
        data["vocabulary"] = {"method": "slem", **bridge}
    return data


def _cli_error(data, tmp_path) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    err = stderr_of(res).strip()
    assert res.exit_code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    return err


def test_different_tokenizers_need_a_bridge(tmp_path):
    err = _cli_error(mismatched(), tmp_path)
    assert "vocabulary" in err and "vocab-128256" in err and "vocab-32000" in err


def test_a_bridge_between_one_tokenizer_is_refused(tmp_path):
    data = constant_scenario()
    data["vocabulary"] = {"method": "tli"}
    assert "these share one" in _cli_error(data, tmp_path)


def test_named_tokenizers_decide_over_vocabulary_sizes(tmp_path):
    data = constant_scenario()
    data["models"]["draft"]["tokenizer"] = "gpt2"
    assert "gpt2" in _cli_error(data, tmp_path)
    data = mismatched()
    data["models"]["draft"]["tokenizer"] = data["models"]["target"]["tokenizer"] = "llama3"
    sc.parse(data, "test")  # one named tokenizer: no bridge needed


def test_retokenizing_costs_its_time_per_drafted_token():
    # every draft forward drafts one token per sequence: each step of g drafts pays g x 0.5 ms more
    plain, with_plain = run(mismatched(retokenize_ms_per_token=0.0))
    slow, with_slow = run(mismatched(retokenize_ms_per_token=0.5))
    assert [s.accepted for s in with_plain.steps] == [s.accepted for s in with_slow.steps]  # same draws
    drafted = sum(s.drafted for s in with_plain.steps) + 3  # and each request's draft prefill
    assert slow["simulated_s"] - plain["simulated_s"] == pytest.approx(drafted * 0.0005)


def test_the_acceptance_factor_thins_every_position():
    # survival alpha^j x f^j = (alpha f)^j: the same draws as iid alpha x f from the same stream
    thinned, a = run(mismatched(acceptance_factor=0.5))
    same = copy.deepcopy(mismatched(acceptance_factor=1.0))
    same["acceptance"]["alpha"] = 0.4
    direct, b = run(same)
    assert [s.accepted for s in a.steps] == [s.accepted for s in b.steps]
    assert thinned["tokens_per_step"] == direct["tokens_per_step"]


def test_a_replayed_trace_cannot_be_thinned(tmp_path):
    data = mismatched(acceptance_factor=0.5)
    data["acceptance"] = {"kind": "trace", "counts": [1, 2, 3]}
    assert "acceptance_factor" in _cli_error(data, tmp_path)
