"""Side by side with DSD-Sim: an edge fleet of drafters and batching verifiers in both simulators.

Run (from the repository root, with specsim's environment active):

    python benchmarks/bench_dsdsim.py --dsdsim DSDSIM_CHECKOUT                 # 20 / 80, 60 s, 3 pairs
    python benchmarks/bench_dsdsim.py --dsdsim DIR --fleet 5 20 --fleet 20 80 --repeats 5

DSD-Sim (github.com/yfzzzyyls/dsdSim, SimPy; not on PyPI, never a dependency of this project)
comes as a checkout given by --dsdsim. Its HEAD's vanilla mode ends at once with every metric 0, so
the script runs `src/sim.py` of commit 1e746d8, saved beside HEAD's as src/sim_1e746d8.py (the
script writes it with `git show` when missing), and creates the empty thirdparty folder its
imports look for. DSD-Sim runs in a virtual environment of its own (--dsdsim-venv, default
~/.cache/specsim-bench/dsdsim-venv: simpy, pyyaml, numpy, joblib, networkx, created when missing).

The workload is the kit in ../shared/peers/dsdsim (--kit; its README says what each side models
and what not): N_TARGETS verifiers (1.6 ms a token verified, 0.45 ms a prompt token, batches of at
most 12 gathered for 0.35 ms), N_DRAFTS edge drafters (8 ms a draft token), gamma 4, acceptance
0.8, 100 Mbit/s links of 6.5-11 ms with 12% jitter, closed-loop users with 1.7 s think time, GSM8K
lengths from DSD-Sim's own trace, SIM_S simulated seconds. specsim runs it as N_TARGETS
shared_verifier systems of N_DRAFTS / N_TARGETS edges each (DSD-Sim routes each drafter among 4
targets). The two do not model the same details (DSD-Sim never re-drafts rejected tokens and
charges prefill per token), so the figure compared is the work both do: verification steps per
CPU second of the run alone (start-up and imports left out), each process pinned to one core
(taskset, when present), the two alternating, medians and spreads over --repeats pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "specsim-bench"
COMMIT = "1e746d8"
DEPENDENCIES = ["simpy", "pyyaml", "numpy", "joblib", "networkx"]


def ensure_checkout(root: Path) -> None:
    if not (root / "traces" / "gsm8k_trace_1s.jsonl").is_file():
        sys.exit(f"{root} is not a DSD-Sim checkout (no traces/gsm8k_trace_1s.jsonl)")
    old = root / "src" / f"sim_{COMMIT}.py"
    if not old.is_file():
        text = subprocess.run(["git", "-C", str(root), "show", f"{COMMIT}:src/sim.py"], check=True,
                              capture_output=True, text=True).stdout
        old.write_text(text)
    (root / "thirdparty" / "Sai_speculative_vidur").mkdir(parents=True, exist_ok=True)


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.is_file():
        print(f"creating {venv} with {' '.join(DEPENDENCIES)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *DEPENDENCIES], check=True)
    return python


def pinned(cmd: list[str]) -> list[str]:
    return ["taskset", "-c", "0", *cmd] if shutil.which("taskset") else cmd


def run_specsim(kit: Path, root: Path, targets: int, drafts: int, sim_s: float) -> dict:
    env = os.environ | {"DSDSIM_DIR": str(root), "PYTHONPATH": str(REPO)}
    out = subprocess.run(pinned([sys.executable, str(kit / "specsim_dsd.py"), str(targets), str(drafts), str(sim_s)]),
                         check=True, capture_output=True, text=True, env=env).stdout
    d = json.loads(out.strip().splitlines()[-1])
    return {"cpu_s": d["cpu_s_run_only"], "steps": d["steps"], "requests": d["requests"]}


def run_dsdsim(kit: Path, root: Path, python: Path, cfg: Path) -> dict:
    env = os.environ | {"DSDSIM_DIR": str(root), "PYTHONPATH": str(root)}
    out = subprocess.run(pinned([str(python), str(kit / "dsd_inspect.py"), str(cfg), f"sim_{COMMIT}"]), check=True,
                         capture_output=True, text=True, env=env, cwd=root).stdout
    d = json.loads(out[out.index("{"):out.index("\n}") + 2])
    # every target job is a verification but one prefill per conversation
    return {"cpu_s": d["cpu_s_run_only"], "steps": d["target_jobs_completed"] - d["conversations_recorded"],
            "requests": d["conversations_recorded"]}


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):,.0f} ({min(xs):,.0f}-{max(xs):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsdsim", type=Path, required=True, help="a checkout of github.com/yfzzzyyls/dsdSim")
    parser.add_argument("--dsdsim-venv", type=Path, default=CACHE / "dsdsim-venv")
    parser.add_argument("--kit", type=Path, default=REPO.parent / "shared" / "peers" / "dsdsim")
    parser.add_argument("--fleet", type=int, nargs=2, action="append", metavar=("TARGETS", "DRAFTS"),
                        help="verifiers and drafters (repeatable; default 20 80)")
    parser.add_argument("--sim-s", type=float, default=60.0, help="simulated seconds")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs, alternating")
    parser.add_argument("--out", type=Path, default=None, help="write every figure to this JSON file")
    args = parser.parse_args()
    root = args.dsdsim.resolve()
    ensure_checkout(root)
    python = ensure_venv(args.dsdsim_venv)
    base = root / "experiments" / "configs" / "explorer" / "baseline_trace_gsm8k.yaml"
    results = []
    for targets, drafts in args.fleet or [(20, 80)]:
        cfg = CACHE / f"dsd_{targets}_{drafts}_{args.sim_s:g}.yaml"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(python), str(args.kit / "dsd_cfg.py"), str(base), str(cfg), str(targets), str(drafts),
                        str(args.sim_s * 1000)], check=True, capture_output=True)
        pairs = []
        for i in range(args.repeats):
            a = run_specsim(args.kit, root, targets, drafts, args.sim_s)
            b = run_dsdsim(args.kit, root, python, cfg)
            pairs.append((a, b))
            print(f"{targets}/{drafts}, pair {i + 1}/{args.repeats}: specsim {a['steps']:,} steps in {a['cpu_s']:.2f} "
                  f"CPU s; DSD-Sim {b['steps']:,} in {b['cpu_s']:.2f}", flush=True)
        ours = [a["steps"] / a["cpu_s"] for a, _ in pairs]
        theirs = [b["steps"] / b["cpu_s"] for _, b in pairs]
        ratio = [x / y for x, y in zip(ours, theirs)]
        print(f"{targets} verifiers / {drafts} drafters, {args.sim_s:g} s: verification steps per CPU second, "
              f"median (min-max) of {args.repeats} pairs: specsim {spread(ours)}, DSD-Sim {spread(theirs)}; "
              f"specsim / DSD-Sim {statistics.median(ratio):.2f}x ({min(ratio):.2f}-{max(ratio):.2f})")
        results.append({"targets": targets, "drafts": drafts, "sim_s": args.sim_s, "pairs": pairs,
                        "ratio_median": statistics.median(ratio)})
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
