"""The pipelined runner (simulator/calibration/pipeline_parallel.py) on CPU with a gloo group of two
processes: the stages compute what the whole model computes, and speculative decoding over them
gives the whole target's tokens. Real PyTorch runs: slow."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from helpers import free_port

torch = pytest.importorskip("torch")

from simulator.catalog import Architecture  # noqa: E402

ARCH = Architecture(layers=3, hidden=64, heads=4, kv_heads=2, ffn=96, vocab=256)
PROMPT = [[5, 17, 3, 99, 42, 7, 250, 11]]


def _whole():
    from simulator.calibration.llama import Llama

    return Llama(ARCH, max_batch=1, max_len=48, dtype=torch.float64, seed=3, noise=1.0)


def _draft():
    from simulator.calibration.llama import Llama

    return Llama(Architecture(layers=1, hidden=64, heads=4, kv_heads=4, ffn=96, vocab=256), max_batch=1, max_len=48,
                 dtype=torch.float64, seed=5, noise=1.0)


def _rank(rank: int, n: int, port: int, mode: str, results) -> None:
    import torch.distributed as dist

    from simulator.calibration import graphs, runner
    from simulator.calibration.pipeline_parallel import StagedTarget, StageLlama, follow_stage

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=n)
    try:
        torch.set_num_threads(1)
        stage = StageLlama(ARCH, rank, n, full=_whole(), max_batch=1, max_len=48, dtype=torch.float64)
        ex = graphs.executor(stage, mode)
        if rank == 0:
            target = StagedTarget(ex, n)
            out, accepted, _ = runner.speculative(target, _draft(), torch.tensor(PROMPT), 12, 3)
            plain = runner.autoregressive(target, torch.tensor(PROMPT), 6)[0]
            target.close()
            results.put(("ran", (list(out), accepted, list(plain))))
        else:
            results.put(("followed", follow_stage(ex, rank, n)))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_speculative_decoding_over_two_stages_gives_the_whole_targets_tokens(mode):
    """Greedy speculative decoding is lossless: with the target's 3 blocks split 2 + 1 over two gloo
    ranks (rank 0 driving, rank 1 running the last block and the head) it emits the whole target's
    greedy tokens and accepts what the single-process loop accepts, whether the stages run their own
    forward or the static-shape one graphs capture (run directly on a CPU)."""
    from simulator.calibration import runner
    from simulator.calibration.pipeline_parallel import blocks

    assert [list(blocks(ARCH, s, 2)) for s in (0, 1)] == [[0, 1], [2]]
    torch.set_num_threads(1)
    want, want_accepted, _ = runner.speculative(_whole(), _draft(), torch.tensor(PROMPT), 12, 3)
    ctx = mp.get_context("fork")
    results, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, mode, results)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    out, accepted, plain = got["ran"]
    assert out == want and accepted == want_accepted
    assert plain == runner.autoregressive(_whole(), torch.tensor(PROMPT), 6)[0]
    assert got["followed"] == (1 + len(accepted)) + 6  # a prefill and a verification a step; then 6 plain forwards
