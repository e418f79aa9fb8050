"""The measurement campaign behind the shipped measured profiles and docs/calibration.md.

Runs on the machine being measured and writes everything under OUT:
  python tools/device_campaign.py grid   OUT   # H100 profile grid (h100-sxm-torch-bf16)
  python tools/device_campaign.py runs   OUT   # real runs on the GPU (measurement file)
  python tools/device_campaign.py runs2  OUT   # the same matrix again, other seeds, step times kept
  python tools/device_campaign.py grid1  OUT   # batch 1 of the H100 grid again, 15 samples a point
  python tools/device_campaign.py edge   OUT   # host CPU at 2 and 8 threads: profiles and split runs
  python tools/device_campaign.py cpu    OUT [NAME]   # this project's 2-core machine: profile and runs
  python tools/device_campaign.py cpu-long OUT NAME    # the same, 3 passes of 6 samples a point, 5 rounds of runs
  python tools/device_campaign.py batch  OUT   # static batches of 1-32 sequences on the GPU (measurement file)

H200, forward passes replayed from CUDA graphs (the default on CUDA) and eager beside them:
  python tools/device_campaign.py smoke      OUT   # graph mode works here: same tokens as eager, costs per shape
  python tools/device_campaign.py h200-grid  OUT [MODEL,...]   # graph-mode profile (h200-torch-graph-bf16)
  python tools/device_campaign.py h200-eager OUT   # eager batch-1 profile of the same models, for comparison
  python tools/device_campaign.py h200-runs  OUT   # real runs, sessions a and b (other seeds), round-robin
  python tools/device_campaign.py h200-runs-c OUT  # session c: a configuration's repeats draw alike
  python tools/device_campaign.py h200-batch OUT   # static batches of 1-32 sequences, graph mode
  python tools/device_campaign.py h200-hf    OUT   # Hugging Face transformers: profile and assisted generation
  python tools/device_campaign.py h200-serving OUT # continuous batching: streams of requests, graph mode
  python tools/device_campaign.py h200-hf-b  OUT   # Hugging Face again: profile and runs of one session (seed 1)
  python tools/device_campaign.py h200-noise OUT   # the host: CPU steal, and eager/graph forwards over time
  python tools/device_campaign.py h200-hf-probe OUT  # Hugging Face's spread: plain generate, allocator kept or emptied
  python tools/device_campaign.py h200-hf-c  OUT   # Hugging Face runs again, every run from an emptied allocator
  python tools/device_campaign.py h200-hf-d  OUT   # Hugging Face runs and profile interleaved in one session
  python tools/device_campaign.py h200-hf-e  OUT   # the same, the process pinned to its fastest CPU
  python tools/device_campaign.py h200-hf-g  OUT   # session d's, with a host probe around every run
  python tools/device_campaign.py h200-hf-h  OUT   # the same again, other seeds
  python tools/device_campaign.py h200-hf-i  OUT   # session d's protocol over 8 rounds
  python tools/device_campaign.py h200-hf-j  OUT   # the same again, other seeds
  python tools/device_campaign.py cpu-probe OUT NAME  # this machine's CPU: cpu-long with a host probe around every run
  python tools/device_campaign.py h200-tp-check OUT  # whole models and their tensor-parallel shards, a small grid
  python tools/device_campaign.py h200-tp-grid OUT   # one GPU's share of llama2-7b and llama2-13b split 2 ways
  python tools/device_campaign.py h200-tp-grid2 OUT  # the same split 4 ways, and llama2-70b split 4 and 8 ways
  python tools/device_campaign.py h200-tp-grid3 OUT  # llama2-70b split 4 ways alone
  python tools/device_campaign.py h200-tp-grid4 OUT BATCHES  # llama2-70b split 2 ways, at BATCHES (1,2,4)
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

from simulator.calibration.measure import measure_profile, measure_runs

GPU_GRID = {"batches": [1, 2, 4, 8, 16, 32, 64], "queries": list(range(1, 17)) + [64, 256, 512],
            "contexts": [0, 256, 1024, 2048]}
EDGE_GRID = {"batches": [1], "queries": list(range(1, 10)) + [16, 128], "contexts": [0, 256, 512, 1024]}
GPU = "h100-sxm-torch-bf16"
H200 = "h200-torch-graph-bf16"
H200_EAGER = "h200-torch-eager-bf16"
H200_MODELS = ["llama-68m", "llama-160m", "tinyllama-1.1b", "llama2-7b", "llama2-13b"]
HF_GRID = {"batches": [1], "queries": list(range(1, 10)) + [16, 64, 128], "contexts": [0, 128, 256, 512]}
# what hf_runs forward: decode and verification queries, the merged prefill (prompt + k) and the contexts to 264
HF_SESSION_GRID = {"batches": [1], "queries": [1, 2, 3, 5, 9, 128, 144], "contexts": [0, 128, 256, 384]}
# one GPU's share of a tensor-parallel model (<preset>.tp<N>, no all-reduce): the grid issue 16's runs need
TP_GRID = {"batches": [1, 2, 4, 8, 16, 32], "queries": list(range(1, 17)) + [64, 256], "contexts": [0, 256, 1024, 2048]}
TP_CHECK_GRID = {"batches": [1, 8, 32], "queries": [1, 4, 16, 64], "contexts": [0, 1024, 2048]}
H200_GRID = {"batches": [1, 2, 4, 8, 16, 32, 64], "queries": list(range(1, 17)) + [64, 256, 512],
             "contexts": [0, 256, 1024, 2048]}


def gpu_runs(profile: str = GPU, small: bool = True) -> list[dict]:
    out = []
    for target in ("llama2-7b", "llama2-13b"):
        base = {"target": target, "prompt_tokens": 128, "output_tokens": 128, "target_profile": profile,
                "draft_profile": profile}
        out.append(base | {"mode": "autoregressive", "gamma": 0})
        for draft, gamma, (mode, alpha) in itertools.product(
                ("llama-68m", "llama-160m"), (2, 4, 8), (("oracle", 0.6), ("oracle", 0.9), ("greedy", None))):
            out.append(base | {"draft": draft, "gamma": gamma, "mode": mode, "alpha": alpha})
    if not small:
        return out
    small = {"target": "tinyllama-1.1b", "prompt_tokens": 256, "output_tokens": 128, "target_profile": profile,
             "draft_profile": profile}
    out.append(small | {"mode": "autoregressive", "gamma": 0})
    out += [small | {"draft": "llama-68m", "gamma": g, "mode": "oracle", "alpha": 0.8} for g in (1, 3, 5)]
    return out


def batch_runs(profile: str = GPU) -> list[dict]:
    """llama2-7b (llama-68m drafting) decoding 1-32 sequences together: autoregressive, and gamma 4 with
    every draft accepted (alpha 1) or none (alpha 0), so every row of the batch steps alike."""
    base = {"target": "llama2-7b", "prompt_tokens": 128, "output_tokens": 128, "target_profile": profile,
            "draft_profile": profile}
    out = []
    for b in (1, 2, 4, 8, 16, 32):
        out.append(base | {"batch": b, "mode": "autoregressive", "gamma": 0})
        out += [base | {"batch": b, "draft": "llama-68m", "gamma": 4, "mode": "oracle", "alpha": a} for a in (1.0, 0.0)]
    return out


def serving_streams(profile: str = H200) -> list[dict]:
    """Continuous batching of llama2-7b (llama-68m drafting) on the H200: 32 Poisson requests at 12, 36
    and 108 per second (light, busy, saturated), prompts of 128 tokens, outputs uniform in 32-128, up to
    16 running; without speculation, and gamma 2 and 4 at oracle alpha 0.6 and 0.9: 15 configurations."""
    base = {"target": "llama2-7b", "max_batch": 16, "step_tokens": 2048, "requests": 32, "prompt_tokens": 128,
            "output_low": 32, "output_high": 128, "target_profile": profile}
    out = []
    for rate in (12.0, 36.0, 108.0):
        out.append(base | {"rate_per_s": rate, "draft": None, "gamma": 0, "alpha": 0.0})
        out += [base | {"rate_per_s": rate, "draft": "llama-68m", "gamma": g, "alpha": a} for g in (2, 4) for a in (0.6, 0.9)]
    return out


def hf_runs(profile: str = "h200-hf-bf16") -> list[dict]:
    """Hugging Face assisted generation: llama2-7b, llama-68m or llama-160m drafting gamma 2, 4, 8 at
    oracle alpha 0.6 and 0.9, and plain decoding; prompt 128, output 128."""
    base = {"target": "llama2-7b", "prompt_tokens": 128, "output_tokens": 128, "target_profile": profile,
            "draft_profile": profile}
    return [base] + [base | {"draft": d, "gamma": g, "alpha": a}
                     for d in ("llama-68m", "llama-160m") for g in (2, 4, 8) for a in (0.6, 0.9)]


def edge_runs(threads: int) -> list[dict]:
    base = {"target": "llama2-7b", "prompt_tokens": 128, "output_tokens": 96, "target_profile": GPU,
            "draft_profile": f"cpu-host{threads}-torch-fp32"}
    return [base | {"draft": d, "gamma": g, "mode": m, "alpha": a}
            for d in ("llama-68m", "llama-160m") for g in (2, 4) for m, a in (("oracle", 0.8), ("greedy", None))]


def smoke(out: Path) -> None:
    """Graph mode on this GPU: the same greedy tokens as eager, and what a forward costs per mode."""
    import numpy as np
    import torch

    from simulator.calibration import graphs, runner
    from simulator.calibration.llama import Llama
    from simulator.catalog import PRESETS

    dev = torch.device("cuda")
    torch.backends.cuda.enable_cudnn_sdp(False)
    target = Llama(PRESETS["llama2-7b"], max_batch=64, max_len=2576, device=dev, dtype=torch.bfloat16, seed=1)
    draft = Llama(PRESETS["llama-68m"], max_batch=64, max_len=2576, device=dev, dtype=torch.bfloat16, seed=2)
    p = torch.randint(0, 32000, (1, 128), generator=torch.Generator().manual_seed(0))
    ref, t_eager = runner.autoregressive(target, p.to(dev), 64)
    gt, gd = graphs.Graphs(target), graphs.Graphs(draft)
    same, t_graph = runner.autoregressive(gt, p.to(dev), 64)
    _, t_graph = runner.autoregressive(gt, p.to(dev), 64)
    print(f"autoregressive 64 tokens: graph tokens equal eager: {same == ref} "
          f"({sum(a == b for a, b in zip(same, ref))}/64); eager {t_eager:.3f} s, graph {t_graph:.3f} s")
    for g in (2, 4, 8):
        toks, acc, secs = runner.speculative(gt, gd, p, 64, g)
        print(f"greedy gamma {g}: equal to target's greedy output: {toks == same}; mean accepted {np.mean(acc):.2f}; "
              f"{secs:.3f} s; graphs {gt.captures} + {gd.captures}")
    from simulator.calibration.measure import time_forward, time_replays

    for b, q, c in ((1, 1, 512), (1, 9, 512), (16, 1, 512), (64, 1, 2048), (64, 16, 1024), (16, 512, 0),
                    (64, 512, 0)):
        t0 = time.perf_counter()
        gt.prepare(b, q, c + q)
        cap = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = np.array(time_replays(gt, b, q, c, 5, 0.0)) * 1000
        rep = time.perf_counter() - t0
        e = np.array(time_forward(target, b, q, c, 5, 0.0)) * 1000
        print(f"llama2-7b b={b} q={q} c={c}: capture {cap * 1000:.0f} ms; replay median {np.median(r):.3f} ms "
              f"(spread {np.ptp(r) / np.median(r):.1%}, 5 in {rep * 1000:.0f} ms); eager {np.median(e):.3f} ms")
        gt.drop()
    print(torch.cuda.get_device_name(0), f"{torch.cuda.max_memory_allocated() / 1e9:.1f} GB peak")


def noise(out: Path) -> None:
    """What the host does to host-bound work: CPU time stolen by the hypervisor over the probe, and
    llama2-7b decode forwards (query 1, context 256) eager and replayed from a graph, alternating in
    rounds of 20 calls for about 20 s; one line per round into OUT/noise.csv."""
    import numpy as np
    import torch

    from simulator.calibration import graphs
    from simulator.calibration.llama import Llama
    from simulator.calibration.measure import setup, time_forward, time_replays
    from simulator.catalog import PRESETS

    def steal() -> tuple[int, int]:
        f = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return f[7], sum(f)

    dev, dtype = setup("cuda", None)
    model = Llama(PRESETS["llama2-7b"], max_batch=1, max_len=512, device=dev, dtype=dtype, seed=1)
    g = graphs.Graphs(model)
    g.prepare(1, 1, 257)
    rows = []
    s0, t0, start = *steal(), time.perf_counter()
    for rnd in range(40):
        if time.perf_counter() - start > 20:
            break
        e = np.median(time_forward(model, 1, 1, 256, 20, 0.0)) * 1000
        r = np.median(time_replays(g, 1, 1, 256, 20, 0.0)) * 1000
        s1, t1 = steal()
        rows.append((round(time.perf_counter() - start, 3), round(e, 3), round(r, 3),
                     round((s1 - s0) / max(t1 - t0, 1), 4)))
        s0, t0 = s1, t1
    (out / "noise.csv").write_text("t_s,eager_ms,graph_ms,steal_share\n" + "".join(",".join(map(str, x)) + "\n" for x in rows))
    e, r = np.array([x[1] for x in rows]), np.array([x[2] for x in rows])
    print(f"{len(rows)} rounds, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}: eager median {np.median(e):.2f} ms "
          f"(rounds {e.min():.2f}-{e.max():.2f}), graph {np.median(r):.3f} ms ({r.min():.3f}-{r.max():.3f}); "
          f"CPU steal {np.median([x[3] for x in rows]):.1%} median, {max(x[3] for x in rows):.1%} max")


def hf_probe(out: Path) -> None:
    """Why Hugging Face runs spread: llama2-7b plain generate (128 after 128) four times with the
    allocator as the run before left it (an assisted run of llama-68m, gamma 8, in between) and
    four times from an emptied allocator, alternating; tokens/s and per-step percentiles of each."""
    import gc

    import numpy as np
    import torch

    from simulator.calibration import hf
    from simulator.calibration.measure import setup

    dev, dtype = setup("cuda", None)
    target, draft = hf.build("llama2-7b", dev, dtype, 1), hf.build("llama-68m", dev, dtype, 2)
    prompt = torch.randint(0, 32000, (1, 128), generator=torch.Generator().manual_seed(0)).to(dev)
    hf.plain(target, prompt, 128)
    rows, rates = [], {"kept": [], "emptied": []}
    for i in range(8):
        how = "kept" if i % 2 == 0 else "emptied"
        hf.assisted(target, draft, prompt, 128, 8, 0.6, seed=i)
        gc.collect()
        if how == "emptied":
            torch.cuda.empty_cache()
        gc.disable()
        try:
            res = hf.plain(target, prompt, 128)
        finally:
            gc.enable()
        steps = np.diff([0.0] + res["step_end_s"]) * 1000
        p = np.percentile(steps[1:], [10, 50, 90])
        rates[how].append(res["tokens_per_s"])
        rows.append(f"{i},{how},{res['tokens_per_s']:.2f},{p[0]:.2f},{p[1]:.2f},{p[2]:.2f}")
    (out / "hf-probe.csv").write_text("i,allocator,tokens_per_s,step_ms_p10,step_ms_p50,step_ms_p90\n" +
                                      "\n".join(rows) + "\n")
    for how, v in rates.items():
        print(f"{how}: tokens/s median {np.median(v):.1f}, {min(v):.1f}-{max(v):.1f} "
              f"(spread {np.ptp(v) / np.median(v):.1%})")


def hf_why(out: Path) -> None:
    """Why Hugging Face's profile is slower than its own decoding steps: llama2-7b at context 128,
    query 1, timed five ways, interleaved over 6 rounds of 16 samples: the profile's timer
    (hf.time_forward: synchronised, cache cropped back, collector off), the same with the collector
    on, the same with the attention mask and positions that generate passes, 16 decode forwards in a
    row with the cache growing (synchronised each), and plain generate's own steps (32 tokens)."""
    import gc

    import numpy as np
    import torch
    import transformers

    from simulator.calibration import hf
    from simulator.calibration.measure import setup

    dev, dtype = setup("cuda", None)
    m = hf.build("llama2-7b", dev, dtype, 1)
    prompt = torch.randint(0, 32000, (1, 128), generator=torch.Generator().manual_seed(0)).to(dev)
    tok = torch.full((1, 1), 5, device=dev)

    @torch.inference_mode()
    def manual(collector: bool, masked: bool, grow: bool) -> list[float]:
        cache = transformers.DynamicCache(config=m.config)
        m(input_ids=prompt, past_key_values=cache, use_cache=True, logits_to_keep=1)
        times = []
        (gc.enable if collector else gc.disable)()
        try:
            for i in range(18):
                n = cache.get_seq_length()
                kw = ({"attention_mask": torch.ones((1, n + 1), dtype=torch.long, device=dev),
                       "position_ids": torch.tensor([[n]], device=dev),
                       "cache_position": torch.tensor([n], device=dev)} if masked else {})
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                m(input_ids=tok, past_key_values=cache, use_cache=True, logits_to_keep=1, **kw)
                torch.cuda.synchronize()
                if i >= 2:
                    times.append(time.perf_counter() - t0)
                if not grow:
                    cache.crop(-1)
        finally:
            gc.enable()
        return times

    def generate_steps() -> list[float]:
        gc.disable()
        try:
            res = hf.plain(m, prompt, 34)
        finally:
            gc.enable()
        return list(np.diff(res["step_end_s"])[1:])

    ways = {"profile timer": lambda: hf.time_forward(m, 1, 1, 128, 16, logits_to_keep=1),
            "collector on": lambda: manual(True, False, False),
            "collector off": lambda: manual(False, False, False),
            "mask and positions": lambda: manual(False, True, False),
            "decode in a row": lambda: manual(False, True, True),
            "generate steps": generate_steps}
    for f in ways.values():
        f()
    rng, rows, got = np.random.default_rng(0), [], {k: [] for k in ways}
    for rnd in range(6):
        for k in rng.permutation(len(ways)):
            name = list(ways)[k]
            ms = float(np.median(ways[name]())) * 1000
            got[name].append(ms)
            rows.append(f"{rnd},{name},{ms:.3f}")
    (out / "hf-why.csv").write_text("round,way,median_ms\n" + "\n".join(rows) + "\n")
    for name, v in got.items():
        print(f"{name}: median {np.median(v):.2f} ms, rounds {min(v):.2f}-{max(v):.2f}")


