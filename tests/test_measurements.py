"""Measurement files from any engine: loading, simulating each run, refusing bad ones cleanly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from simulator.calibration import compare
from simulator.catalog import PRESETS
from simulator.cli import app
from simulator.profiles import open_profile


def write(tmp_path, runs: list[dict], name="runs.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in runs) + "\n")
    return path


BASE = {"target": "llama2-7b", "prompt_tokens": 128, "output_tokens": 128, "tokens_per_s": 60.0,
        "target_profile": "h100-sxm-torch-bf16"}


def test_histogram_and_per_step_counts_predict_alike(tmp_path):
    """A run given by its accepted counts per step, and the same counts as a histogram, predict
    nearly the same tokens/s (the histogram loses only their order)."""
    counts = [4, 0, 2, 4, 1, 3, 4, 4, 0, 2] * 5
    hist = [counts.count(k) for k in range(5)]
    spec = BASE | {"draft": "llama-68m", "gamma": 4, "mode": "sampling"}
    per_step = compare.predict(compare.MeasuredRun.model_validate(spec | {"accepted": counts}))
    histogram = compare.predict(compare.MeasuredRun.model_validate(spec | {"accepted_histogram": hist}))
    assert histogram.predicted_tokens_per_s == pytest.approx(per_step.predicted_tokens_per_s, rel=0.1)
    assert per_step.draft_forwards <= 4 * per_step.steps + 1  # gamma per step, and the draft's prefill
    assert per_step.steps == pytest.approx(127 / (1 + sum(counts) / len(counts)), rel=0.1)


def test_autoregressive_prediction_is_output_over_simulated_time(tmp_path):
    run = compare.MeasuredRun.model_validate(BASE)
    p = compare.predict(run)
    assert p.steps == 127 and p.target_forwards == 128 and p.draft_forwards == 0
    assert p.error == pytest.approx(p.predicted_tokens_per_s / 60.0 - 1)


def test_compare_command_writes_report_and_plot(tmp_path):
    path = write(tmp_path, [BASE, BASE | {"tokens_per_s": 55.0},
                            BASE | {"draft": "llama-68m", "gamma": 2, "accepted": [2, 1, 0, 2] * 20}])
    result = CliRunner().invoke(app, ["calibrate", "compare", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "median |error|" in result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["runs"] == 3 and summary["configurations"] == 2
    assert (tmp_path / "out" / "scatter.png").stat().st_size > 1000
    assert "| llama2-7b |" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize("bad,fragment", [
    ({"tokens_per_s": -1}, "line 1: tokens_per_s"),
    ({"draft": "llama-68m", "gamma": 4}, "accepted (per step) or accepted_histogram"),
    ({"target_profile": "no-such-profile"}, "runs.jsonl: line 1: devices.target.profile: unknown profile"),
    ({"target": "gpt-17"}, "unknown preset"),
])
def test_bad_measurement_files_exit_2(tmp_path, bad, fragment):
    path = write(tmp_path, [BASE | bad])
    result = CliRunner().invoke(app, ["calibrate", "compare", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert fragment in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_a_static_batch_is_predicted_by_the_batched_server():
    """B sequences decoded together: one prefill step for all, then steps at batch B; with every draft
    accepted (gamma 4) a step commits 5 tokens per sequence, so 127 tokens take ceil(127 / 5) steps."""
    run = compare.MeasuredRun.model_validate(BASE | {"batch": 8, "draft": "llama-68m", "gamma": 4,
                                                     "mode": "oracle", "accepted": [4] * 26})
    p = compare.predict(run)
    assert p.steps == 26 and p.target_forwards == 27  # + the prefill step
    single = compare.predict(run.model_copy(update={"batch": 1}))
    assert single.steps == 26
    assert 1 < p.predicted_tokens_per_s / single.predicted_tokens_per_s <= 8  # batching pays, at most linearly


def test_shipped_h100_static_batches_are_predicted_within_bounds():
    """The H100 runs of 1-32 sequences decoded together (calibration/measurements/runs-h100-batch.jsonl):
    per configuration (median of 3 repeats) the batched server's prediction is within 20% at the median
    and 30% at the p90 (measured: 8.3% and 14.6%; docs/calibration.md)."""
    from pathlib import Path

    runs = compare.load_runs([Path(__file__).parent.parent / "calibration/measurements/runs-h100-batch.jsonl"])
    summary = compare.summarize([compare.predict(r) for r in runs])
    assert summary["configurations"] == 18
    assert summary["config_median_abs_error"] <= 0.2
    assert summary["config_p90_abs_error"] <= 0.3


def test_a_static_batch_replays_one_decision_for_all_rows():
    """The rows of a static batch step alike (one acceptance decision per step), so the replayed
    trace must give every row the step's count: the last, cut step included, 26 steps for 26 counts."""
    counts = [4] * 25 + [1]  # 127 tokens after the prefill's: 25 x 5 + 2
    run = compare.MeasuredRun.model_validate(BASE | {"batch": 8, "draft": "llama-68m", "gamma": 4,
                                                     "mode": "oracle", "accepted": counts})
    assert compare.predict(run).steps == 26


