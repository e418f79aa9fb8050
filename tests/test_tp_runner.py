"""The tensor-parallel runner (simulator/calibration/tensor_parallel.py) on CPU with a gloo group
of two processes: the shards compute what the whole model computes, and the all-reduce table has
the shape a device's interconnect takes. Real PyTorch runs: slow."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from helpers import free_port

torch = pytest.importorskip("torch")

from simulator.catalog import Architecture  # noqa: E402

ARCH = Architecture(layers=2, hidden=64, heads=4, kv_heads=2, ffn=96, vocab=256)
PROMPT = [[5, 17, 3, 99, 42, 7, 250, 11]]


def _whole():
    from simulator.calibration.llama import Llama

    return Llama(ARCH, max_batch=1, max_len=32, dtype=torch.float64, seed=3, noise=1.0)


def _decode(model, steps: int = 4):
    """Prefill, then greedy decoding: the tokens and every step's logits."""
    logits = model.forward(torch.tensor(PROMPT), 0, last_only=True)
    out, seen, pos = [], [logits], len(PROMPT[0])
    for _ in range(steps):
        token = logits[:, -1].argmax(-1, keepdim=True)
        out.append(int(token))
        logits = model.forward(token, pos)
        seen.append(logits)
        pos += 1
    return out, [x.clone() for x in seen]


def _rank(rank: int, n: int, port: int, results) -> None:
    import torch.distributed as dist

    from simulator.calibration.tensor_parallel import ShardedLlama, allreduce_table

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=n)
    try:
        torch.set_num_threads(1)
        shard = ShardedLlama(ARCH, rank, n, full=_whole(), max_batch=1, max_len=32, dtype=torch.float64)
        tokens, logits = _decode(shard)
        table = allreduce_table([64, 4096], dtype=torch.float32, repeats=3, warmup=1)
        if rank == 0:
            results.put((tokens, [x.tolist() for x in logits], table))
    finally:
        dist.destroy_process_group()


def _speculate(rank: int, n: int, port: int, results) -> None:
    import torch.distributed as dist

    from simulator.calibration import runner
    from simulator.calibration.graphs import Eager
    from simulator.calibration.tensor_parallel import GroupTarget, ShardedLlama, follow

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=n)
    try:
        torch.set_num_threads(1)
        ex = Eager(ShardedLlama(ARCH, rank, n, full=_whole(), max_batch=1, max_len=32, dtype=torch.float64))
        if rank == 0:
            target = GroupTarget(ex)
            out, accepted, _ = runner.speculative(target, _draft(), torch.tensor(PROMPT), 12, 3)
            target.close()
            results.put(("ran", (out, accepted)))
        else:
            results.put(("followed", follow(ex)))
    finally:
        dist.destroy_process_group()


def _draft():
    from simulator.calibration.llama import Llama

    return Llama(Architecture(layers=1, hidden=64, heads=4, kv_heads=4, ffn=96, vocab=256), max_batch=1, max_len=32,
                 dtype=torch.float64, seed=5, noise=1.0)


@pytest.mark.slow
def test_speculative_decoding_with_a_tensor_parallel_target_gives_the_whole_targets_tokens():
    """Greedy speculative decoding is lossless: with the target split over two gloo ranks (rank 0
    driving, rank 1 following its broadcast steps) it emits the whole target's greedy tokens and
    accepts what the single-process loop accepts."""
    from simulator.calibration import runner

    torch.set_num_threads(1)
    want, want_accepted, _ = runner.speculative(_whole(), _draft(), torch.tensor(PROMPT), 12, 3)
    assert want == runner.autoregressive(_whole(), torch.tensor(PROMPT), 12)[0]
    ctx = mp.get_context("fork")
    results, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_speculate, args=(r, 2, port, results)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    followed, (out, accepted) = got["followed"], got["ran"]
    assert list(out) == want and accepted == want_accepted
    assert followed == 1 + len(accepted)  # the prefill and one verification a step