def hf_d(out: Path) -> None:
    """Session d: Hugging Face runs and their profile measured in one session, interleaved
    (hf_session.measure), 4 rounds on the grid points its runs use; hf_why first."""
    from simulator.calibration import hf_session

    hf_why(out)
    hf_session.measure(hf_runs("h200-hf-d-bf16"), HF_SESSION_GRID, out, "h200-hf-d-bf16", rounds=4, samples=3, seed=3)


def hf_noise(out: Path, seconds: float = 100.0) -> None:
    """Is the Hugging Face forward's slow state the host's or the engine's? Rounds for `seconds`,
    each timing in a shuffled order: a pure-Python loop (best of 5), this project's eager llama2-7b
    decode forward (query 1, context 128, median of 10), transformers' forward of the same shape
    with a DynamicCache (median of 10; CUDA allocator segments created counted; a StaticCache forward
    interleaved with generate failed in cuBLAS on the H200 and is left out) and a plain generate of
    32 tokens (median step); beside each, the CPU it ended on. One line per way per round into OUT/hf-noise.csv."""
    import numpy as np
    import torch
    from simulator.calibration import hf
    from simulator.calibration.llama import Llama
    from simulator.calibration.measure import setup, time_forward
    from simulator.catalog import PRESETS

    def cpu() -> int:
        return int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[36])

    def steal() -> tuple[int, int]:
        f = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return f[7], sum(f)

    dev, dtype = setup("cuda", None)
    own = Llama(PRESETS["llama2-7b"], max_batch=1, max_len=512, device=dev, dtype=dtype, seed=1)
    model = hf.build("llama2-7b", dev, dtype, seed=1)
    ids = torch.randint(0, 32000, (1, 128), device=dev)

    def segments() -> int:
        return torch.cuda.memory_stats().get("segment.all.allocated", 0)

    def loop() -> float:
        best = 1e9
        for _ in range(5):
            t0 = time.perf_counter()
            sum(i * i for i in range(100_000))
            best = min(best, time.perf_counter() - t0)
        return best

    def generate() -> float:
        res = hf.plain(model, ids, 32)
        return float(np.median(np.diff(res["step_end_s"][1:])))

    ways = {"python loop": loop,
            "own eager": lambda: float(np.median(time_forward(own, 1, 1, 128, 10, 0.0, 10))),
            "hf dynamic": lambda: float(np.median(hf.time_forward(model, 1, 1, 128, 10, logits_to_keep=1))),
            "hf generate": generate}
    for f in ways.values():  # untimed
        f()
    rng = np.random.default_rng(5)
    rows, start = ["round,t_s,way,ms,cpu_before,cpu_after,new_segments,steal_share"], time.perf_counter()
    rnd = 0
    while time.perf_counter() - start < seconds:
        for name in rng.permutation(list(ways)):
            s0, t0 = steal()
            c0, g0 = cpu(), segments()
            if rnd == 0:
                print(f"first {name}", flush=True)
            ms = ways[name]() * 1000
            s1, t1 = steal()
            rows.append(f"{rnd},{time.perf_counter() - start:.2f},{name},{ms:.3f},{c0},{cpu()},{segments() - g0},"
                        f"{(s1 - s0) / max(t1 - t0, 1):.4f}")
        rnd += 1
    (out / "hf-noise.csv").write_text("\n".join(rows) + "\n")
    table = {}
    for line in rows[1:]:
        r, _, name, ms, *_ = line.split(",")
        table.setdefault(name, []).append(float(ms))
    for name, v in table.items():
        v = np.array(v)
        print(f"{name}: {len(v)} rounds, median {np.median(v):.2f} ms, p10 {np.percentile(v, 10):.2f}, "
              f"p90 {np.percentile(v, 90):.2f}, max {v.max():.2f}")
    names = list(table)
    m = np.array([table[n] for n in names])
    c = np.corrcoef(m / np.median(m, axis=1, keepdims=True))
    print("correlation of round medians: " + "; ".join(f"{a} ~ {b} {c[i, j]:+.2f}" for i, a in enumerate(names)
                                                         for j, b in enumerate(names) if j > i))


