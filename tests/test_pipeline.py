"""Pipeline-parallel decoding and PipeInfer: limits, hand-computed costs, and PipeInfer's qualitative results."""

from __future__ import annotations

import copy

import pytest
from helpers import autoregressive, constant_scenario, run

from simulator import analytic, catalog
from simulator import scenario as sc
from simulator.errors import InputError
from simulator.strategies.pipeline import micro_batch_size, rejects, run_commits

VOLATILE = ("scenario", "strategy", "sim")


def same_report(a: dict, b: dict) -> None:
    assert {k: v for k, v in a.items() if k not in VOLATILE} == {k: v for k, v in b.items() if k not in VOLATILE}


def pipe(kind="pipeline", n=4, alpha=0.8, gamma=4, bw=float("inf"), lat=0.0, draft_ms=15.0, target_ms=100.0,
         per_tok=0.0, output=200, requests=2, draft=True, layers=None, seed=1, **strategy) -> dict:
    """llama2-13b over n stage devices s0..s(n-1) (each `target_ms` per full-model forward, plus `per_tok` ms
    per token), a llama-68m drafter on `head`; every stage link and the head's links share bw and lat."""
    prof = {"kind": "constant", "forward_ms": {"target": target_ms}, "per_token_ms": {"target": per_tok}}
    devices = {f"s{i}": {"profile": copy.deepcopy(prof)} for i in range(n)}
    links = [{"a": f"s{i}", "b": f"s{i + 1}", "bandwidth_mbps": bw, "latency_ms": lat} for i in range(n - 1)]
    strat = {"kind": kind, "model": "target", "stages": [f"s{i}" for i in range(n)], **strategy}
    if draft:
        devices["head"] = {"profile": {"kind": "constant", "forward_ms": {"draft": draft_ms}}}
        links.append({"a": "head", "b": "s0", "bandwidth_mbps": bw, "latency_ms": lat})
        if n > 1:
            links.append({"a": f"s{n - 1}", "b": "head", "bandwidth_mbps": bw, "latency_ms": lat})
        strat |= {"draft": {"model": "draft", "device": "head"}, "gamma": gamma}
    elif n > 2:
        links.append({"a": f"s{n - 1}", "b": "s0", "bandwidth_mbps": bw, "latency_ms": lat})
    if layers is not None:
        strat["layers"] = layers
    return {"name": "t", "seed": seed, "models": {"draft": {"preset": "llama-68m"}, "target": {"preset": "llama2-13b"}},
            "devices": devices, "links": links, "strategy": strat, "acceptance": {"kind": "iid", "alpha": alpha},
            "workload": {"requests": requests, "prompt_tokens": 32, "output_tokens": output}}


def roofline_target(data: dict) -> dict:
    """Every target device on a roofline profile: times that grow with context and query."""
    roof = {"kind": "roofline", "peak_tflops": 100, "memory_bandwidth_gbps": 1000}
    for name in data["devices"]:
        if name != "head":
            data["devices"][name] = {"profile": dict(roof)}
    return data


# ---------------------------------------------------------------- pipeline: limits and hand-computed costs


def test_one_stage_equals_autoregressive_exactly():
    data = roofline_target(pipe(n=1, draft=False, output=64, requests=3))
    ar = autoregressive(constant_scenario())
    ar["models"], ar["devices"], ar["workload"] = data["models"], data["devices"], data["workload"]
    ar["strategy"]["target"] = {"model": "target", "device": "s0"}
    a, ra = run(data)
    b, rb = run(ar)
    same_report(a, b)
    assert ra.steps == rb.steps


def test_one_stage_with_a_draft_equals_speculative_exactly():
    link = {"bandwidth_mbps": 50, "latency_ms": 3}
    data = pipe(n=1, alpha=0.7, output=120, requests=3, bw=50, lat=3)
    spec = constant_scenario(draft_ms=15.0, target_ms=100.0, gamma=4, alpha=0.7, output=120, requests=3, prompt=32,
                             split=True, link=link)
    spec["models"] = data["models"]
    spec["devices"] = {"edge": data["devices"]["head"], "cloud": data["devices"]["s0"]}
    spec["links"] = [{"a": "edge", "b": "cloud", **link, "name": data["links"][0]["a"] + "-" + data["links"][0]["b"]}]
    a, ra = run(data)
    b, rb = run(spec)
    assert ra.steps == rb.steps
    assert [(r.first_token_s, r.finish_s) for r in ra.records] == [(r.first_token_s, r.finish_s) for r in rb.records]
    assert a["tokens_per_step"] == b["tokens_per_step"]


@pytest.mark.parametrize("layers", [None, [1, 19, 12, 8]])
def test_free_links_n_stages_cost_what_one_does(layers):
    one, _ = run(pipe(n=1, draft=False, output=100))
    four, _ = run(pipe(n=4, draft=False, output=100, layers=layers))
    assert four["latency_s"]["tpot"]["mean"] == pytest.approx(one["latency_s"]["tpot"]["mean"], rel=1e-12)
    assert four["latency_s"]["ttft"]["mean"] == pytest.approx(one["latency_s"]["ttft"]["mean"], rel=1e-12)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_each_token_pays_n_minus_1_activation_hops_and_the_return_hop(n):
    lat_ms, bw = 5.0, 100.0
    rep, _ = run(pipe(n=n, draft=False, output=50, requests=1, bw=bw, lat=lat_ms))
    hidden = catalog.PRESETS["llama2-13b"].hidden
    act_s = 8 * (hidden * 2 + 64) / (bw * 1e6) + lat_ms / 1000  # one token's activations (bf16) + header
    ret_s = 8 * (4 + 64) / (bw * 1e6) + lat_ms / 1000  # the token id back to the first stage
    assert rep["latency_s"]["tpot"]["mean"] == pytest.approx(0.100 + (n - 1) * act_s + ret_s, rel=1e-9)


