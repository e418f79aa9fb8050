"""Per-depth acceptance of a token tree against a Monte-Carlo of its per-rank model.

The model (simulator/strategies/tree.py): at depth i the target's token has rank R in the draft's
order with P(R = j) = alpha_i r_i^(j - 1), r_i = min(d, 1 - alpha_i), and whatever those shares
leave (1 - sum) is a token outside every rank; the depth continues when R <= b_i. The Monte-Carlo
below draws R from that table, rank by rank, and knows nothing of the closed form's geometric sum.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import constant_scenario, run
from hypothesis import given, settings
from hypothesis import strategies as st
from test_tree_strategies import as_tree
from typer.testing import CliRunner

from simulator import acceptance, analytic
from simulator import scenario as sc
from simulator.cli import app
from simulator.strategies.tree import continue_probabilities, mean_tokens_per_step, tree_levels, tree_survival

Z = 4.0  # half-width of every interval below, in standard errors (two-sided, about 6e-5 for a normal mean)
SEEDS = (11, 12, 13, 14)
ROOT = Path(__file__).resolve().parent.parent


def rank_table(alpha: float, decay: float, ranks: int) -> np.ndarray:
    """P(R = 1..ranks) from the model's definition, then P(R > ranks or no rank) last."""
    r = min(decay, 1.0 - alpha)
    shares = alpha * r ** np.arange(ranks)
    return np.append(shares, max(0.0, 1.0 - shares.sum()))


def monte_carlo_tokens(alphas, branching, decay: float, steps: int, rng: np.random.Generator) -> np.ndarray:
    """Tokens per step of `steps` full trees: at each depth draw the target's rank, stop at the first
    depth whose rank is not among its b_i candidates; a step commits the accepted depths + 1."""
    alive = np.ones(steps, dtype=bool)
    accepted = np.zeros(steps, dtype=int)
    for a, b in zip(alphas, branching):
        table = rank_table(a, decay, b)  # ranks above b_i and misses fall in the last cell alike
        rank = rng.choice(b + 1, size=steps, p=table) + 1  # 1..b_i, or b_i + 1: not a candidate
        alive &= rank <= b
        accepted += alive
    return accepted + 1


def mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))


CASES = [  # (acceptance, branching, decay): capped ratio, uncapped ratio, per-position depths
    ({"kind": "iid", "alpha": 0.8}, [3, 2, 1], 0.3),
    ({"kind": "iid", "alpha": 0.5}, [2, 2, 2], 0.3),
    ({"kind": "per_position", "alphas": [0.9, 0.6, 0.3]}, [4, 2, 3], 0.6),
]


def depth_alphas(spec: dict, depth: int) -> list[float]:
    if spec["kind"] == "iid":
        return [spec["alpha"]] * depth
    return [spec["alphas"][min(i, len(spec["alphas"]) - 1)] for i in range(depth)]


@pytest.mark.parametrize("acc,branching,decay", CASES)
def test_simulated_and_closed_form_tokens_per_step_match_monte_carlo(acc, branching, decay):
    """Simulated full steps over several seeds, pooled, against a Monte-Carlo of the rank model over
    several seeds: the difference of the means lies within Z combined standard errors, and the closed
    form (simulator and estimate) within Z Monte-Carlo standard errors."""
    alphas = depth_alphas(acc, len(branching))
    mc = np.concatenate([monte_carlo_tokens(alphas, branching, decay, 50_000, np.random.default_rng(s))
                         for s in SEEDS])
    mc_mean, mc_se = mean_se(mc)
    nodes, simulated = sum(tree_levels(branching)[1:]), []
    for seed in SEEDS:
        data = as_tree(constant_scenario(output=12001, acceptance=acc), branching, decay)
        data["seed"] = seed
        _, result = run(data)
        simulated += [s.accepted + 1 for s in result.steps if s.drafted == nodes]
    sim_mean, sim_se = mean_se(np.asarray(simulated, dtype=float))
    exact = analytic.estimate(sc.parse(data, "test"))["tokens_per_step"]
    print(f"{acc} {branching} d={decay}: Monte-Carlo {mc_mean:.4f} +- {Z * mc_se:.4f} ({mc.size} steps), "
          f"simulated {sim_mean:.4f} +- {Z * sim_se:.4f} ({len(simulated)} full steps), closed form {exact:.4f}")
    assert abs(sim_mean - mc_mean) < Z * math.hypot(sim_se, mc_se)
    assert abs(exact - mc_mean) < Z * mc_se


