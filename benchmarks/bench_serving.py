"""Serving at scale: simulated output tokens per wall second with continuous batching, and how the
wall time grows with the number of requests.

Workload: llama2-7b with a llama-68m drafter on one derived H100 profile, strategy batched
(max_batch 64, gamma 4, separate prefill), iid alpha 0.8, Poisson arrivals at the rate that keeps
about 64 requests decoding (a little above the closed form's capacity), prompts 64..1024 and
outputs 64..512 tokens (uniform).

(a) 10,000 requests: simulated output tokens per wall second (median and min-max over --repeats).
(b) wall time for 1,000, 10,000 and 100,000 requests (--sizes), a least-squares line through the
    origin and each size's deviation from it, the exponent of a power law fitted in log-log, and
    a PNG of the curve (--plot).

Run: taskset -c 0 python benchmarks/bench_serving.py [--repeats 5] [--plot docs/figures/serving-scaling.png]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from simulator import analytic, engine
from simulator import scenario as sc


def scenario(requests: int, rate: float | None = None) -> sc.Scenario:
    data = {
        "name": "bench-serving",
        "models": {"draft": {"preset": "llama-68m"}, "target": {"preset": "llama2-7b"}},
        "devices": {"gpu": {"profile": "h100-sxm-derived"}},
        "strategy": {"kind": "batched", "target": {"model": "target", "device": "gpu"},
                     "draft": {"model": "draft", "device": "gpu"}, "max_batch": 64,
                     "speculation": {"policy": "fixed", "gamma": 4}},
        "acceptance": {"kind": "iid", "alpha": 0.8},
        "workload": {"arrival": {"kind": "poisson", "rate_per_s": rate or 1.0}, "requests": requests,
                     "prompt_tokens": {"kind": "uniform", "low": 64, "high": 1024},
                     "output_tokens": {"kind": "uniform", "low": 64, "high": 512}},
    }
    if rate is None:  # 5% above the rate at which the closed form's batch reaches 64
        data["workload"]["arrival"]["rate_per_s"] = 1.05 * saturation_rate(data)
    return sc.parse(data, "bench")


def saturation_rate(data: dict) -> float:
    """Requests per second at which the closed form's steady batch reaches max_batch."""
    lo, hi = 0.1, 1000.0
    for _ in range(40):
        mid = (lo * hi) ** 0.5
        data["workload"]["arrival"]["rate_per_s"] = mid
        if analytic.estimate(sc.parse(data, "bench"))["batch"] >= data["strategy"]["max_batch"]:
            hi = mid
        else:
            lo = mid
    return hi


def timed(spec: sc.Scenario) -> tuple[float, int, dict]:
    t0 = time.perf_counter()
    result = engine.simulate(spec)
    wall = time.perf_counter() - t0
    batches = np.array(result.world.batches)
    decoding = batches[batches[:, 2] > 0, 2]
    return wall, sum(r.output_tokens for r in result.records), {"batch_mean": float(decoding.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000, 100000])
    parser.add_argument("--plot", default=None, help="write the scaling curve to this PNG")
    args = parser.parse_args()

    spec = scenario(10_000)
    rate = spec.workload.arrival.rate_per_s
    rates = []
    for _ in range(args.repeats):
        wall, tokens, info = timed(spec)
        rates.append(tokens / wall)
    print(f"(a) 10,000 Poisson requests at {rate:.2f}/s, max_batch 64 (mean decode batch {info['batch_mean']:.1f}), "
          f"{tokens:,} output tokens: simulated tokens per wall second median {statistics.median(rates):,.0f} "
          f"(min {min(rates):,.0f}, max {max(rates):,.0f}) over {args.repeats} runs")

    sizes, walls = [], []
    for n in args.sizes:
        wall, tokens, info = timed(scenario(n, rate))
        sizes.append(n)
        walls.append(wall)
        print(f"(b) {n:>7,} requests: {wall:7.2f} s wall, {tokens / wall:,.0f} tokens/s, "
              f"{n / wall:,.0f} requests/s (mean decode batch {info['batch_mean']:.1f})")
    x, y = np.array(sizes, float), np.array(walls)
    slope = float(x @ y / (x @ x))
    for n, w in zip(sizes, walls):
        print(f"    {n:>7,}: {w / (slope * n):.2f} x the line through the origin ({slope * 1e3:.3f} ms per request)")
    if len(sizes) > 1:
        exponent = np.polyfit(np.log(x), np.log(y), 1)[0]
        print(f"    wall time ~ requests^{exponent:.2f} (least squares in log-log; 1 is linear)")
    if args.plot:
        plot(x, y, slope, args.plot)
        print(f"wrote {args.plot}")


def plot(x: np.ndarray, y: np.ndarray, slope: float, path: str) -> None:
    from pathlib import Path

    from simulator.plots import pyplot, save_png

    fig, ax = pyplot().subplots(figsize=(5.5, 3.8))
    ax.plot(x, y, "o-", label="specsim, batched serving")
    grid = np.geomspace(x.min(), x.max(), 50)
    ax.plot(grid, slope * grid, "--", color="grey", label=f"linear: {slope * 1e3:.2f} ms per request")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("requests simulated")
    ax.set_ylabel("wall time (s)")
    ax.set_title("Wall time against workload size (one core)")
    ax.legend()
    fig.tight_layout()
    save_png(fig, Path(path))


if __name__ == "__main__":
    main()
