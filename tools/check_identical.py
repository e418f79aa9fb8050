"""Record what every example scenario produces, and compare two such records byte for byte.

    python tools/check_identical.py record DIR [--root REPO] [--seeds 0 1] [--jobs 2]
    python tools/check_identical.py diff BEFORE AFTER

`record` runs every scenario in scenarios/ at each seed (`--set seed=N`) through the CLI of the
repository at --root (default: the one holding this file), with `--json --out`, and keeps in
DIR/<scenario>.seed<N>/ the report (`report.json`, the --json output without the fields that
differ between identical runs: sim.wall_s) and the records (requests.csv, steps.csv and, for
batching servers, batches.csv). `diff` lists every file that differs, is missing or is extra,
and exits 1 if any does. A refactoring that changes no behaviour leaves `diff` silent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
SUFFIXES = {".yaml", ".yml", ".json", ".toml"}
RECORDS = ("requests.csv", "steps.csv", "batches.csv")
CLI = "from simulator.cli import app; app()"


def scenarios(root: Path) -> list[Path]:
    folder = root / "scenarios"
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in SUFFIXES)


def run_one(root: Path, path: Path, seed: int, dest: Path) -> str | None:
    """Run one scenario at one seed into dest; an error message, or None."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        env = dict(os.environ, PYTHONPATH=str(root))
        proc = subprocess.run([sys.executable, "-c", CLI, "run", str(path), "--set", f"seed={seed}", "--json",
                               "--out", str(out)], cwd=root, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            return f"{path.name} seed {seed}: exit {proc.returncode}: {proc.stderr.strip()[-500:]}"
        rep = json.loads(proc.stdout)
        rep.get("sim", {}).pop("wall_s", None)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "report.json").write_text(json.dumps(rep, indent=2) + "\n")
        for name in RECORDS:
            if (out / name).is_file():
                shutil.copyfile(out / name, dest / name)
    return None


def record(folder: Path, root: Path, seeds: list[int], jobs: int) -> int:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    tasks = [(p, s) for p in scenarios(root) for s in seeds]
    with ThreadPoolExecutor(jobs) as pool:
        errors = [e for e in pool.map(lambda t: run_one(root, t[0], t[1], folder / f"{t[0].stem}.seed{t[1]}"), tasks)
                  if e is not None]
    for e in errors:
        print(e, file=sys.stderr)
    print(f"recorded {len(tasks) - len(errors)} of {len(tasks)} runs from {root} into {folder}")
    return 1 if errors else 0


def diff(before: Path, after: Path) -> int:
    old = {p.relative_to(before) for p in before.rglob("*") if p.is_file()}
    new = {p.relative_to(after) for p in after.rglob("*") if p.is_file()}
    problems = [f"missing: {p}" for p in sorted(old - new)] + [f"extra: {p}" for p in sorted(new - old)]
    problems += [f"differs: {p}" for p in sorted(old & new) if (before / p).read_bytes() != (after / p).read_bytes()]
    for line in problems:
        print(line)
    print(f"{len(old & new)} files compared, {len(problems)} problem(s)")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run every scenario at each seed into a folder")
    rec.add_argument("folder", type=Path)
    rec.add_argument("--root", type=Path, default=HERE, help="repository whose code and scenarios run")
    rec.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    rec.add_argument("--jobs", type=int, default=2, help="runs at once")
    cmp_ = sub.add_parser("diff", help="compare two recorded folders")
    cmp_.add_argument("before", type=Path)
    cmp_.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.command == "record":
        return record(args.folder, args.root.resolve(), args.seeds, args.jobs)
    return diff(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