def hf_g(out: Path, name: str = "h200-hf-g-bf16", seed: int = 7, rounds: int = 4, probes: bool = True) -> None:
    """Session g: session d's protocol (4 rounds) with every run bracketed by host probes
    (measure.host_probe: the target's and the draft's decode forward right before and right after
    it), so that a run can be scaled to the profile's host speed (`calibrate compare --host-speed`).
    Session h: the same again with other seeds, to check one session's fit on the other's runs.
    Session f (before g): 9 rounds and no probes, so that every configuration and every profile point
    has repeats enough for a best-of-repeats figure beside the median. Sessions i and j: session d's protocol with 8 timed rounds and no probes (more repeats of every
    configuration and every profile point, measured in the same minutes), j with other seeds."""
    from simulator.calibration import hf_session

    hf_session.measure(hf_runs(name), HF_SESSION_GRID, out, name, rounds=rounds, samples=3, seed=seed, probes=probes)


def fastest_cpu(log=print) -> int:
    """The CPU this process runs a fixed pure-Python loop fastest on (pinned to each in turn, two
    passes, the better of each pass's best of 5); every CPU's time is logged."""
    cpus = sorted(os.sched_getaffinity(0))
    best: dict[int, list[float]] = {c: [] for c in cpus}
    for _ in range(2):
        for c in cpus:
            os.sched_setaffinity(0, {c})
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                sum(i * i for i in range(100_000))
                times.append(time.perf_counter() - t0)
            best[c].append(min(times))
    os.sched_setaffinity(0, set(cpus))
    log("cpu loop ms (pass 1, pass 2): " + ", ".join(f"{c}: {v[0] * 1e3:.2f}/{v[1] * 1e3:.2f}" for c, v in best.items()))
    return min(cpus, key=lambda c: max(best[c]))