def test_closed_form_matches_the_simulation():
    for data in (pipe(n=4, draft=False, bw=100, lat=2), pipe(n=4, alpha=0.7, bw=100, lat=2, per_tok=20)):
        data["workload"]["requests"] = 5
        rep, _ = run(data)
        est = analytic.estimate(sc.parse(data, "t"))
        assert est["throughput_tokens_per_s"] == pytest.approx(rep["throughput_tokens_per_s"], rel=0.05)


def test_stage_layers_must_cover_the_model():
    data = pipe(n=4, layers=[10, 10, 10, 9])
    with pytest.raises(InputError, match=r"strategy.layers.*summing to the target's layers \(40\)"):
        sc.parse(data, "t")
    data = pipe(n=3, draft=False)
    data["links"] = data["links"][:1]  # s1-s2 missing
    with pytest.raises(InputError, match="need a link"):
        sc.parse(data, "t")


# ---------------------------------------------------------------- pipeinfer


def test_decisions():
    assert micro_batch_size(4, 100, 10) == 4 and micro_batch_size(4, 12, 10) == 1 and micro_batch_size(4, 11, 10) == 0
    assert run_commits(0, 0, 5) == 1 and run_commits(4, 3, 5) == 3 and run_commits(4, 4, 2) == 2
    assert rejects(4, 3) and not rejects(4, 4) and not rejects(0, 0)


def test_gamma_zero_is_the_plain_pipeline_exactly():
    data = pipe("pipeinfer", n=3, gamma=0, bw=100, lat=2, output=80)
    data["strategy"]["draft"]["device"] = "s0"  # the head at the first stage, as the plain pipeline's user
    data["devices"]["s0"]["profile"]["forward_ms"]["draft"] = 15.0
    data["links"] = [ln for ln in data["links"] if "head" not in (ln["a"], ln["b"])]
    data["links"].append({"a": "s2", "b": "s0", "bandwidth_mbps": 100, "latency_ms": 2})
    del data["devices"]["head"]
    plain = pipe(n=3, draft=False, bw=100, lat=2, output=80)
    plain["devices"] = data["devices"]
    a, ra = run(data)
    b, rb = run(plain)
    same_report(a, b)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.8, 1.0])
@pytest.mark.parametrize("users", [1, 3])
def test_tokens_produced_equal_tokens_requested(alpha, users):
    data = pipe("pipeinfer", n=3, alpha=alpha, bw=100, lat=1, requests=6, per_tok=10)
    data["workload"] |= {"arrival": {"kind": "closed_loop", "users": users},
                         "output_tokens": {"kind": "uniform", "low": 1, "high": 90}}
    rep, result = run(data)
    assert rep["output_tokens"] == sum(r.output_tokens for r in result.records)
    for r in result.records:
        assert sum(s[5] for s in result.steps if s[0] == r.id) + 1 == r.output_tokens
        assert r.first_token_s <= r.finish_s


def test_single_stage_full_acceptance_is_no_worse_than_speculative():
    """Holds while g (g t_draft + hops) >= t_target: each asynchronous micro-batch of g drafts yields g
    tokens (its first draft re-checks the previous run's bonus token) where a synchronous step yields
    g + 1; with gamma 1 here (1 x 17 ms < 100 ms) PipeInfer is slower (docs/model.md)."""
    for gamma in (4, 8):
        sync, _ = run(pipe("pipeline", n=1, alpha=1.0, gamma=gamma, bw=100, lat=1, output=300))
        asyn, _ = run(pipe("pipeinfer", n=1, alpha=1.0, gamma=gamma, bw=100, lat=1, output=300))
        assert asyn["throughput_tokens_per_s"] >= sync["throughput_tokens_per_s"]


def gain(alpha: float, bw: float, seed: int = 1) -> float:
    """PipeInfer's throughput over speculative decoding through the same 4-stage pipeline (a CPU-cluster-like
    target: verifying more tokens costs more; a drafter at 15% of the target's forward)."""
    kw = dict(n=4, alpha=alpha, bw=bw, lat=0.5, per_tok=20, draft_ms=15.0, output=300, requests=2, seed=seed)
    sync, _ = run(pipe("pipeline", **kw))
    asyn, _ = run(pipe("pipeinfer", **kw))
    return asyn["throughput_tokens_per_s"] / sync["throughput_tokens_per_s"]


@pytest.mark.parametrize("seed", [1, 2])
def test_pipeinfer_gain_grows_as_acceptance_falls(seed):
    """PipeInfer: the gain is largest for poorly aligned drafts (here alpha 0.5 down to 0.1)."""
    gains = [gain(a, 1000, seed) for a in (0.5, 0.3, 0.1)]
    assert gains[0] > 1.1
    assert gains[0] < gains[1] < gains[2]


@pytest.mark.parametrize("seed", [1, 2])
def test_pipeinfer_gain_grows_as_links_get_slower(seed):
    gains = [gain(0.3, bw, seed) for bw in (1000, 100, 10)]
    assert gains[0] < gains[1] < gains[2]


def test_pipeinfer_estimate_is_labelled_approximate():
    est = analytic.estimate(sc.parse(pipe("pipeinfer", n=4, bw=100, lat=1), "t"))
    assert "approximate" in est and est["throughput_tokens_per_s"] > 0
