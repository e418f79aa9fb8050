"""Side by side with Vidur: the same autoregressive serving workload in specsim and in Vidur 0.0.26.

Run (from the repository root, with specsim's environment active):

    python benchmarks/bench_vidur.py                       # 1,000 and 4,000 requests, 3 repeats
    python benchmarks/bench_vidur.py --requests 1000 4000 16000 --repeats 3 --out results.json

Vidur (PyPI vidur==0.0.26, the LLM serving simulator of Agrawal et al., MLSys 2024) is never a
dependency of this project: the script creates its own virtual environment outside the
repository (--vidur-venv, default ~/.cache/specsim-bench/vidur-venv; `python3 -m venv` and
`pip install vidur==0.0.26`, reused when present) and runs it through the offline kit in
../shared/peers/vidur (--vidur-kit): run_vidur.sh with Vidur's own published A100 MLP and
network profiles and an approximate attention table (see the kit's README), writing
everything under --work (default ~/.cache/specsim-bench/runs). The first Vidur run trains and
caches Vidur's random-forest predictors there; that run is timed apart as a warm-up.

The workload
------------
Llama-2-7B, one A100 80GB replica (tensor and pipeline parallelism 1), Poisson arrivals at
--qps 1.5, N requests with ShareGPT lengths. Vidur 0.0.26 turns the length file
(sharegpt_8k_filtered_stats_llama2_tokenizer.csv, 30,731 rows of num_prefill_tokens and
num_decode_tokens) into requests in its TraceRequestLengthGenerator and
SyntheticRequestGenerator:

1. prefill and decode counts are multiplied by their scale factors (1 and 1) and truncated
   to integers;
2. a row of more than max_tokens = 4,096 tokens (26% of the rows) loses its excess
   proportionally: prefill -= ceil(excess x prefill / total), decode -= ceil(excess x
   decode / total), each then clipped to at least 1;
3. the rows are shuffled with pandas `sample(frac=1, random_state=42)` (the length
   generator's seed) and taken in that order, the first N;
4. arrivals: after `random.seed(42)`, each gap is min(-ln(1 - random.random()) / qps, 3 / qps)
   (Vidur clips Poisson gaps at three mean gaps), arrival = running sum of the gaps.

The num_decode_tokens of a request are all its output tokens, the first of them made by
the prefill, as in specsim. Rather than trusting this reading of Vidur's code, the script
takes the requests Vidur actually simulated from its output (request_metrics.csv: lengths
by request id; plots/request_arrival_time_series.csv: arrival times) and writes them as a
specsim arrival trace (arrival_s, prompt_tokens, output_tokens), so both simulators serve
identical requests. It then checks the four rules above against that output (in Vidur's
environment, which has pandas) and reports whether they reproduce it exactly.

The scheduler
-------------
Vidur 0.0.26's default replica scheduler is `mnemosyne_fcfs_fixed_chunk`: a batch holds at
most batch_size_cap = 128 requests; each step takes the running decodes first (one token
each), then fills up to chunk_size = 512 tokens with prompt chunks, partly prefilled prompts
first, then new ones by arrival (Sarathi-style chunked prefill); KV memory is allocated in
16-token blocks, the prompt's blocks on admission and one block at a time while decoding,
and when none is left the newest running request is restarted (recomputed). One batch is in
flight at a time. scenarios/vidur-llama2-7b-a100.yaml sets specsim's `batched` strategy to
match: max_batch 128, prefill chunked, step_tokens 512, preemption recompute, and
memory_gb 75.14 so that its KV capacity is Vidur's 7,350 usable blocks (117,600 tokens). What
cannot match exactly:

- Vidur admits a request when its first chunk is scheduled and may skip up to ten queued
  requests that do not fit; specsim admits between steps into free slots, strictly first come
  first served. Memory never runs short at this load (no restarts, no preemptions in either),
  so this does not change these runs.
- Vidur rounds memory to 16-token blocks and keeps a 1% watermark; specsim counts tokens.
- Vidur calls a scheduled request with one query token a decode (also a 1-token prompt chunk).

Where the predictions differ, and why
-------------------------------------
Throughput is set by the arrivals (1.5 requests/s x 405 tokens), so both give the same
tokens/s; it says nothing about the latency models. TTFT and TPOT do. The GPU is busy
almost all the time in both simulators (some request is always decoding), so a slower step
also means larger batches and more queueing; latency differences grow faster than the step
time differences.

- Step time. Vidur sums per-layer kernel times (random forests fitted to profiled A100
  kernels: its real MLP and norm tables, an approximate attention table in this kit, mostly
  within +-10% of the real one) times 32 layers, looked up on a grid (context rounded up to
  256 tokens, decode attention at the batch's mean context plus 10% when batch > 1); it counts
  no kernel launch, host, embedding, LM-head or sampling time. specsim's a100-80gb-derived
  profile is a roofline from datasheet numbers (312 TFLOP/s at 60%, 2,039 GB/s at 75%) over the
  whole forward pass, LM head included, plus PyTorch-eager overheads (16 kernels x 32 layers
  x 5 us launch, 0.5 ms per forward): about 3 ms a step that Vidur does not have. A decode step
  of 8-16 requests takes about 16 ms in Vidur and 19 ms in specsim; the table's "decode-only
  step" rows show the medians of each run.
- The column "specsim, kernel-time roofline" reruns specsim with the same roofline but no
  launch or per-forward overhead (what Vidur's model counts): its TTFT then comes within
  about 2% of Vidur's and its TPOT within about 10%; what remains is the roofline's
  efficiency factors against measured kernels, and the attention approximations of both.
- Mixed steps: Vidur costs the linear layers once at the batch's total query tokens and each
  prompt chunk's attention apart; specsim costs the decode forward plus each prompt piece's
  forward less one empty forward (weights read once). Both are one pass over the weights.
- TPOT: specsim's (finish - first token) / (output tokens - 1) is computed from Vidur's
  request_e2e_time and prefill_e2e_time (= TTFT, first token time - arrival) for both; Vidur's
  own decode_time_execution_plus_preemption_normalized divides by all output tokens and is
  kept in the JSON.

Timing
------
Vidur: `event_loop_s` (its simulation proper, from the kit's phases.json: Simulator.run up to
writing outputs) and the whole Python process (/usr/bin/time, import, predictor loading,
writing its metrics). specsim: `sim.wall_s` (engine.simulate(), the simulation proper) and the
whole `specsim run --json --out` process, also under /usr/bin/time. Runs alternate between
the two simulators; medians and min-max over --repeats. On a shared machine the figures move
with its load: compare the ratios of one session, and rerun before quoting. Measured figures
and the command behind them: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "scenarios" / "vidur-llama2-7b-a100.yaml"
CACHE = Path.home() / ".cache" / "specsim-bench"
VIDUR_VERSION = "0.0.26"
LENGTH_FILE = "sharegpt_8k_filtered_stats_llama2_tokenizer.csv"
# the same roofline as hardware_profiles/a100-80gb-derived without launch and per-forward overheads
KERNEL_ROOFLINE = ("{kind: roofline, peak_tflops: 312, memory_bandwidth_gbps: 2039, compute_efficiency: 0.6, "
                   "memory_efficiency: 0.75, launch_overhead_us: 0, kernels_per_layer: 16, fixed_overhead_ms: 0}")
CHROME_TRACE_MAX = 4000  # above this many requests Vidur's chrome trace (15 MB per 1,000) is turned off

# Vidur's request generation rules, run in Vidur's environment (pandas) and compared with its output.
CHECK_RULES = r"""
import math, random, sys, json
import numpy as np, pandas as pd
trace, n, qps, seed = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), 42
df = pd.read_csv(trace)
p, d = df.num_prefill_tokens.astype(int), df.num_decode_tokens.astype(int)
total = p + d
excess = (total - 4096).clip(lower=0)
p = (p - np.ceil(excess * (p / total)).astype(int)).clip(lower=1)
d = (d - np.ceil(excess * (d / total)).astype(int)).clip(lower=1)
rows = pd.DataFrame({"p": p, "d": d}).sample(frac=1, random_state=seed).iloc[:n]
random.seed(seed)
t, arrivals = 0.0, []
for _ in range(n):
    t += min(-math.log(1.0 - random.random()) / qps, 3.0 / qps)
    arrivals.append(t)