def hf_e(out: Path) -> None:
    """Session e: session d's protocol with the whole process pinned to one CPU (the fastest of a
    pure-Python loop), so the host-bound engine cannot move between cores; hf_why first."""
    from simulator.calibration import hf_session

    cpu = fastest_cpu()
    os.sched_setaffinity(0, {cpu})
    print(f"pinned to CPU {cpu}")
    hf_why(out)
    hf_session.measure(hf_runs("h200-hf-e-bf16"), HF_SESSION_GRID, out, "h200-hf-e-bf16", rounds=4, samples=3, seed=4,
                       note=f"the process pinned to CPU {cpu} (the fastest of a pure-Python loop)")


def main() -> None:
    what, out = sys.argv[1], Path(sys.argv[2])
    t0 = time.perf_counter()
    if what == "grid":
        measure_profile(["llama-68m", "llama-160m", "tinyllama-1.1b", "llama2-7b", "llama2-13b"], out / GPU,
                        device="cuda", grid=GPU_GRID, min_samples=5, min_s=0.03)
    elif what == "runs":
        measure_runs(gpu_runs(), out / "runs-h100.jsonl", device="cuda", repeats=3)
    elif what == "runs2":  # a second, independent set: the held-out check of a fit made on the first
        measure_runs(gpu_runs()[:-4], out / "runs-h100-b.jsonl", device="cuda", repeats=3, seed=1)
    elif what == "grid1":  # batch 1 again with three times the samples: how noisy is the grid itself?
        measure_profile(["llama-68m", "llama-160m", "tinyllama-1.1b", "llama2-7b", "llama2-13b"], out / f"{GPU}-b1",
                        device="cuda",
                        grid=GPU_GRID | {"batches": [1]}, min_samples=15, min_s=0.1)
    elif what == "edge":
        for threads in (2, 8):
            measure_profile(["llama-68m", "llama-160m"], out / f"cpu-host{threads}-torch-fp32", device="cpu",
                            threads=threads, grid=EDGE_GRID, min_samples=3, min_s=0.05)
            measure_runs(edge_runs(threads), out / "runs-edge.jsonl", device="cuda", threads=threads,
                         draft_device="cpu", repeats=2)
    elif what == "batch":
        measure_runs(batch_runs(), out / "runs-h100-batch.jsonl", device="cuda", repeats=3)
    elif what in ("cpu", "cpu-long", "cpu-probe"):  # OUT [NAME]: the profile's name (cpu-2core-torch-fp32 was an AMD EPYC)
        name = sys.argv[3] if len(sys.argv) > 3 else "cpu-2core-torch-fp32"
        long = what != "cpu"  # cpu-probe: cpu-long's protocol with a host probe around every run
        measure_profile(["llama-68m", "llama-160m"], out / name, device="cpu", grid=EDGE_GRID,
                        min_samples=6 if long else 3, min_s=0.1 if long else 0.05, passes=3 if long else 2)
        runs = [{"target": "llama-160m", "prompt_tokens": 64, "output_tokens": 48, "target_profile": name,
                 "draft_profile": name} | extra
                for extra in ({"mode": "autoregressive", "gamma": 0},
                              *({"draft": "llama-68m", "gamma": g, "mode": m, "alpha": a}
                                for g in (1, 2, 4) for m, a in (("oracle", 0.5), ("oracle", 0.9), ("greedy", None))))]
        measure_runs(runs, out / "runs-cpu2.jsonl", device="cpu", repeats=5 if long else 3, probes=what == "cpu-probe")
    elif what == "smoke":
        smoke(out)
    elif what == "h200-grid":
        models = sys.argv[3].split(",") if len(sys.argv) > 3 else H200_MODELS
        batches = [int(b) for b in sys.argv[4].split(",")] if len(sys.argv) > 4 else H200_GRID["batches"]
        measure_profile(models, out / H200, device="cuda", grid=H200_GRID | {"batches": batches}, min_samples=6, min_s=0.02, passes=2,
                        max_tokens=8192)
    elif what == "h200-eager":
        measure_profile(["llama-68m", "llama-160m", "llama2-7b"], out / H200_EAGER, device="cuda",
                        grid=H200_GRID | {"batches": [1]}, min_samples=10, min_s=0.1, mode="eager", passes=2)
    elif what == "h200-runs":  # session a, then session b with other seeds: fit on one, check on the other
        measure_runs(gpu_runs(H200, False), out / "runs-h200-graph-a.jsonl", device="cuda", repeats=3, seed=0)
        measure_runs(gpu_runs(H200, False), out / "runs-h200-graph-b.jsonl", device="cuda", repeats=3, seed=1)
    elif what == "h200-runs-c":  # every repeat of a configuration draws the same acceptance: its spread is the machine's
        measure_runs(gpu_runs(H200, False), out / "runs-h200-graph-c.jsonl", device="cuda", repeats=3, seed=2)
    elif what == "h200-hf":
        measure_profile(["llama-68m", "llama-160m", "llama2-7b"], out / "h200-hf-bf16", device="cuda", grid=HF_GRID,
                        min_samples=8, min_s=0.05, passes=2, engine="hf")
        from simulator.calibration import hf

        hf.measure_runs(hf_runs(), out / "runs-h200-hf.jsonl", device="cuda", repeats=3)
    elif what == "h200-hf-b":  # a second session: its profile and its runs measured together, other seed
        measure_profile(["llama-68m", "llama-160m", "llama2-7b"], out / "h200-hf-b-bf16", device="cuda", grid=HF_GRID,
                        min_samples=8, min_s=0.05, passes=2, engine="hf")
        from simulator.calibration import hf

        hf.measure_runs(hf_runs("h200-hf-b-bf16"), out / "runs-h200-hf-b.jsonl", device="cuda", repeats=3, seed=1)
    elif what == "h200-hf-probe":
        hf_probe(out)
    elif what == "h200-hf-c":  # runs only, on session b's profile, each from an emptied allocator
        from simulator.calibration import hf

        hf.measure_runs(hf_runs("h200-hf-b-bf16"), out / "runs-h200-hf-c.jsonl", device="cuda", repeats=3, seed=2,
                        empty_cache=True)
    elif what == "h200-hf-d":
        hf_d(out)
    elif what == "h200-hf-e":
        hf_e(out)
    elif what == "h200-noise":
        noise(out)
    elif what == "h200-hf-f":
        hf_g(out, "h200-hf-f-bf16", seed=5, rounds=9, probes=False)
    elif what == "h200-hf-g":
        hf_g(out)
    elif what == "h200-hf-h":
        hf_g(out, "h200-hf-h-bf16", seed=9)
    elif what == "h200-hf-i":
        hf_g(out, "h200-hf-i-bf16", seed=11, rounds=8, probes=False)
    elif what == "h200-hf-j":
        hf_g(out, "h200-hf-j-bf16", seed=13, rounds=8, probes=False)
    elif what == "h200-hf-noise":
        hf_noise(out)
    elif what == "h200-serving":
        from simulator.calibration import serving

        serving.measure(serving_streams(), out / "runs-h200-serving.jsonl", device="cuda", repeats=3)
    elif what == "cpu-hf":  # Hugging Face on this project's 2-core CPU, one thread: a small check of the loop model
        import torch

        torch.set_num_threads(1)
        name = "cpu-1thread-hf-fp32"
        grid = {"batches": [1], "queries": list(range(1, 6)) + [8, 24, 28], "contexts": [0, 24, 48, 64]}
        measure_profile(["llama-68m", "llama-160m"], out / name, device="cpu", threads=1, grid=grid, min_samples=6,
                        min_s=0.05, passes=2, engine="hf")
        from simulator.calibration import hf

        base = {"target": "llama-160m", "prompt_tokens": 24, "output_tokens": 32, "target_profile": name,
                "draft_profile": name}
        configs = [base] + [base | {"draft": "llama-68m", "gamma": g, "alpha": a} for g in (1, 2, 4) for a in (0.5, 0.9)]
        hf.measure_runs(configs, out / "runs-cpu-hf.jsonl", device="cpu", repeats=3)
    elif what == "h200-tp-check":  # the same session's whole model beside its shards: how a share scales
        measure_profile(["llama2-7b", "llama2-7b.tp2", "llama2-7b.tp4", "llama2-13b", "llama2-13b.tp2", "llama2-13b.tp4"],
                        out / "h200-torch-graph-tp-check-bf16", device="cuda", grid=TP_CHECK_GRID, min_samples=6,
                        min_s=0.02, passes=2)
    elif what == "h200-tp-grid":
        measure_profile(["llama2-7b.tp2", "llama2-13b.tp2"], out / "h200-torch-graph-tp-bf16", device="cuda",
                        grid=TP_GRID, min_samples=6, min_s=0.02, passes=2, max_tokens=8192)
    elif what == "h200-tp-grid2":
        measure_profile(["llama2-7b.tp4", "llama2-13b.tp4", "llama2-70b.tp8", "llama2-70b.tp4"],
                        out / "h200-torch-graph-tp-bf16", device="cuda", grid=TP_GRID, min_samples=6, min_s=0.02,
                        passes=2, max_tokens=8192)
    elif what == "h200-tp-grid3":  # llama2-70b split 4 ways alone: it did not fit in tp-grid2's ten minutes
        measure_profile(["llama2-70b.tp4"], out / "h200-torch-graph-tp-bf16", device="cuda", grid=TP_GRID,
                        min_samples=6, min_s=0.02, passes=2, max_tokens=8192)
    elif what == "h200-tp-grid4":  # OUT BATCHES: llama2-70b split 2 ways (70 GB a GPU), some batches per call
        batches = [int(b) for b in sys.argv[3].split(",")]
        measure_profile(["llama2-70b.tp2"], out / "h200-torch-graph-tp-bf16", device="cuda",
                        grid=TP_GRID | {"batches": batches}, min_samples=6, min_s=0.02, passes=2, max_tokens=8192)
    elif what == "h200-batch":
        measure_runs(batch_runs(H200), out / "runs-h200-graph-batch.jsonl", device="cuda", repeats=3)
    else:
        raise SystemExit(__doc__)
    print(f"{what}: done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