def test_closed_form_per_depth_matches_the_rank_table():
    """p_i = P(R <= b_i) summed from the table itself, for each depth (no sampling: exact sums)."""
    for alpha in (0.0, 0.2, 0.5, 0.8, 0.95, 1.0):
        for decay in (0.05, 0.3, 0.5, 1.0):
            for b in (1, 2, 3, 7):
                want = rank_table(alpha, decay, b)[:b].sum()
                assert continue_probabilities([alpha], [b], decay)[0] == pytest.approx(want, abs=1e-12)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(alpha=st.floats(0.0, 1.0), decay=st.floats(1e-6, 1.0), b=st.integers(1, 64))
def test_depth_acceptance_is_a_probability_that_grows_with_width(alpha, decay, b):
    p = continue_probabilities([alpha] * 2, [b, b + 1], decay)
    assert 0.0 <= p[0] <= p[1] <= 1.0
    assert p[0] >= alpha - 1e-15


@settings(max_examples=200, deadline=None, derandomize=True)
@given(alpha=st.floats(0.0, 0.95), decay=st.floats(1e-6, 1.0), b=st.integers(1, 8))
def test_no_depth_is_accepted_surely_below_alpha_one(alpha, decay, b):
    """1 - p = (1 - c) + c r^b > 0 for alpha < 1 (r > 0); in floats too while r^b >= 0.05^8."""
    assert continue_probabilities([alpha], [b], decay)[0] < 1.0


@settings(max_examples=100, deadline=None, derandomize=True)
@given(alphas=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6), decay=st.floats(1e-6, 1.0))
def test_width_one_is_the_chain_exactly(alphas, decay):
    """b_i = 1 gives alpha_i bit for bit, with or without the chain shortcut in tree_acceptance."""
    g = len(alphas)
    acc = acceptance.build(sc.PerPosition(kind="per_position", alphas=alphas), np.random.default_rng(0))
    assert continue_probabilities(alphas, [1] * g, decay).tolist() == list(alphas)
    assert tree_survival(acc.survival(g), [1] * g, decay).tolist() == acc.survival(g).tolist()
    assert mean_tokens_per_step(acc, [1] * g, decay) == acc.mean_accepted(g) + 1.0


def test_the_issues_case_no_longer_accepts_every_step(tmp_path):
    """`specsim run scenarios/tree-h100.yaml --set 'strategy.branching=[2]' --set acceptance.alpha=0.8`
    (d 0.3): p = 0.8 + 0.8 x 0.2 = 0.96, so about 4% of full steps reject their level (the old rule
    gave p = 1: every step accepted, 1.99 tokens per step)."""
    path = ROOT / "scenarios" / "tree-h100.yaml"
    out = CliRunner().invoke(app, ["run", str(path), "--set", "strategy.branching=[2]", "--set",
                                   "acceptance.alpha=0.8", "--json", "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    rep = json.loads(out.stdout)
    with open(tmp_path / "steps.csv", newline="") as f:
        full = np.array([int(r["accepted"]) for r in csv.DictReader(f) if r["drafted"] == "2"], dtype=float)
    mean, se = mean_se(full)
    print(f"branching [2], alpha 0.8: {rep['tokens_per_step']:.4f} tokens per step, full steps accept "
          f"{mean:.4f} +- {Z * se:.4f} ({full.size}), estimate {rep['estimate']['tokens_per_step']:.4f}")
    assert full.min() == 0 and mean < 1.0
    assert abs(mean - 0.96) < Z * se
    assert rep["estimate"]["tokens_per_step"] == pytest.approx(1.96)