def _with_steps(run, ends):
    return compare.MeasuredRun.model_validate(run.model_dump() | {"step_end_s": ends})


def test_steadiness_tells_a_machine_that_slowed_from_a_model_that_is_off():
    """A run measured uniformly 10% slower than predicted is steady (the model is off); one whose last
    quarter ran 20% slower drifted (the machine changed under it)."""
    spec = BASE | {"draft": "llama-68m", "gamma": 4, "mode": "oracle", "accepted": [2, 4, 0, 3] * 10}
    p = compare.predict(compare.MeasuredRun.model_validate(spec))
    ends = p.step_end_s
    uniform = compare.predict(_with_steps(p.run, [1.1 * t for t in ends]))
    assert uniform.drift == pytest.approx(0, abs=1e-9)
    cut = ends[round(3 * (len(ends) - 1) / 4)]
    slowed = compare.predict(_with_steps(p.run, [t if t <= cut else cut + 1.2 * (t - cut) for t in ends]))
    assert slowed.drift == pytest.approx(0.2, rel=1e-6) and slowed.drift > compare.DRIFT
    assert compare.predict(p.run).drift is None  # no step times, no verdict
    summary = compare.summarize([uniform, slowed])
    assert summary["steadiness_tested"] == 2 and summary["drifted"] == 1


def test_timing_spread_removes_what_the_runs_drew_differently():
    """Two repeats that accepted differently but ran exactly as the model says have no timing spread,
    though their tokens/s differ."""
    spec = BASE | {"draft": "llama-68m", "gamma": 4, "mode": "oracle"}
    runs = [compare.MeasuredRun.model_validate(spec | {"accepted": acc}) for acc in ([4, 4, 1] * 12, [0, 1, 2] * 30)]
    preds = [compare.predict(r) for r in runs]
    exact = [compare.predict(r.model_copy(update={"tokens_per_s": p.predicted_tokens_per_s * 0.9}))
             for r, p in zip(runs, preds)]
    s = compare.summarize(exact)
    assert s["configurations"] == 1 and s["repeat_spread_median"] > 0.3
    assert s["timing_spread_median"] == pytest.approx(0, abs=1e-9)


def test_fit_recovers_the_overheads_that_made_the_runs():
    """Runs whose times are the simulator's own with known overheads: the least-squares fit finds
    those overheads again (the simulated time is linear in them). A single stream runs one target
    forward per step (and one more, the prefill), so only the sum of the per-forward and per-step
    overheads is determined by such runs: the fitted ones reproduce held-out runs nearly exactly, and
    the draft's overhead is recovered."""
    from simulator.calibration import fit
    from simulator.profiles import Overheads

    truth = Overheads(forward_ms=0.4, draft_forward_ms=0.07, step_ms=0.25)
    profile = "h200-torch-graph-bf16"
    base = BASE | {"target_profile": profile, "draft_profile": profile}
    configs = [base] + [base | {"draft": d, "gamma": g, "mode": "oracle", "accepted": acc}
                        for d in ("llama-68m", "llama-160m") for g, acc in ((2, [2, 0, 1] * 30), (4, [4, 1] * 30))]
    runs = []
    for c in configs:
        run = compare.MeasuredRun.model_validate(c)
        made = compare.predict(run, {profile: truth}).predicted_tokens_per_s
        runs.append(run.model_copy(update={"tokens_per_s": made}))
    result = fit.fit(runs, profile)
    o = result.overheads
    assert o.forward_ms + o.step_ms == pytest.approx(0.65, rel=0.01)
    assert o.draft_forward_ms == pytest.approx(0.07, rel=0.05)
    assert max(abs(p.error) for p in result.after["held_out"]) < 0.002
    assert min(abs(p.error) for p in result.before["held_out"]) > 0.01  # the overheads mattered


