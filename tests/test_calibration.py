"""The torch runner's correctness, and a small real calibration on this machine's CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from simulator.calibration import compare, fit, runner  # noqa: E402
from simulator.calibration.llama import Llama  # noqa: E402
from simulator.calibration.measure import measure_profile, measure_runs  # noqa: E402
from simulator.catalog import PRESETS  # noqa: E402

SMALL = PRESETS["llama-68m"]


def models(noise=6.5):
    target = Llama(PRESETS["llama-160m"], max_batch=1, max_len=256, seed=1, noise=noise)
    draft = Llama(SMALL, max_batch=1, max_len=256, seed=2, noise=noise)
    return target, draft


def prompt(n=24, seed=0):
    return torch.randint(0, 32000, (1, n), generator=torch.Generator().manual_seed(seed))


def test_kv_cache_matches_a_full_forward_and_rolls_back():
    m = Llama(SMALL, max_batch=2, max_len=64, seed=3)
    x = torch.randint(0, 32000, (2, 20), generator=torch.Generator().manual_seed(1))
    full = m(x, 0)
    m(x[:, :12], 0)
    assert torch.allclose(m(x[:, 12:16], 12), full[:, 12:16], atol=1e-4)
    m(torch.randint(0, 32000, (2, 4)), 16)  # tokens that will be rejected
    assert torch.allclose(m(x[:, 16:20], 16), full[:, 16:20], atol=1e-4)  # rollback = overwrite


@pytest.mark.parametrize("gamma", [1, 3, 6])
def test_greedy_speculative_output_is_the_targets_greedy_output(gamma):
    target, draft = models()
    p = prompt()
    reference, _ = runner.autoregressive(target, p, 40)
    same_draft, acc_self, _ = runner.speculative(target, target, p, 40, gamma)
    other_draft, acc, _ = runner.speculative(target, draft, p, 40, gamma)
    assert same_draft == reference and other_draft == reference
    assert 0 < np.mean(acc) < gamma  # the draft agrees sometimes, not always
    assert np.mean(acc_self) > 0.8 * gamma * (1 - 1 / len(acc_self))  # draft = target: nearly all accepted


def test_oracle_mode_accepts_at_rate_alpha_and_makes_every_token():
    target, draft = models()
    out, acc, _ = runner.speculative(target, draft, prompt(), 120, 4, mode="oracle", alpha=0.7,
                                     rng=np.random.default_rng(5))
    assert len(out) == 120 and all(0 <= k <= 4 for k in acc)
    assert sum(k + 1 for k in acc) >= 119  # the first token comes from the prefill; the last step may be cut


@pytest.fixture(scope="module")
def cpu_calibration(tmp_path_factory):
    """A tiny measured profile of this machine and a few real runs on it."""
    root = tmp_path_factory.mktemp("cal")
    grid = {"batches": [1], "queries": [1, 2, 3, 4, 24], "contexts": [0, 32, 64]}
    measure_profile(["llama-68m", "llama-160m"], root / "cpu-ci", device="cpu", grid=grid, min_samples=3,
                    min_s=0.02, log=lambda *_: None)
    base = {"target": "llama-160m", "prompt_tokens": 24, "output_tokens": 24, "target_profile": str(root / "cpu-ci"),
            "draft_profile": str(root / "cpu-ci")}
    configs = [base | {"mode": "autoregressive", "gamma": 0}]
    configs += [base | {"draft": "llama-68m", "gamma": g, "mode": m, "alpha": a}
                for g in (1, 2, 3) for m, a in (("oracle", 0.6), ("greedy", None))]
    measure_runs(configs, root / "runs.jsonl", device="cpu", repeats=2, log=lambda *_: None)
    return root


def test_measurement_file_round_trips(cpu_calibration):
    runs = compare.load_runs([cpu_calibration / "runs.jsonl"])
    assert len(runs) == 14
    first = json.loads((cpu_calibration / "runs.jsonl").read_text().splitlines()[0])
    assert first["mode"] == "autoregressive" and first["tokens_per_s"] > 0


def test_calibrated_prediction_of_held_out_runs_is_close(cpu_calibration):
    """On this machine: after fitting the overheads, predicted tokens/s of held-out configurations
    lies within 25% of the measurement (median), and the fit does not make it worse."""
    runs = compare.load_runs([cpu_calibration / "runs.jsonl"])
    profile = str(cpu_calibration / "cpu-ci")
    result = fit.fit(runs, profile)
    before = compare.summarize(result.before["held_out"])
    after = compare.summarize(result.after["held_out"])
    assert after["median_abs_error"] <= 0.25
    assert after["median_abs_error"] <= before["median_abs_error"] + 0.02
