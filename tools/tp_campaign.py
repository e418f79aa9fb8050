"""The two-GPU tensor-parallel measurement in one call (issue: tensor-parallel targets on two GPUs).

  python tools/tp_campaign.py OUT [--quick] [--device cpu]

Two processes, one a GPU (NCCL; with --device cpu, gloo on the CPU, for a check of the script),
each holding its half of the model (simulator/calibration/tensor_parallel.py). Writes, rank 0:

- OUT/allreduce.yaml: one all-reduce's median time for each message a decode or verify step of
  llama2-7b and llama2-13b sends (tokens x hidden x 2 bytes, 1 to 8192 tokens), as a device's
  `interconnect: {allreduce: {bytes, ms}}` takes it; OUT/p2p.yaml: a send from GPU 0 to GPU 1 of
  the same sizes (a pipeline stage's hop);
- OUT/group/<preset>.csv: the TP-2 group's forward (both shards and their all-reduces), replayed
  from CUDA graphs captured on both ranks in the same order, on the grid of
  tools/device_campaign.py's TP_GRID, in the profile CSV format (a check, not a profile);
- OUT/share/<preset>.tp2.csv: one GPU's share alone, the same session, the same grid: what the
  simulator's profile holds;
- OUT/stages/<preset>.stage<r>.csv: each GPU's pipeline stage of the model (half its layers, the
  first with the embedding, the second with the LM head) timed alone, the same grid;
- OUT/runs-tp2.jsonl: real runs with a TP-2 target (autoregressive; llama-68m and llama-160m drafts
  on GPU 0, gamma 2, 4, 8, oracle alpha 0.6 and 0.9; prompt 128, output 128), 3 rounds round-robin
  after an untimed round that captures every graph, rank 1 following rank 0's target steps;
- OUT/runs-pp2.jsonl: the same runs with the target split into 2 pipeline stages by layers instead
  (stage 0 and the draft on GPU 0, stage 1 on GPU 1), with pp: 2 and the stage link fitted to p2p.yaml.

Then `python tools/tp_check.py OUT` sets the group's measured times beside what the simulator
predicts from the share and the all-reduce table. Both ranks run the same forwards in the same
order: fixed sample counts and warm-up passes, never a time budget.
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

import yaml

QUICK_ARCH = dict(layers=2, hidden=64, heads=4, kv_heads=4, ffn=128, vocab=256)
GRID = {"batches": [1, 2, 4, 8, 16, 32], "queries": list(range(1, 17)) + [64, 256], "contexts": [0, 256, 1024, 2048]}
QUICK_GRID = {"batches": [1, 2], "queries": [1, 4], "contexts": [0, 16]}
PRESETS = ["llama2-7b", "llama2-13b"]


def sizes(hiddens: list[int], quick: bool) -> list[int]:
    tokens = [1, 4] if quick else [2 ** i for i in range(14)]
    return sorted({t * h * 2 for h in hiddens for t in tokens})


def rank_main(rank: int, n: int, port: int, out: str, quick: bool, device: str) -> None:
    import torch
    import torch.distributed as dist

    from simulator import catalog
    from simulator.calibration import graphs, measure
    from simulator.calibration.tensor_parallel import ShardedLlama, allreduce_table

    cuda = device == "cuda"
    if cuda:
        torch.cuda.set_device(rank)
    else:
        torch.set_num_threads(1)  # one core a rank
    dev = torch.device(f"cuda:{rank}" if cuda else "cpu")
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=n, **({"device_id": dev} if cuda else {}))
    out_dir, dtype = Path(out), torch.bfloat16 if cuda else torch.float32
    grid = QUICK_GRID if quick else GRID
    archs = {"tiny": catalog.Architecture(**QUICK_ARCH)} if quick else {p: catalog.PRESETS[p] for p in PRESETS}
    try:
        messages = sizes([a.hidden for a in archs.values()], quick)
        table = allreduce_table(messages, dtype, dev, repeats=5 if quick else 50)
        p2p = _p2p(messages, dtype, dev, rank, 5 if quick else 50)
        if rank == 0:
            (out_dir / "allreduce.yaml").write_text(yaml.safe_dump(table, sort_keys=False))
            (out_dir / "p2p.yaml").write_text(yaml.safe_dump(p2p, sort_keys=False))
        mode = "graph" if cuda else "eager"
        max_len = graphs.span(max(grid["contexts"]) + max(grid["queries"]), 1 << 30)
        for name, arch in archs.items():
            model = ShardedLlama(arch, rank, n, max_batch=max(grid["batches"]), max_len=max_len, device=dev,
                                 dtype=dtype)
            rows, spread = measure._measure_grid(model, mode, grid["batches"], grid, 2, 2 if quick else 6, 0.0,
                                                 8192, warmup_calls=5 if quick else 300)
            if rank == 0:
                (out_dir / "group").mkdir(parents=True, exist_ok=True)
                measure.write_grid(out_dir / "group" / f"{name}.csv", rows)
                print(f"{name}, TP-2 group: {len(rows)} points, passes disagree by {spread['median']:.1%} at the "
                      "median point", flush=True)
            del model
            if cuda:
                torch.cuda.empty_cache()
            dist.barrier()
            if rank == 0:  # one GPU's share alone, as the simulator's profile holds it
                share = arch.shard(n)  # as catalog.named("<preset>.tp2") gives it
                from simulator.calibration.llama import Llama

                alone = Llama(share, max_batch=max(grid["batches"]), max_len=max_len, device=dev, dtype=dtype)
                rows, _ = measure._measure_grid(alone, mode, grid["batches"], grid, 2, 2 if quick else 6, 0.0, 8192)
                (out_dir / "share").mkdir(parents=True, exist_ok=True)
                measure.write_grid(out_dir / "share" / f"{name}.tp{n}.csv", rows)
                del alone
                if cuda:
                    torch.cuda.empty_cache()
            dist.barrier()
        stage_grids(rank, n, out_dir, archs, grid, max_len, mode, quick, dev, dtype)
        runs(rank, n, out_dir, quick, dev, dtype, table)
        pipelined_runs(rank, n, out_dir, quick, dev, dtype, p2p)
    finally:
        dist.destroy_process_group()


def stage_grids(rank: int, n: int, out_dir: Path, archs: dict, grid: dict, max_len: int, mode: str, quick: bool,
                dev, dtype) -> None:
    """Each rank times its own pipeline stage of every model alone (pipeline_parallel.StageLlama: stage 0
    with the embedding, the last with the LM head), the ranks at once, nothing sent between them:
    OUT/stages/<preset>.stage<rank>.csv, what tools/tp_check.py sets beside the even split by layers
    the simulator makes of one profile."""
    import torch
    import torch.distributed as dist

    from simulator.calibration import measure
    from simulator.calibration.pipeline_parallel import StageLlama

    (out_dir / "stages").mkdir(parents=True, exist_ok=True)
    for name, arch in archs.items():
        stage = StageLlama(arch, rank, n, max_batch=max(grid["batches"]), max_len=max_len, device=dev, dtype=dtype)
        rows, _ = measure._measure_grid(stage, mode, grid["batches"], grid, 2, 2 if quick else 6, 0.0, 8192,
                                        warmup_calls=5 if quick else 300)
        measure.write_grid(out_dir / "stages" / f"{name}.stage{rank}.csv", rows)
        del stage
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        dist.barrier()


def run_configs(target: str, quick: bool, table: dict) -> list[dict]:
    base = {"target": target, "prompt_tokens": 16 if quick else 128, "output_tokens": 8 if quick else 128,
            "target_profile": "h200-torch-graph-bf16", "draft_profile": "h200-torch-graph-bf16", "tp": 2,
            "interconnect": {"allreduce": table}}  # the session's own all-reduce table
    drafts = ["llama-68m"] if quick else ["llama-68m", "llama-160m"]
    return [base | {"mode": "autoregressive", "gamma": 0}] + [
        base | {"draft": d, "gamma": g, "mode": "oracle", "alpha": a}
        for d in drafts for g in ((2,) if quick else (2, 4, 8)) for a in (0.6, 0.9)]


def runs(rank: int, n: int, out_dir: Path, quick: bool, dev, dtype, table: dict) -> None:
    """Real runs with a TP-2 target, drafts on GPU 0 (rank 0), round-robin after an untimed round that
    captures every graph on both ranks in the same order (rank 1 follows rank 0's target steps):
    OUT/runs-tp2.jsonl in the measurement-file format."""
    from simulator.calibration.tensor_parallel import GroupTarget, ShardedLlama, follow

    _split_runs(rank, n, out_dir / "runs-tp2.jsonl", quick, dev, dtype, lambda target: run_configs(target, quick, table),
                ShardedLlama, GroupTarget, lambda ex: follow(ex))


def pipelined_runs(rank: int, n: int, out_dir: Path, quick: bool, dev, dtype, p2p: dict) -> None:
    """The same runs with the target split into n pipeline stages by layers instead, one a rank
    (pipeline_parallel.py), the draft beside stage 0: OUT/runs-pp2.jsonl, each run with pp and the
    stage link fitted to the session's sends (link_from_sends)."""
    from simulator.calibration.pipeline_parallel import StagedTarget, StageLlama, follow_stage, link_from_sends

    link = link_from_sends(p2p)

    def configs(target: str) -> list[dict]:
        return [{k: v for k, v in c.items() if k not in ("tp", "interconnect")} | {"pp": n, "stage_link": link}
                for c in run_configs(target, quick, {})]

    _split_runs(rank, n, out_dir / "runs-pp2.jsonl", quick, dev, dtype, configs, StageLlama,
                lambda ex: StagedTarget(ex, n), lambda ex: follow_stage(ex, rank, n))


def _split_runs(rank: int, n: int, path: Path, quick: bool, dev, dtype, configs_of, part, driver, follower) -> None:
    """Each target's configurations (configs_of(target)) with the target split over the ranks: every rank
    holds part(arch, rank, n, ...) in an executor; rank 0 drives it (driver(executor), with a close())
    and runs the decoding loops with the drafts beside it, writing `path`; the others run follower(executor)."""
    import torch

    from simulator import catalog
    from simulator.calibration import graphs, measure
    from simulator.calibration.llama import Llama

    mode = "graph" if dev.type == "cuda" else "eager"
    for target in (["llama-68m"] if quick else PRESETS):
        configs = configs_of(target)
        max_len = graphs.span(max(c["prompt_tokens"] + c["output_tokens"] + c["gamma"] for c in configs) + 2, 1 << 30)
        mine = graphs.executor(part(catalog.PRESETS[target], rank, n, max_batch=1, max_len=max_len, device=dev,
                                    dtype=dtype, seed=1), mode)
        if rank:
            follower(mine)
        else:
            split, drafts = driver(mine), {}

            def executor(name, where, kind, seed):
                if name == target:
                    return split
                if name not in drafts:
                    drafts[name] = graphs.executor(Llama(catalog.PRESETS[name], max_batch=1, max_len=max_len,
                                                         device=where, dtype=kind, seed=seed), mode)
                return drafts[name]

            prompts = [torch.randint(0, 32000, (1, c["prompt_tokens"]), generator=torch.Generator().manual_seed(i))
                       for i, c in enumerate(configs)]
            measure.round_robin(len(configs), 1 if quick else 3, 0, path, print,
                                lambda i, rnd: measure._one_run(configs[i], i, rnd, prompts[i], executor, dev, dev,
                                                                dtype, dtype, 0))
            split.close()
        del mine
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def _p2p(sizes_bytes, dtype, dev, rank, repeats) -> dict:
    """Median ms of a send from rank 0 to rank 1 of each size, timed on rank 1 from a barrier."""
    import statistics
    import time

    import torch
    import torch.distributed as dist

    ms = []
    itemsize = torch.empty((), dtype=dtype).element_size()
    for size in sizes_bytes:
        x = torch.ones(max(1, size // itemsize), dtype=dtype, device=dev)
        samples = []
        for _ in range(repeats + 2):
            dist.barrier()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            if rank == 0:
                dist.send(x, 1)
            else:
                dist.recv(x, 0)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            samples.append((time.perf_counter() - t0) * 1000)
        ms.append(statistics.median(samples[2:]))
    return {"bytes": list(sizes_bytes), "ms": ms}


def main() -> None:
    import multiprocessing as mp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--quick", action="store_true", help="a tiny model on a tiny grid (a check of the script)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    args = parser.parse_args()
    quick, device, out = args.quick, args.device, args.out
    out.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # NVLink multicast off, as the device README asks
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=rank_main, args=(r, 2, port, str(out), quick, device)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise SystemExit(f"a rank failed: exit codes {[p.exitcode for p in procs]}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