def test_fit_tells_a_messages_cost_from_a_steps_by_the_runs_without_a_link():
    """Runs over a link and in one process, made by the simulator with a known cost per message
    (0.2 ms at each end) and per draft phase: runs in one process send no messages, so the fit
    finds both again and predicts the held-out runs nearly exactly."""
    from simulator.calibration import fit
    from simulator.profiles import Overheads

    truth = Overheads(draft_call_ms=0.3, message_ms=0.2)
    profile = "h200-torch-graph-bf16"
    base = BASE | {"target_profile": profile, "draft_profile": profile, "draft": "llama-68m", "mode": "oracle"}
    links = [None, {"bandwidth_mbps": 100, "latency_ms": 1}, {"bandwidth_mbps": 5, "latency_ms": 30}]
    configs = [base | {"gamma": g, "accepted": acc} | ({"link": ln} if ln else {})
               for g, acc in ((2, [2, 0, 1] * 30), (4, [4, 1] * 30), (3, [3, 3, 0] * 30)) for ln in links]
    runs = []
    for c in configs:
        run = compare.MeasuredRun.model_validate(c)
        made = compare.predict(run, {profile: truth})
        assert made.messages == (2 * made.steps + 2 if "link" in c else 0)
        runs.append(run.model_copy(update={"tokens_per_s": made.predicted_tokens_per_s}))
    result = fit.fit(runs, profile)
    assert result.overheads.message_ms == pytest.approx(0.2, rel=0.02)
    assert result.overheads.draft_call_ms + result.overheads.step_ms == pytest.approx(0.3, rel=0.05)
    assert max(abs(p.error) for p in result.after["held_out"]) < 0.002


def test_shipped_h200_tcp_sessions_predict_each_other_within_the_goal(monkeypatch):
    """Two processes over TCP through the shaping proxy, graph mode on the H200, two sessions: the
    profile as measured predicts each session's 45 runs over three links within 5% at the median
    and 10% at the p90; overheads fitted on one session's training split predict the other
    session's runs within 2% and 4% (measured: docs/calibration.md)."""
    from simulator.calibration import fit
    from simulator.profiles import Overheads

    root = SHIPPED.parent / "results"
    monkeypatch.setenv("SPECSIM_PROFILE_PATH", f"{root / 'h200-tcp-graph'}:{root / 'h200-tcp-graph-b'}")
    sessions = {"h200-tcp-graph-bf16": root / "h200-tcp-graph" / "runs-tcp.jsonl",
                "h200-tcp-graph-b-bf16": root / "h200-tcp-graph-b" / "runs-tcp.jsonl"}
    over_link = {p: [r for r in compare.load_runs([f]) if r.link is not None] for p, f in sessions.items()}
    for mine, other in (list(sessions), list(sessions)[::-1]):
        runs = over_link[mine]
        assert len(runs) == 45 and len({(r.link["bandwidth_mbps"], r.link["latency_ms"]) for r in runs}) == 3
        raw = compare.summarize([compare.predict(r, {mine: Overheads()}) for r in runs])
        assert raw["median_abs_error"] <= 0.05 and raw["p90_abs_error"] <= 0.10
        fitted = fit.fit(over_link[other], other, every=2).overheads
        s = compare.summarize([compare.predict(r, {mine: fitted}) for r in runs])
        assert s["median_abs_error"] <= 0.02 and s["p90_abs_error"] <= 0.04


