"""The torch runner's correctness, and a small real calibration on this machine's CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # on a small shared machine more threads than one oversubscribe its cores

from simulator.calibration import compare, fit, graphs, runner  # noqa: E402
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    measure_runs(configs, root / "runs.jsonl", device="cpu", repeats=2, log=lambda *_: None, probes=True)
    return root


@pytest.mark.slow
def test_measurement_file_round_trips_in_rounds(cpu_calibration):
    """Every timed round holds every configuration once (round-robin, not repeats back to back)."""
    runs = compare.load_runs([cpu_calibration / "runs.jsonl"])
    assert len(runs) == 14
    lines = [json.loads(line) for line in (cpu_calibration / "runs.jsonl").read_text().splitlines()]
    for rnd in (0, 1):
        configs = [(r["mode"], r["gamma"]) for r in lines if r["round"] == rnd]
        assert len(configs) == 7 and len(set(configs)) == 7
    assert all(r["tokens_per_s"] > 0 and r["captures_in_run"] == 0 for r in lines)
    assert sum(r["mode"] == "autoregressive" for r in lines) == 2
    for r in runs:  # the target (and any draft) probed before and after each run, at the prompt's context
        assert len(r.host_probe.target_ms) == 2 and r.host_probe.context_tokens == 24
        assert (r.host_probe.draft_ms is not None) == r.speculative
        assert compare.at_profile_speed(r).host_factor > 0


@pytest.mark.slow
def test_a_real_calibration_runs_end_to_end(cpu_calibration):
    """The measured runs of this machine are simulated and fitted; no accuracy bound here, since
    that depends on how busy the machine is (docs/calibration.md has the figures)."""
    runs = compare.load_runs([cpu_calibration / "runs.jsonl"])
    profile = str(cpu_calibration / "cpu-ci")
    result = fit.fit(runs, profile)
    o = result.overheads
    assert min(o.forward_ms, o.draft_forward_ms, o.step_ms) >= 0
    preds = result.after["held_out"] + result.after["train"]
    assert len(preds) == 14 and all(np.isfinite(p.predicted_tokens_per_s) and p.predicted_tokens_per_s > 0
                                    for p in preds)
    s = compare.summarize(preds)
    assert s["steadiness_tested"] > 0 and s["timing_spread_median"] is not None


@pytest.mark.slow
def test_graph_executor_gives_the_eager_tokens_on_a_cpu():
    """The static-shape forward (what a CUDA graph captures) decodes the same tokens as eager, for
    autoregressive, greedy speculative and oracle decoding, at batch 1 and 2."""
    target, draft = models()
    p = prompt()
    reference, _ = runner.autoregressive(target, p, 40)
    static, _ = runner.autoregressive(graphs.Graphs(target), p, 40)
    assert static == reference
    for gamma in (1, 4):
        toks, acc, _ = runner.speculative(graphs.Graphs(target), graphs.Graphs(draft), p, 40, gamma)
        assert toks == reference and 0 < np.mean(acc) < gamma
    two = torch.cat([p, p])
    big_t, big_d = (Llama(m.arch, max_batch=2, max_len=256, seed=s) for m, s in ((target, 1), (draft, 2)))
    eager = runner.speculative(big_t, big_d, two, 30, 3, "oracle", 0.7, np.random.default_rng(1))
    static = runner.speculative(graphs.Graphs(big_t), graphs.Graphs(big_d), two, 30, 3, "oracle", 0.7,
                                np.random.default_rng(1))
    assert eager[:2] == static[:2]


def test_attention_span_is_the_context_rounded_up_to_a_bucket():
    assert [graphs.span(e, 1000) for e in (1, 16, 17, 129)] == [16, 16, 32, 144]
    assert graphs.span(999, 1000) == 1000  # never past the cache


@pytest.mark.slow
def test_a_profile_is_measured_in_passes_that_report_their_disagreement(tmp_path):
    import yaml

    grid = {"batches": [1, 2], "queries": [1, 2, 8], "contexts": [0, 16]}
    measure_profile(["llama-68m"], tmp_path / "p", device="cpu", grid=grid, min_samples=2, min_s=0.0, passes=2,
                    max_tokens=8, log=lambda *_: None)
    meta = yaml.safe_load((tmp_path / "p" / "profile.yaml").read_text())
    assert meta["execution"] == "eager" and set(meta["pass_disagreement"]["llama-68m"]) == {"median", "p90", "max"}
    rows = (tmp_path / "p" / "llama-68m.csv").read_text().splitlines()[1:]
    measured = {tuple(map(int, r.split(",")[:3])) for r in rows}
    assert (2, 8, 0) not in measured and (1, 8, 0) in measured  # 16 tokens > max_tokens 8: left out
    assert all(int(r.split(",")[-1]) >= 2 for r in rows)  # samples from both passes


def test_graph_mode_on_a_cpu_is_refused(tmp_path):
    with pytest.raises(ValueError, match="CUDA"):
        measure_profile(["llama-68m"], tmp_path / "p", device="cpu", mode="graph",
                        grid={"batches": [1], "queries": [1], "contexts": [0]}, log=lambda *_: None)


@pytest.mark.parametrize("args,fragment", [
    (["--device", "cpu", "--mode", "graph"], "graph mode needs --device cuda"),
    (["--mode", "fast"], "must be graph or eager"),
    (["--engine", "vllm"], "must be specsim or hf"),
] + ([(["--device", "cuda"], "a CPU build has no CUDA")] if not torch.cuda.is_available() else []))
def test_measuring_refuses_what_this_machine_cannot_run(tmp_path, args, fragment):
    from typer.testing import CliRunner

    from simulator.cli import app

    out = tmp_path / "p"
    result = CliRunner().invoke(app, ["profile", "--models", "llama-68m", "--out", str(out), *args])
    assert result.exit_code == 2 and fragment in result.output and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize("args,fragment", [
    (["profile", "--batches", "one,two", "--out", "{tmp}/p"], "--batches: batches: 'one,two': comma-separated integers"),
    (["calibrate", "compare", "{measurements}", "--out", "{tmp}/file"], "file: --out must be a folder"),
    (["calibrate", "compare", "{measurements}", "--out", "{tmp}/file/under"], "--out must be a folder ("),
])
def test_bad_options_exit_2_before_any_work(tmp_path, args, fragment):
    from pathlib import Path

    from typer.testing import CliRunner

    from simulator.cli import app

    (tmp_path / "file").write_text("x")
    shipped = Path(__file__).parent.parent / "calibration" / "measurements" / "runs-h200-graph-batch.jsonl"
    args = [a.format(tmp=tmp_path, measurements=shipped) for a in args]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and fragment in result.output and "Traceback" not in result.output


def test_compare_without_out_prints_its_table_and_writes_nothing(tmp_path, monkeypatch):
    from pathlib import Path

    from typer.testing import CliRunner

    from simulator.cli import app

    monkeypatch.chdir(tmp_path)
    shipped = Path(__file__).parent.parent / "calibration" / "measurements" / "runs-h200-graph-batch.jsonl"
    result = CliRunner().invoke(app, ["calibrate", "compare", str(shipped)])
    assert result.exit_code == 0, result.output
    assert "median" in result.output and not list(tmp_path.iterdir())
