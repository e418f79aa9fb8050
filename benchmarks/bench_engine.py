"""Simulated output tokens per wall-clock second of the engine.

(a) one stream of vanilla speculative decoding, 200,000+ output tokens (llama-68m drafting for
    llama2-7b on one derived H100 profile, gamma 4, iid alpha 0.8);
(b) 1,000 requests arriving as a Poisson stream to the same setup.

Run: python benchmarks/bench_engine.py [--repeats 5]   (pin to one core: taskset -c 0 ...)
Prints the median and the spread (min-max) over repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time

from simulator import engine
from simulator import scenario as sc


def scenario(arrival: dict, requests: int, output: int) -> sc.Scenario:
    return sc.parse({
        "name": "bench",
        "models": {"draft": {"preset": "llama-68m"}, "target": {"preset": "llama2-7b"}},
        "devices": {"gpu": {"profile": "h100-sxm-derived"}},
        "strategy": {"kind": "speculative", "draft": {"model": "draft", "device": "gpu"},
                     "target": {"model": "target", "device": "gpu"}, "gamma": 4},
        "acceptance": {"kind": "iid", "alpha": 0.8},
        "workload": {"arrival": arrival, "requests": requests, "prompt_tokens": 128, "output_tokens": output},
    }, "bench")


CASES = {
    "(a) one stream, speculative": scenario({"kind": "closed_loop", "users": 1}, 100, 2000),
    "(b) 1,000 Poisson requests": scenario({"kind": "poisson", "rate_per_s": 3.0}, 1000, 256),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for label, spec in CASES.items():
        rates, tokens, events = [], 0, 0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = engine.simulate(spec)
            wall = time.perf_counter() - t0
            tokens = sum(r.output_tokens for r in result.records)
            events = result.events
            rates.append(tokens / wall)
        print(f"{label}: {tokens} tokens, {events} events; simulated tokens per wall second: "
              f"median {statistics.median(rates):,.0f} (min {min(rates):,.0f}, max {max(rates):,.0f}) "
              f"over {args.repeats} runs")


if __name__ == "__main__":
    main()