def test_train_every_k_keeps_the_baselines_in_training_and_calls_held_out_speedups_against_them():
    """--train-every 3: every autoregressive configuration trains with every third speculative one;
    the held-out speculative configurations are still called faster or not, against the training
    split's baselines."""
    from simulator.calibration import fit

    base = BASE | {"target_profile": "h200-torch-graph-bf16"}
    configs = [base] + [base | {"draft": d, "gamma": g, "mode": "oracle", "accepted": [1, 0] * 40}
                        for d in ("llama-68m", "llama-160m") for g in (2, 4, 8)]
    runs = [compare.MeasuredRun.model_validate(c) for c in configs]
    train, held = fit.split(runs, every=3)
    assert any(r.draft is None for r in train) and all(r.draft is not None for r in held)
    assert (len(train), len(held)) == (1 + 2, 4)
    assert fit.split(runs) == fit.split(runs, None)  # the default split is unchanged
    preds = [compare.predict(r) for r in runs]
    held_p = [p for p in preds if p.run in held]
    assert compare.summarize(held_p)["speedup_calls"] == 0  # no baseline among them
    assert compare.summarize(held_p, [p for p in preds if p.run in train])["speedup_calls"] == 4


SHIPPED = __import__("pathlib").Path(__file__).parent.parent / "calibration" / "measurements"


def test_shipped_h200_graph_session_is_predicted_within_the_goal():
    """H200, graph mode: session b, held out from the fit on session a stored in the profile, per
    configuration within 1.5% at the median and 4% at the p90 (measured: docs/calibration.md)."""
    runs = compare.load_runs([SHIPPED / "runs-h200-graph-b.jsonl"])
    s = compare.summarize([compare.predict(r) for r in runs])
    assert s["configurations"] == 38
    assert s["config_median_abs_error"] <= 0.015 and s["config_p90_abs_error"] <= 0.04


def test_shipped_h200_static_batches_are_predicted_within_the_goal():
    """H200, graph mode: static batches of 1-32 sequences, with overheads fitted at batch 1 only,
    per configuration within 2% at the median and 5% at the p90."""
    runs = compare.load_runs([SHIPPED / "runs-h200-graph-batch.jsonl"])
    s = compare.summarize([compare.predict(r) for r in runs])
    assert s["configurations"] == 18
    assert s["config_median_abs_error"] <= 0.02 and s["config_p90_abs_error"] <= 0.05


def test_the_hugging_face_loop_is_simulated_with_the_engines_own_forwards():
    """Runs of Hugging Face's assisted generation (transformers 5.17 on a CPU; tools/device_campaign.py
    cpu-hf) recorded every forward call the engine made. Simulated with the engine's loop (merged
    prefill, two tokens re-fed), each run makes exactly as many target and draft forwards and steps,
    and its first target forward is the prompt plus the first step's drafts at context 0."""
    runs = compare.load_runs([__import__("pathlib").Path(__file__).parent / "data" / "hf-runs-cpu.jsonl"])
    runs = [r.model_copy(update={"target_profile": "cpu-2core-torch-fp32", "draft_profile": "cpu-2core-torch-fp32"})
            for r in runs]  # the counts do not depend on the latencies
    assert len(runs) == 21 and {r.engine for r in runs} == {"hf"}
    for r in runs:
        p, calls = compare.predict(r), r.model_extra
        assert (p.target_forwards, p.draft_forwards) == (len(calls["target_calls"]), len(calls["draft_calls"]))
        first = calls["target_calls"][0]
        assert first == [1, r.prompt_tokens + min(r.gamma, r.output_tokens - 1), 0]
        if r.gamma:
            assert p.steps == len(r.accepted)


