"""What PEARL gains over speculative decoding, by c = t_verify / t_draft and alpha (docs/strategies.md).

    python tools/pearl_gain.py [--seeds 1 2 3]

Constant profiles on one device: target 10 ms per forward, draft 10 / c ms; iid alpha; one user,
2000 output tokens. PEARL is simulated in its own mode (pre_post, adaptive) with gamma = c, as the
paper sets it, and in pre_post/fixed with gamma = c; speculative at its best gamma in 1..24 and at
gamma = c. Prints mean throughput ratios over the seeds with the spread (min-max) across them.
"""

from __future__ import annotations

import argparse

from simulator import engine, metrics
from simulator import scenario as sc


def rate(kind: str, c: int, alpha: float, gamma: int, seed: int, **strategy) -> float:
    profile = {"kind": "constant", "forward_ms": {"draft": 10.0 / c, "target": 10.0}}
    data = {"name": "gain", "seed": seed,
            "models": {"draft": {"preset": "llama-68m"}, "target": {"preset": "llama2-7b"}},
            "devices": {"gpu": {"profile": profile}},
            "strategy": {"kind": kind, "draft": {"model": "draft", "device": "gpu"},
                         "target": {"model": "target", "device": "gpu"}, "gamma": gamma, **strategy},
            "acceptance": {"kind": "iid", "alpha": alpha},
            "workload": {"arrival": {"kind": "closed_loop", "users": 1}, "requests": 1,
                         "prompt_tokens": 16, "output_tokens": 2000}}
    scenario = sc.parse(data, "gain")
    return metrics.report(engine.simulate(scenario), "gain", kind)["throughput_tokens_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    seeds = parser.parse_args().seeds
    print("c   alpha  PEARL/best spec    PEARL/spec(g=c)    fixed/best spec    best spec gamma")
    for c in (2, 4, 8, 16):
        for alpha in (0.0, 0.4, 0.6, 0.8, 0.9, 0.95):
            ada, at_c, fix, best = [], [], [], 0
            for seed in seeds:
                spec = {g: rate("speculative", c, alpha, g, seed) for g in range(1, 25)}
                best = max(spec, key=spec.get)
                pearl = rate("pearl", c, alpha, c, seed, verify="pre_post", draft_length="adaptive")
                ada.append(pearl / spec[best])
                at_c.append(pearl / spec[c])
                fix.append(rate("pearl", c, alpha, c, seed, verify="pre_post", draft_length="fixed") / spec[best])
            show = [f"{sum(v) / len(v):.2f} [{min(v):.2f}-{max(v):.2f}]" for v in (ada, at_c, fix)]
            print(f"{c:<3} {alpha:<5}  {show[0]:<17}  {show[1]:<17}  {show[2]:<17}  {best}")


if __name__ == "__main__":
    main()
