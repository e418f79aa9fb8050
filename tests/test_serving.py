"""The real continuous-batching server (simulator/calibration/serving.py) on this machine's CPU:
its bookkeeping, checked against the target decoding alone."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # on a small shared machine more threads than one oversubscribe its cores

from simulator.calibration import graphs, runner, serving, streams  # noqa: E402
from simulator.calibration.llama import Llama  # noqa: E402
from simulator.catalog import PRESETS  # noqa: E402

pytestmark = pytest.mark.slow


def requests():
    reqs = [serving.request(i, 0.001 * i, 10, n) for i, n in enumerate([6, 11, 3, 8, 5])]
    prompts = {r.id: torch.randint(0, 32000, (10,), generator=torch.Generator().manual_seed(r.id)) for r in reqs}
    return reqs, prompts


@pytest.mark.parametrize("alpha", [None, 0.0])
def test_every_request_gets_the_targets_own_greedy_tokens(alpha):
    """Five requests through two rows (they queue, join, leave and their rows move), drafting 3 tokens
    a step: accepting drafts only where they agree with the target (alpha None), or never (0), each
    request's tokens are exactly what the target decodes for it alone."""
    arch_t, arch_d = PRESETS["llama-160m"], PRESETS["llama-68m"]
    target = Llama(arch_t, max_batch=2, max_len=64, seed=1)
    alone = Llama(arch_t, max_batch=1, max_len=64, seed=1)
    server = serving.Server(graphs.Graphs(target), graphs.Graphs(Llama(arch_d, max_batch=2, max_len=64, seed=2)),
                            max_batch=2, gamma=3, alpha=alpha, step_tokens=20)
    reqs, prompts = requests()
    done, steps = server.run(reqs, prompts)
    assert max(s[1] for s in steps) == 2 and sum(s[5] for s in steps) == sum(r.output_tokens for r in reqs)
    for r in done:
        assert server.tokens[r.id] == runner.autoregressive(alone, prompts[r.id][None], r.output_tokens)[0]
        assert r.arrival_s <= r.first_token_s <= r.finish_s
    if alpha is None:
        assert sum(s[4] for s in steps) > 0  # some drafts were accepted


def test_without_a_draft_every_request_gets_the_targets_own_greedy_tokens():
    """The autoregressive server: its steps commit one token a request without drafts (the batcher
    counts those for all decoding slots at once), and every position fed must still be the right one."""
    arch = PRESETS["llama-160m"]
    server = serving.Server(graphs.Graphs(Llama(arch, max_batch=2, max_len=64, seed=1)), None,
                            max_batch=2, gamma=0, alpha=None, step_tokens=20)
    alone = Llama(arch, max_batch=1, max_len=64, seed=1)
    reqs, prompts = requests()
    done, steps = server.run(reqs, prompts)
    assert len(done) == len(reqs) and all(s[3] == 0 for s in steps)  # no drafts
    for r in done:
        assert server.tokens[r.id] == runner.autoregressive(alone, prompts[r.id][None], r.output_tokens)[0]


def test_a_measured_stream_is_read_and_simulated(tmp_path):
    cfg = {"target": "llama-160m", "draft": "llama-68m", "gamma": 2, "alpha": 0.7, "max_batch": 2, "step_tokens": 16,
           "requests": 4, "rate_per_s": 50.0, "prompt_tokens": 8, "output_low": 3, "output_high": 8,
           "target_profile": "cpu-2core-torch-fp32"}
    path = tmp_path / "serving.jsonl"
    serving.measure([cfg], path, device="cpu", repeats=1, log=lambda *_: None)
    line = json.loads(path.read_text())
    assert line["kind"] == "serving" and len(line["requests"]) == 4 and line["round"] == 0
    (pred,) = [streams.predict(s) for s in streams.load([path])]
    assert all(v > 0 for v in (*pred.measured.values(), *pred.predicted.values()))
