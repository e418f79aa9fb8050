"""The results table of docs/strategies.md: each strategy's example scenario beside its baseline.

  python tools/strategy_table.py            (prints Markdown)
"""

from __future__ import annotations

import copy
from pathlib import Path

from simulator import engine, metrics
from simulator import scenario as sc

ROOT = Path(__file__).resolve().parent.parent


def tokens_per_s(path: str, *overrides: str) -> tuple[float, float]:
    spec = sc.load(ROOT / "scenarios" / path, list(overrides))
    rep = metrics.report(engine.simulate(spec), spec.name, spec.strategy.kind)
    return rep["throughput_tokens_per_s"], rep["latency_s"]["tpot"]["mean"] * 1000


# (label, scenario, overrides for the baseline, baseline label)
ROWS = [
    ("speculative, co-located", "colocated-h100.yaml", ["strategy.gamma=0"], "same scenario, gamma 0"),
    ("speculative, edge draft over a WAN", "edge-draft-cloud-verify.yaml", ["strategy.gamma=0"],
     "same scenario, gamma 0"),
    ("pearl (parallel draft and verify)", "pearl-edge-overlap.yaml", ["strategy.kind=speculative"],
     "same scenario as speculative"),
    ("medusa heads, tree [3, 2, 1]", "medusa-h100.yaml",
     ["strategy={kind: autoregressive, target: {model: target, device: gpu}}"], "the same target alone"),
    ("parallel drafting, 4 tokens a forward", "parallel-draft-h100.yaml", ["strategy.tokens_per_forward=1"],
     "same scenario, a forward a token"),
    ("shared verifier, 8 edge users", "edge-fleet-shared-verifier.yaml",
     ["workload.arrival.users=1", "workload.requests=4"], "one user alone"),
    ("federated, 3 workers", "federated-verification.yaml",
     ["strategy.workers=[{model: target, device: w0}]"], "one worker"),
    ("tensor parallel, llama2-13b over 2 H200s", "tensor-parallel-h200.yaml", ["devices.node.gpus=1"],
     "the whole target on one H200"),
]
EXTRA = [
    ("token tree [3, 2, 1]", "tree-h100.yaml", ["strategy.branching=[1,1,1]"], "chain of 3 (width 1)"),
    ("dynamic tree (EAGLE-2: depth 6, top-10, 60 nodes)", "dynamic-tree-rtx3090.yaml",
     ["strategy={kind: autoregressive, target: {model: target, device: gpu}}"], "the same target alone"),
    ("self-speculative (8 of 32 layers)", "self-speculative-h100.yaml", ["strategy.gamma=0"], "gamma 0"),
    ("pipeline, llama2-13b over 4 Jetsons", "pipeline-jetson-gige.yaml", ["strategy.stages=[j0]"],
     "the whole target on one Jetson"),
    ("pipeinfer, same pipeline + llama-68m draft", "pipeinfer-jetson-gige.yaml", ["strategy.stages=[j0]"],
     "pipeinfer on one Jetson"),
    ("pipeinfer with a token tree [2, 2, 1, 1] (FlowSpec-style)", "flowspec-tree-jetson.yaml",
     ["strategy.branching=null", "strategy.gamma=4"], "the same with chains of 4"),
    ("lossy shared Wi-Fi uplink, 4 edges", "lossy-shared-uplink.yaml", ["strategy.draft_payload=ids"],
     "token ids instead of full distributions"),
]