def test_a_split_fit_keeps_the_targets_overheads_and_finds_the_drafts():
    """Draft on a CPU, target on a GPU: runs made by the simulator with known draft-side overheads on
    the CPU's profile (and the GPU profile's own stored ones) are fitted back on the draft side."""
    from simulator.calibration import fit
    from simulator.profiles import Overheads, find, read_meta

    gpu, cpu = "h100-sxm-torch-bf16", "cpu-host2-torch-fp32"
    truth = {gpu: read_meta(find(gpu)).overheads, cpu: Overheads(draft_forward_ms=0.3, draft_call_ms=2.0)}
    base = BASE | {"target_profile": gpu, "draft_profile": cpu, "draft": "llama-68m", "mode": "oracle"}
    runs = []
    for g, acc in ((1, [1, 0] * 40), (2, [2, 0, 1] * 30), (3, [3, 1] * 30), (4, [4, 2, 0] * 20)):
        for d in ("llama-68m", "llama-160m"):
            run = compare.MeasuredRun.model_validate(base | {"draft": d, "gamma": g, "accepted": acc})
            runs.append(run.model_copy(update={"tokens_per_s": compare.predict(run, truth).predicted_tokens_per_s}))
    result = fit.fit(runs, gpu, draft_profile=cpu)
    o = result.overheads
    assert (o.draft_forward_ms, o.draft_call_ms) == pytest.approx((0.3, 2.0), rel=0.02)
    assert o.forward_ms == o.step_ms == 0  # the target's side is not refitted
    assert max(abs(p.error) for p in result.after["held_out"]) < 0.002


def test_a_tensor_parallel_run_is_predicted_from_one_gpus_share_and_the_all_reduces():
    """A run with tp 2 and its interconnect: the target's device gets two GPUs, the target its measured
    2-way share on the H200 plus its all-reduces, the draft one GPU; a slower interconnect predicts
    a slower run, and without any the split is refused where the scenario would refuse it."""
    h200 = BASE | {"target_profile": "h200-torch-graph-bf16", "draft": "llama-68m", "gamma": 4, "mode": "oracle",
                   "alpha": 0.8, "accepted": [2, 4, 1, 3] * 30}
    whole = compare.predict(compare.MeasuredRun.model_validate(h200))
    fast = {"tp": 2, "interconnect": {"allreduce": {"bytes": [8192, 8388608], "ms": [0.01, 0.05]}}}
    slow = {"tp": 2, "interconnect": {"allreduce": {"bytes": [8192, 8388608], "ms": [0.2, 1.0]}}}
    split = compare.predict(compare.MeasuredRun.model_validate(h200 | fast))
    slower = compare.predict(compare.MeasuredRun.model_validate(h200 | slow))
    assert split.predicted_tokens_per_s > whole.predicted_tokens_per_s > slower.predicted_tokens_per_s
    spec = compare.scenario_for(compare.MeasuredRun.model_validate(h200 | fast))
    assert spec.devices["target"].gpus == 2 and spec.tp(spec.strategy.placements()["draft"]) == 1
    with pytest.raises(Exception, match="interconnect"):
        compare.scenario_for(compare.MeasuredRun.model_validate(h200 | {"tp": 2}))


def test_host_speed_scales_a_run_by_its_probe_over_the_profile(tmp_path):
    """A host-bound run on a host 1.3x slower than when its profile was measured (its probe says so)
    takes 1.3x the simulated time; --host-speed scales it back and the error vanishes. The probe is
    read against the profile's own time of the probed forward, so a probe at the profile's speed
    changes nothing. A run without a probe is refused with the line and the field."""
    profile = "h200-hf-d-bf16"
    spec = BASE | {"target_profile": profile, "draft_profile": profile, "engine": "hf", "draft": "llama-68m",
                   "gamma": 4, "mode": "oracle", "accepted": [2, 4, 0, 3] * 10}
    run = compare.MeasuredRun.model_validate(spec)
    exact = compare.predict(run).predicted_tokens_per_s
    point = float(open_profile(profile, "p", "test").ms_fn("llama2-7b", "llama2-7b", PRESETS["llama2-7b"])(
        1, 1, np.array([128]))[0])
    probe = {"batch": 1, "query_tokens": 1, "context_tokens": 128}
    slow = compare.MeasuredRun.model_validate(spec | {"tokens_per_s": exact / 1.3,
                                                      "host_probe": probe | {"target_ms": [1.2 * point, 1.4 * point]}})
    assert compare.predict(slow).error == pytest.approx(0.3, rel=1e-9)
    scaled = compare.at_profile_speed(slow)
    assert scaled.host_factor == pytest.approx(1.3) and compare.predict(scaled).error == pytest.approx(0, abs=1e-9)
    same = compare.at_profile_speed(slow.model_copy(update={"host_probe": compare.HostProbe(**probe, target_ms=[point])}))
    assert same.tokens_per_s == pytest.approx(slow.tokens_per_s)

    path = write(tmp_path, [json.loads(slow.model_dump_json()), spec])
    result = CliRunner().invoke(app, ["calibrate", "compare", str(path), "--host-speed"])
    assert result.exit_code == 2 and "line 2: host_probe" in result.output and "Traceback" not in result.output
    bad = write(tmp_path, [spec | {"host_probe": probe | {"target_ms": [-1.0]}}], "bad.jsonl")
    result = CliRunner().invoke(app, ["calibrate", "compare", str(bad), "--host-speed"])
    assert result.exit_code == 2 and "line 1: host_probe.target_ms" in result.output
    good = write(tmp_path, [json.loads(slow.model_dump_json())], "good.jsonl")
    result = CliRunner().invoke(app, ["calibrate", "compare", str(good), "--host-speed"])
    assert result.exit_code == 0 and "host factor" in result.output and "median 1.300" in result.output


