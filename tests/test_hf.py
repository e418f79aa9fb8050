"""Measuring Hugging Face transformers' assisted generation: the models, the acceptance oracle
and the call shapes, on this machine's CPU with tiny lengths."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

from simulator.calibration import hf  # noqa: E402
from simulator.catalog import PRESETS  # noqa: E402

PROMPT, NEW, GAMMA = 16, 24, 4


@pytest.fixture(scope="module")
def models():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is faster, and fair on a shared host
    yield hf.build("llama-68m", seed=1), hf.build("llama-68m", seed=2)
    torch.set_num_threads(threads)


def prompt(seed=0):
    return torch.randint(0, 32000, (1, PROMPT), generator=torch.Generator().manual_seed(seed))


def engine_accepted(r):
    """Accepted counts read from the target's cache lengths alone: the target cache holds all
    but the last token before each verification."""
    lengths = [PROMPT] + [context + 1 for _, _, context in r["target_calls"][1:]] + [PROMPT + r["tokens"]]
    return [b - a - 1 for a, b in zip(lengths, lengths[1:])]


def check_consistent(r):
    assert r["tokens"] == NEW and r["all_target_token"]
    assert sum(k + 1 for k in r["accepted"]) == r["tokens"]
    assert r["accepted"] == engine_accepted(r)
    queries = [q for _, q, _ in r["target_calls"]]
    assert queries == [PROMPT + r["drafted"][0]] + [k + 1 for k in r["drafted"][1:]]
    assert len(r["draft_calls"]) == sum(r["drafted"])
    assert len(r["step_end_s"]) == len(r["accepted"])
    assert r["step_end_s"] == sorted(r["step_end_s"]) and 0 < r["step_end_s"][-1] <= r["seconds"]


def test_build_has_the_preset_sizes(models):
    target, _ = models
    assert sum(p.numel() for p in target.parameters()) == PRESETS["llama-68m"].params()
    tied = hf.build("llama3.2-1b", device="meta")  # tied embeddings, grouped-query attention
    assert sum(p.numel() for p in tied.parameters()) == PRESETS["llama3.2-1b"].params()


def test_alpha_one_accepts_every_draft_token(models):
    r = hf.assisted(*models, prompt(), NEW, GAMMA, alpha=1.0, seed=0)
    check_consistent(r)
    assert r["accepted"] == r["drafted"]
    assert r["drafted"][:-1] == [GAMMA] * (len(r["drafted"]) - 1) and r["drafted"][-1] <= GAMMA
    # call shapes: the target prefill is merged into the first verification; the draft
    # re-feeds two tokens at the start of every later step
    assert r["target_calls"][0] == (1, PROMPT + GAMMA, 0)
    assert r["target_calls"][1] == (1, GAMMA + 1, PROMPT + GAMMA)
    assert r["draft_calls"][:GAMMA + 1] == [(1, PROMPT, 0)] + [(1, 1, PROMPT + i) for i in range(GAMMA - 1)] + [
        (1, 2, PROMPT + GAMMA - 1)]


def test_alpha_zero_accepts_nothing(models):
    r = hf.assisted(*models, prompt(), NEW, GAMMA, alpha=0.0, seed=0)
    check_consistent(r)
    assert r["accepted"] == [0] * NEW
    assert r["draft_calls"][GAMMA] == (1, 2, PROMPT - 1)  # cropped back, one token recomputed


def test_mean_accepted_is_the_truncated_geometric(models):
    alpha = 0.6
    counts = []
    for seed in range(4):
        r = hf.assisted(*models, prompt(seed), NEW, GAMMA, alpha=alpha, seed=seed)
        check_consistent(r)
        counts += [n for n, k in zip(r["accepted"], r["drafted"]) if k == GAMMA]  # full-length drafts
    mean = sum(alpha**i for i in range(1, GAMMA + 1))
    second = sum(n * n * (alpha**n * (1 - alpha) if n < GAMMA else alpha**GAMMA) for n in range(GAMMA + 1))
    se = math.sqrt((second - mean**2) / len(counts))
    assert abs(sum(counts) / len(counts) - mean) < 4 * se


def test_plain_decodes_one_token_per_forward(models):
    target, _ = models
    r = hf.plain(target, prompt(), NEW)
    assert r["tokens"] == NEW and r["accepted"] == [] and r["draft_calls"] == []
    assert r["target_calls"] == [(1, PROMPT, 0)] + [(1, 1, PROMPT + i) for i in range(NEW - 1)]
    assert len(r["step_end_s"]) == NEW and r["tokens_per_s"] > 0


def test_time_forward_at_a_context(models):
    target, _ = models
    for context in (0, 20):
        times = hf.time_forward(target, batch=2, query=3, context=context, samples=3)
        assert len(times) == 3 and all(t > 0 for t in times)


def test_a_session_measures_runs_and_their_profile_interleaved(tmp_path, monkeypatch):
    """hf_session.measure: every round times each configuration once and each model's grid once; the
    runs it writes are predicted on the profile it writes (found by name), whose passes are the rounds."""
    from simulator.calibration import compare, hf_session

    name = "cpu-test-hf-session"
    base = {"target": "llama-68m", "prompt_tokens": 8, "output_tokens": 6, "target_profile": name,
            "draft_profile": name}
    configs = [base, base | {"draft": "llama-68m", "gamma": 2, "alpha": 0.5}]
    grid = {"batches": [1], "queries": [1, 3, 8, 16], "contexts": [0, 16]}
    folder = hf_session.measure(configs, grid, tmp_path, name, device="cpu", rounds=2, samples=1, log=lambda *_: None,
                                probes=True)
    runs = [json.loads(line) for line in (tmp_path / f"runs-{name}.jsonl").read_text().splitlines()]
    assert sorted((r["round"], r["draft"] is None) for r in runs) == [(0, False), (0, True), (1, False), (1, True)]
    rows = (folder / "llama-68m.csv").read_text().splitlines()
    assert len(rows) == 1 + 8 and all(r.endswith(",2") for r in rows[1:])  # 8 points, 2 rounds x 1 sample each
    per_round = (tmp_path / f"rounds-{name}.csv").read_text().splitlines()[1:]
    assert sorted({line.split(",")[4] for line in per_round}) == ["0", "1"] and len(per_round) == 16
    assert "interleaved" in (folder / "profile.yaml").read_text()
    monkeypatch.setenv("SPECSIM_PROFILE_PATH", str(tmp_path))
    for r in compare.load_runs([tmp_path / f"runs-{name}.jsonl"]):
        assert compare.predict(r).predicted_tokens_per_s > 0
        probe = r.host_probe  # the target (and the draft, where one ran) timed before and after at the prompt's context
        assert (probe.query_tokens, probe.context_tokens) == (1, 8) and len(probe.target_ms) == 2
        assert (probe.draft_ms is not None) == r.speculative
        assert compare.at_profile_speed(r).host_factor > 0