@pytest.mark.slow
def test_two_shards_compute_what_the_whole_model_does():
    torch.set_num_threads(1)
    tokens, logits = _decode(_whole())
    ctx = mp.get_context("fork")
    results, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, results)) for r in range(2)]
    for p in procs:
        p.start()
    got = results.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    shard_tokens, shard_logits, table = got
    assert shard_tokens == tokens
    for a, b in zip(shard_logits, logits):
        assert torch.allclose(torch.tensor(a, dtype=torch.float64), b, rtol=1e-9, atol=1e-9)
    assert table["bytes"] == [64, 4096] and len(table["ms"]) == 2 and all(m > 0 for m in table["ms"])


def test_a_shard_has_its_share_of_every_projection():
    from simulator.calibration.llama import Llama
    from simulator.calibration.tensor_parallel import ShardedLlama

    whole = Llama(ARCH, max_batch=1, max_len=8, seed=1)
    shard = ShardedLlama(ARCH, 1, 2, full=whole, max_batch=1, max_len=8)
    w, s = whole.layers[0], shard.layers[0]
    hd = ARCH.head_dim
    assert s["wqkv"].shape == (64, (2 + 2 * 1) * hd) and s["wo"].shape == (2 * hd, 64)
    assert torch.equal(s["wqkv"][:, :2 * hd], w["wqkv"][:, 2 * hd:4 * hd])  # heads 2 and 3
    assert s["wgu"].shape == (64, 96) and s["wdown"].shape == (48, 64)
    assert torch.equal(s["wdown"], w["wdown"][48:])
    assert shard.lm_head.shape == (64, 128) and torch.equal(shard.embed, whole.embed)


@pytest.mark.slow
def test_the_two_gpu_campaign_runs_end_to_end_on_cpu(tmp_path):
    """tools/tp_campaign.py --quick --device cpu (gloo): the all-reduce and send tables in the
    interconnect's format, the group's and the share's grids, real runs with the target split by
    tensor parallelism and by pipeline stages, and tools/tp_check.py reading them."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, str(root / "tools" / "tp_campaign.py"), str(tmp_path), "--quick", "--device", "cpu"],
                   check=True, capture_output=True, timeout=300)
    from simulator.tensor_parallel import AllReduceTable

    for table in ("allreduce.yaml", "p2p.yaml"):
        AllReduceTable(**yaml.safe_load((tmp_path / table).read_text()))  # the interconnect's own check
    assert (tmp_path / "group" / "tiny.csv").is_file() and (tmp_path / "share" / "tiny.tp2.csv").is_file()
    assert all((tmp_path / "stages" / f"tiny.stage{s}.csv").is_file() for s in (0, 1))
    import json

    runs = [json.loads(line) for line in (tmp_path / "runs-tp2.jsonl").read_text().splitlines()]
    assert len(runs) == 3 and {r["mode"] for r in runs} == {"autoregressive", "oracle"}
    assert all(r["tp"] == 2 and r["output_tokens"] == 8 and r["captures_in_run"] == 0 for r in runs)
    from simulator.calibration import compare

    measured = compare.load_runs([tmp_path / "runs-tp2.jsonl"])  # the records calibrate compare reads
    assert all(m.tp == 2 and m.interconnect["allreduce"]["bytes"] == [128, 512] for m in measured)
    staged = compare.load_runs([tmp_path / "runs-pp2.jsonl"])  # the same runs over two pipeline stages
    assert len(staged) == 3 and all(m.pp == 2 and m.tp == 1 and m.stage_link["latency_ms"] >= 0 for m in staged)
    assert all(compare.predict(m).predicted_tokens_per_s > 0 for m in staged)
    check = subprocess.run([sys.executable, str(root / "tools" / "tp_check.py"), str(tmp_path), "--quick"],
                           check=True, capture_output=True, text=True).stdout
    assert "tiny: predicted / measured - 1 over 8 points" in check
    assert "tiny stage 0 (1 of 2 layers): even split / measured - 1 over 8 points" in check
    assert "tiny stage 1 (1 of 2 layers)" in check