def test_a_pipelined_run_costs_the_whole_target_plus_two_hops_a_forward():
    """A target split into 2 stages over a free link takes what the whole target takes on one GPU
    (the stages' shares of the layers sum to the whole); a stage link of latency L adds 2 L a target
    forward (the activations to the second stage, the token back), prefill included."""
    run = compare.MeasuredRun.model_validate(BASE | {"target_profile": "h200-torch-graph-bf16"})
    whole = compare.predict(run)
    split = compare.predict(run.model_copy(update={"pp": 2}))
    assert split.predicted_tokens_per_s == pytest.approx(whole.predicted_tokens_per_s, rel=1e-9)
    slow = compare.predict(run.model_copy(update={"pp": 2, "stage_link": {"bandwidth_mbps": float("inf"),
                                                                           "latency_ms": 0.5, "header_bytes": 0}}))
    t = lambda p: run.output_tokens / p.predicted_tokens_per_s  # noqa: E731
    assert t(slow) - t(whole) == pytest.approx(whole.target_forwards * 2 * 0.5e-3, rel=1e-6)
    with pytest.raises(ValueError, match="pipelined run"):
        compare.MeasuredRun.model_validate(BASE | {"pp": 2, "tp": 2})


def test_shipped_cpu_probe_session_scaled_by_its_probes_is_within_the_goal_per_run():
    """The 2-core CPU, session b with a host probe around every run: scaled by the probes and fitted
    on half the configurations, the held-out runs are within 5% at the median and 10% at the p90 per
    run; unscaled, the same fit misses the p90 (measured: docs/calibration.md)."""
    from simulator.calibration import fit

    runs = compare.load_runs([SHIPPED / "runs-cpu2-epyc-b.jsonl"])
    scaled = fit.fit([compare.at_profile_speed(r) for r in runs], "cpu-2core-epyc-b-torch-fp32")
    s = compare.summarize(scaled.after["held_out"])
    assert s["runs"] == 25 and s["median_abs_error"] <= 0.05 and s["p90_abs_error"] <= 0.10
    raw = compare.summarize(fit.fit(runs, "cpu-2core-epyc-b-torch-fp32").after["held_out"])
    assert raw["p90_abs_error"] > 0.10


@pytest.mark.parametrize("session", ["i", "j"])
def test_shipped_hf_8_round_sessions_are_within_the_goal_per_configuration_held_out(session):
    """Hugging Face assisted generation on the H200, sessions i and j (8 rounds, runs and profile
    interleaved): fitted on every third configuration, the held-out configurations are within 5% at
    the median and 10% at the p90; the raw profile alone is not (measured: docs/calibration.md)."""
    from simulator.calibration import fit

    runs = compare.load_runs([SHIPPED / f"runs-h200-hf-{session}.jsonl"])
    f = fit.fit(runs, f"h200-hf-{session}-bf16", every=3)
    s = compare.summarize(f.after["held_out"])
    assert s["configurations"] == 8 and s["config_median_abs_error"] <= 0.05 and s["config_p90_abs_error"] <= 0.10
    assert compare.summarize(f.before["held_out"])["config_median_abs_error"] > 0.10