def staged_gpt2() -> None:
    """Spector and Re's setup (scenarios/staged-gpt2-4090.yaml) as baseline, speculative, tree, staged."""
    import yaml

    data = yaml.safe_load((ROOT / "scenarios" / "staged-gpt2-4090.yaml").read_text())
    st = data["strategy"]
    variants = {
        "baseline (autoregressive)": {"kind": "autoregressive", "target": st["target"]},
        "speculative (chain, gamma 4)": {"kind": "speculative", "draft": st["draft"], "target": st["target"], "gamma": 4},
        "tree (same tree, no second stage)": {"kind": "tree", "draft": st["draft"], "target": st["target"],
                                              "branching": st["branching"], "top_k_decay": st["top_k_decay"]},
        "staged, the n-gram as a tiny model on the GPU's roofline": st,
        "staged, the n-gram a host lookup of 1 us a token (draft2_ms_per_token 0.001)":
            st | {"draft2_ms_per_token": 0.001},
        "the same at 10 us a token": st | {"draft2_ms_per_token": 0.01},
        "the same at 100 us a token": st | {"draft2_ms_per_token": 0.1},
    }
    published = {"baseline (autoregressive)": "150", "speculative (chain, gamma 4)": "350",
                 "staged, the n-gram a host lookup of 1 us a token (draft2_ms_per_token 0.001)": "475"}
    print("\n| GPT-2-L on an RTX 4090, greedy | simulated tokens/s | published tokens/s (Spector and Re) |")
    print("|---|---|---|")
    for label, strategy in variants.items():
        case = copy.deepcopy(data) | {"strategy": strategy}
        spec = sc.parse(case, "staged-gpt2-4090")
        rep = metrics.report(engine.simulate(spec), spec.name, spec.strategy.kind)
        print(f"| {label} | {rep['throughput_tokens_per_s']:.0f} | {published.get(label, '-')} |")


def pipeinfer_grid() -> None:
    """PipeInfer's gain over synchronous speculation through the same pipeline, against acceptance
    and link bandwidth; then, on the example's Gigabit links, PipeInfer and synchronous speculation
    each over the plain autoregressive pipeline (gamma 0) (scenarios/pipeinfer-jetson-gige.yaml)."""
    import yaml

    data = yaml.safe_load((ROOT / "scenarios" / "pipeinfer-jetson-gige.yaml").read_text())
    alphas, speeds = (0.9, 0.7, 0.5, 0.3, 0.1), (1000, 100, 10)

    def rate(kind: str, alpha: float, mbps: float, gamma: int | None = None) -> float:
        case = copy.deepcopy(data)
        case["acceptance"]["alpha"] = alpha
        for link in case["links"]:
            link["bandwidth_mbps"] = mbps
        case["strategy"]["kind"] = kind
        if kind == "pipeline":
            case["strategy"].pop("max_in_flight")
        if gamma is not None:
            case["strategy"]["gamma"] = gamma
        spec = sc.parse(case, "pipeinfer-jetson-gige")
        return metrics.report(engine.simulate(spec), spec.name, kind)["throughput_tokens_per_s"]

    header = " | ".join(f"alpha {a}" for a in alphas)
    print(f"\n| PipeInfer / synchronous pipeline | {header} |")
    print("|---|" + "---|" * len(alphas))
    for mbps in speeds:
        cells = [f"{rate('pipeinfer', a, mbps) / rate('pipeline', a, mbps):.2f}x" for a in alphas]
        print(f"| links {mbps} Mbit/s | " + " | ".join(cells) + " |")
    print(f"\n| links 1000 Mbit/s, over the autoregressive pipeline | {header} |")
    print("|---|" + "---|" * len(alphas))
    plain = {a: rate("pipeline", a, 1000, gamma=0) for a in alphas}
    for label, kind in (("PipeInfer", "pipeinfer"), ("synchronous speculation", "pipeline")):
        print(f"| {label} | " + " | ".join(f"{rate(kind, a, 1000) / plain[a]:.2f}x" for a in alphas) + " |")


def main() -> None:
    print("| strategy | scenario | tokens/s | TPOT ms | baseline | baseline tokens/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for label, path, base, base_label in ROWS + EXTRA:
        t, tpot = tokens_per_s(path)
        b, _ = tokens_per_s(path, *base)
        print(f"| {label} | `{path}` | {t:.1f} | {tpot:.2f} | {base_label} | {b:.1f} | {t / b:.2f}x |")
    staged_gpt2()
    pipeinfer_grid()


if __name__ == "__main__":
    main()