json.dump({"prompt": rows.p.tolist(), "output": rows.d.tolist(), "arrival": arrivals}, sys.stdout)
"""


# ---------------------------------------------------------------- small helpers


def median_range(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def stats(values: np.ndarray) -> dict:
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def read_columns(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) if r[k] != "" else math.nan for r in rows]) for k in rows[0]}


def timed(cmd: list[str], time_file: Path, **kw) -> subprocess.CompletedProcess:
    """Run under /usr/bin/time; the file gets elapsed seconds and peak RSS (KiB)."""
    return subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", str(time_file)] + cmd, check=False, **kw)


def read_time(time_file: Path) -> tuple[float, float]:
    elapsed, rss = time_file.read_text().split()[-2:]
    return float(elapsed), float(rss) / 1024


def outside_repo(path: Path, flag: str) -> Path:
    path = path.expanduser().resolve()
    if path == REPO or REPO in path.parents:
        sys.exit(f"{flag} must be outside the repository ({REPO}): {path}")
    return path


# ---------------------------------------------------------------- Vidur


def ensure_vidur(venv: Path) -> float | None:
    """Create Vidur's environment if missing; seconds it took, or None if it was there."""
    python = venv / "bin" / "python"
    took = None
    if not python.exists():
        print(f"creating {venv} and installing vidur=={VIDUR_VERSION} (about a minute)", flush=True)
        t0 = time.perf_counter()
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"vidur=={VIDUR_VERSION}"], check=True)
        took = time.perf_counter() - t0
    version = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('vidur'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    if version != VIDUR_VERSION:
        sys.exit(f"{venv} has vidur {version}, not {VIDUR_VERSION}; point --vidur-venv at another folder")
    return took


def run_vidur(kit: Path, venv: Path, out: Path, n: int, qps: float) -> dict:
    if out.exists():
        shutil.rmtree(out)
    extra = [] if n <= CHROME_TRACE_MAX else ["--no-metrics_config_enable_chrome_trace"]
    proc = subprocess.run(["bash", str(kit / "run_vidur.sh"), str(venv), str(out), str(n), str(qps)] + extra,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        err = (out / "stderr.txt").read_text()[-3000:] if (out / "stderr.txt").exists() else proc.stderr
        sys.exit(f"Vidur failed ({n} requests):\n{err}")
    phases = json.loads((out / "phases.json").read_text())
    timing = (out / "time.txt").read_text()
    clock = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", timing).group(1)
    whole = sum(float(x) * 60 ** i for i, x in enumerate(reversed(clock.split(":"))))
    rss = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", timing).group(1)) / 1024
    return {"event_loop_s": phases["event_loop_s"], "whole_s": whole, "peak_rss_mb": rss, "phases": phases,
            "output": next((out / "simulator_output").iterdir())}


def vidur_requests(output: Path) -> dict[str, np.ndarray]:
    m = read_columns(output / "request_metrics.csv")
    order = np.argsort(m["Request Id"])
    m = {k: v[order] for k, v in m.items()}
    arrival = read_columns(output / "plots" / "request_arrival_time_series.csv")["Time (sec)"]
    if arrival.size != order.size or not np.allclose(np.diff(arrival), m["request_inter_arrival_delay"][1:]):
        sys.exit(f"{output}: arrival series and request metrics disagree")
    return {"arrival": arrival, "prompt": m["request_num_prefill_tokens"].astype(int),
            "output": m["request_num_decode_tokens"].astype(int), "e2e": m["request_e2e_time"],
            "ttft": m["prefill_e2e_time"], "restarts": m["request_num_restarts"],
            "decode_normalized": m["decode_time_execution_plus_preemption_normalized"]}


BATCH_RE = re.compile(r'"ph": "X", "ts": [^,]+, "dur": ([^,]+), [^{]*\{"batch_id": \d+, "batch_size": (\d+), '
                      r'"request_ids": \[[^\]]*\], "num_q_tokens": \[([^\]]*)\]')


def vidur_batches(output: Path) -> dict | None:
    """Per-batch figures from Vidur's chrome trace (None when the trace is off)."""
    trace = output / "chrome_trace.json"
    if not trace.exists():
        return None
    dur, size, decode_only = [], [], []
    for m in BATCH_RE.finditer(trace.read_text()):
        dur.append(float(m.group(1)) / 1e3)
        size.append(int(m.group(2)))
        decode_only.append(all(q.strip() == "1" for q in m.group(3).split(",")))
    dur, size, decode_only = np.array(dur), np.array(size), np.array(decode_only)
    return step_summary(dur, size, decode_only, size[decode_only])


def step_summary(ms: np.ndarray, size: np.ndarray, decode_only: np.ndarray, decoding: np.ndarray) -> dict:
    mid = decode_only & (size >= 8) & (size < 16)
    return {"steps": int(ms.size), "decode_batch_mean": float(decoding.mean()),
            "decode_only_step_ms_p50": float(np.median(ms[decode_only])),
            "decode_only_8_15_step_ms_p50": float(np.median(ms[mid])) if mid.any() else None,
            "busy_s": float(ms.sum() / 1e3)}


def check_rules(venv: Path, lengths: Path, n: int, qps: float, req: dict) -> dict:
    out = subprocess.run([str(venv / "bin" / "python"), "-c", CHECK_RULES, str(lengths), str(n), str(qps)],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    return {"lengths_identical": bool(np.array_equal(r["prompt"], req["prompt"])
                                      and np.array_equal(r["output"], req["output"])),
            "arrival_max_abs_diff_s": float(np.abs(np.array(r["arrival"]) - req["arrival"]).max())}


def vidur_predictions(req: dict) -> dict:
    out = req["output"]
    finish = req["arrival"] + req["e2e"]
    many = out > 1
    tpot = (req["e2e"] - req["ttft"])[many] / (out[many] - 1)
    return {"simulated_s": float(finish.max()), "throughput_tokens_per_s": float(out.sum() / finish.max()),
            "latency_s": {"ttft": stats(req["ttft"]), "tpot": stats(tpot), "e2e": stats(req["e2e"])},
            "decode_time_normalized_mean_s": float(req["decode_normalized"].mean()),
            "restarts": int(req["restarts"].sum())}


# ---------------------------------------------------------------- specsim


def specsim_cmd() -> list[str]:
    script = Path(sys.executable).parent / "specsim"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from simulator.cli import app; app()"]


def run_specsim(trace: Path, n: int, out: Path, extra: list[str] = ()) -> dict:
    if out.exists():
        shutil.rmtree(out)
    sets = [f"workload.arrival={{kind: trace, path: {trace}}}", f"workload.requests={n}", *extra]
    cmd = specsim_cmd() + ["run", str(SCENARIO), "--json", "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    time_file = out.parent / f"{out.name}.time"
    proc = timed(cmd, time_file, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"specsim failed:\n{proc.stderr[-3000:]}")
    rep = json.loads(proc.stdout)
    whole, rss = read_time(time_file)
    b = read_columns(out / "batches.csv")
    ms = (b["end_s"] - b["start_s"]) * 1e3
    size = b["batch"]
    steps = step_summary(ms, size, b["prefill_tokens"] == 0, size[size > 0])
    return {"wall_s": rep["sim"]["wall_s"], "whole_s": whole, "peak_rss_mb": rss, "report": rep, "steps": steps}


def specsim_predictions(rep: dict) -> dict:
    return {"simulated_s": rep["simulated_s"], "throughput_tokens_per_s": rep["throughput_tokens_per_s"],
            "latency_s": {k: rep["latency_s"][k] for k in ("ttft", "tpot", "e2e")},
            "preemptions": rep["batching"]["preemptions"], "kv_peak_fraction": rep["batching"]["kv_peak_fraction"]}


# ---------------------------------------------------------------- the table


def fmt_range(r: dict, digits: int = 2) -> str:
    return f"{r['median']:.{digits}f} ({r['min']:.{digits}f}-{r['max']:.{digits}f})"


def lat(p: dict, key: str, scale: float, digits: int = 0) -> str:
    s = p["latency_s"][key]
    return " / ".join(f"{s[k] * scale:.{digits}f}" for k in ("mean", "p50", "p90", "p99"))


def print_table(r: dict) -> None:
    v, s, k = r["vidur"], r["specsim"], r["specsim_kernel_roofline"]
    n, dec = r["requests"], r["decode_tokens"]
    vp, sp = v["predictions"], s["predictions"]
    vl, sl = v["event_loop_s"]["median"], s["simulate_s"]["median"]
    print(f"\n{n:,} requests ({r['prefill_tokens'] / 1e6:.2f}M prompt / {dec / 1e6:.2f}M output tokens), "
          f"qps {r['qps']}; medians (min-max) of {len(v['event_loop_s']['runs'])} runs")
    print("| | Vidur 0.0.26 | specsim | specsim, kernel-time roofline | Vidur / specsim |")
    print("|---|---|---|---|---|")
    rows = [
        ("wall s: simulation (Vidur event loop; specsim simulate())", fmt_range(v["event_loop_s"]),
         fmt_range(s["simulate_s"]), "", f"{vl / sl:.1f}x"),
        ("wall s: whole process", fmt_range(v["whole_s"]), fmt_range(s["whole_s"]), "",
         f"{v['whole_s']['median'] / s['whole_s']['median']:.1f}x"),
        ("peak memory MB", f"{v['peak_rss_mb']:.0f}", f"{s['peak_rss_mb']:.0f}", "", ""),
        ("requests per wall s (simulation)", f"{n / vl:,.0f}", f"{n / sl:,.0f}", "", ""),
        ("output tokens per wall s (simulation)", f"{dec / vl:,.0f}", f"{dec / sl:,.0f}", "", ""),
        ("simulated s", f"{vp['simulated_s']:,.0f}", f"{sp['simulated_s']:,.0f}",
         f"{k['simulated_s']:,.0f}", ""),
        ("throughput tokens/s", f"{vp['throughput_tokens_per_s']:.0f}", f"{sp['throughput_tokens_per_s']:.0f}",
         f"{k['throughput_tokens_per_s']:.0f}", ""),
        ("TTFT ms mean / p50 / p90 / p99", lat(vp, "ttft", 1e3), lat(sp, "ttft", 1e3), lat(k, "ttft", 1e3), ""),
        ("TPOT ms mean / p50 / p90 / p99", lat(vp, "tpot", 1e3, 1), lat(sp, "tpot", 1e3, 1),
         lat(k, "tpot", 1e3, 1), ""),
        ("E2E s mean / p50 / p90 / p99", lat(vp, "e2e", 1, 1), lat(sp, "e2e", 1, 1), lat(k, "e2e", 1, 1), ""),
        ("restarts (Vidur) / preemptions (specsim)", f"{vp['restarts']}", f"{sp['preemptions']}",
         f"{k['preemptions']}", ""),
    ]
    vs, ss, ks = v["steps"], s["steps"], k["steps"]
    if vs is not None:
        rows.append(("batch steps per wall s (simulation)", f"{vs['steps'] / vl:,.0f}", f"{ss['steps'] / sl:,.0f}",
                     "", ""))
    get = (lambda d, key, f: f.format(d[key]) if d is not None and d.get(key) is not None else "-")
    rows += [
        ("batch steps", get(vs, "steps", "{:,}"), get(ss, "steps", "{:,}"), get(ks, "steps", "{:,}"), ""),
        ("mean decode batch (requests)", get(vs, "decode_batch_mean", "{:.1f}"),
         get(ss, "decode_batch_mean", "{:.1f}"), get(ks, "decode_batch_mean", "{:.1f}"), ""),
        ("decode-only step ms, p50 (batch 8-15)",
         f"{get(vs, 'decode_only_step_ms_p50', '{:.1f}')} ({get(vs, 'decode_only_8_15_step_ms_p50', '{:.1f}')})",
         f"{get(ss, 'decode_only_step_ms_p50', '{:.1f}')} ({get(ss, 'decode_only_8_15_step_ms_p50', '{:.1f}')})",
         f"{get(ks, 'decode_only_step_ms_p50', '{:.1f}')} ({get(ks, 'decode_only_8_15_step_ms_p50', '{:.1f}')})",
         ""),
    ]
    for row in rows:
        print("| " + " | ".join(row) + " |")
    chk = r["requests_check"]
    print(f"requests: identical in both (Vidur's output as a trace); Vidur's generator rules reproduce its lengths: "
          f"{'yes' if chk['lengths_identical'] else 'NO'}, arrivals to {chk['arrival_max_abs_diff_s']:.1e} s")


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, nargs="+", default=[1000, 4000],
                        help="request counts, 1,000 to 16,000 (default: 1000 4000; 16000 takes Vidur a minute or more)")
    parser.add_argument("--qps", type=float, default=1.5, help="Poisson arrival rate (Vidur fails on the first "
                        "restarted request, which qps >= 2 brings at 4,000 requests)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each simulator per count")
    parser.add_argument("--vidur-venv", type=Path, default=CACHE / "vidur-venv", help="Vidur's virtual environment "
                        "(created with vidur==0.0.26 if missing; outside the repository)")
    parser.add_argument("--vidur-kit", type=Path, default=REPO.parent / "shared" / "peers" / "vidur",
                        help="folder with run_vidur.sh, make_profiles.py and the ShareGPT length file")
    parser.add_argument("--work", type=Path, default=CACHE / "runs", help="Vidur's outputs, predictor cache and "
                        "the traces (outside the repository)")
    parser.add_argument("--out", type=Path, default=CACHE / "bench_vidur.json", help="JSON with every figure")
    args = parser.parse_args()
    if any(not 1 <= n <= 16000 for n in args.requests) or args.repeats < 1 or args.qps <= 0:
        parser.error("request counts in 1..16000, repeats >= 1, qps > 0")
    venv = outside_repo(args.vidur_venv, "--vidur-venv")
    work = outside_repo(args.work, "--work")
    kit = args.vidur_kit.resolve()
    lengths = kit / LENGTH_FILE
    if not (kit / "run_vidur.sh").is_file() or not lengths.is_file():
        sys.exit(f"--vidur-kit {kit} lacks run_vidur.sh or {LENGTH_FILE}")
    work.mkdir(parents=True, exist_ok=True)

    setup = {"vidur": VIDUR_VERSION, "qps": args.qps, "repeats": args.repeats,
             "scenario": str(SCENARIO.relative_to(REPO)), "vidur_kit": str(kit),
             "venv_created_s": ensure_vidur(venv), "cpu_count": os.cpu_count(), "load_average_start": os.getloadavg()}
    if not any((work / "vidur_cache" / "predictions").glob("*")):
        print("training Vidur's predictors (first run; cached in --work)", flush=True)
        t0 = time.perf_counter()
        run_vidur(kit, venv, work / "vidur-warmup", 100, args.qps)
        setup["vidur_training_run_s"] = time.perf_counter() - t0

    results = []
    for n in args.requests:
        vidur_runs, specsim_runs, req = [], [], None
        trace = work / f"trace-n{n}-qps{args.qps}.csv"
        for rep in range(args.repeats):
            print(f"{n} requests, run {rep + 1}/{args.repeats}: Vidur", end="", flush=True)
            vr = run_vidur(kit, venv, work / f"vidur-n{n}-r{rep}", n, args.qps)
            got = vidur_requests(vr["output"])
            if req is None:
                req = got
                with trace.open("w") as f:
                    f.write("arrival_s,prompt_tokens,output_tokens\n")
                    for a, p, o in zip(req["arrival"], req["prompt"], req["output"]):
                        f.write(f"{float(a)!r},{int(p)},{int(o)}\n")
                vr["steps"] = vidur_batches(vr["output"])
            vidur_runs.append(vr)
            print(f" {vr['event_loop_s']:.1f} s loop, {vr['whole_s']:.1f} s whole; specsim", end="", flush=True)
            sr = run_specsim(trace, n, work / f"specsim-n{n}-r{rep}")
            specsim_runs.append(sr)
            print(f" {sr['wall_s']:.2f} s simulate, {sr['whole_s']:.2f} s whole", flush=True)
        kern = run_specsim(trace, n, work / f"specsim-kernel-n{n}", [f"devices.gpu.profile={KERNEL_ROOFLINE}"])
        sreport = specsim_runs[0]["report"]
        results.append({
            "requests": n, "qps": args.qps, "prefill_tokens": int(req["prompt"].sum()),
            "decode_tokens": int(req["output"].sum()), "trace": str(trace),
            "requests_check": check_rules(venv, lengths, n, args.qps, req),
            "vidur": {"event_loop_s": median_range([r["event_loop_s"] for r in vidur_runs]),
                      "whole_s": median_range([r["whole_s"] for r in vidur_runs]),
                      "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in vidur_runs),
                      "phases": [r["phases"] for r in vidur_runs], "chrome_trace": n <= CHROME_TRACE_MAX,
                      "predictions": vidur_predictions(req), "steps": vidur_runs[0]["steps"]},
            "specsim": {"simulate_s": median_range([r["wall_s"] for r in specsim_runs]),
                        "whole_s": median_range([r["whole_s"] for r in specsim_runs]),
                        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in specsim_runs),
                        "events": sreport["sim"]["events"], "predictions": specsim_predictions(sreport),
                        "steps": specsim_runs[0]["steps"], "warnings": sreport["warnings"]},
            "specsim_kernel_roofline": {**specsim_predictions(kern["report"]), "steps": kern["steps"]},
        })
        print_table(results[-1])
    setup["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"setup": setup, "results": results}, indent=1, default=str))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
