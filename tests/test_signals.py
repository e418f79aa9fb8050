"""SIGINT and SIGTERM stop a long command cleanly (simulator/interrupts.py, parallel.py, outputs.py).

Each test starts the real CLI in a subprocess (in a process group of its own) on work that takes
well over ten seconds, waits until its workers are up, sends the signal (SIGINT to the whole
group, as a terminal's Ctrl-C does; SIGTERM to the command alone, as `kill` does), and checks: exit code 130 (SIGINT) or 143 (SIGTERM);
stderr is the one line `interrupted` (no traceback, no leaked-semaphore warning from
multiprocessing's resource tracker); no output folder and no temporary folder; and none of the
processes it had started (pool workers, dask nannies and workers, the resource tracker) is
alive afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import constant_scenario

ROOT = Path(__file__).resolve().parent.parent
BIG = constant_scenario(requests=2000, users=4, output=256, prompt=16)  # about 4 s a run on one core

pytestmark = pytest.mark.slow


def _descendants(pid: int) -> set[int]:
    """Every live process below pid (psutil where installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        return _proc_descendants(pid)
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def _proc_descendants(pid: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    """Of pids, those still running (a zombie, dead and not yet reaped, does not count)."""
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            out.add(pid)
    return out


def _interrupt(tmp_path: Path, args: list[str], sig: int, workers: int) -> tuple[int, str, set[int]]:
    """Start `specsim ARGS --out tmp/out`, wait for `workers` processes below it, signal it; the exit
    code, stderr, and the processes it had started that are still alive a moment after it ended."""
    scenario = tmp_path / "big.yaml"
    scenario.write_text(yaml.safe_dump(BIG))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "simulator", args[0], str(scenario), *args[1:], "--out", str(tmp_path / "out")]
    child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)  # its own process group, as a terminal gives a command
    start, seen = time.monotonic(), set()
    while time.monotonic() < start + 10 and len(_alive(seen)) < workers and child.poll() is None:
        seen |= _descendants(child.pid)
        time.sleep(0.1)
    time.sleep(max(0.5, start + 1.5 - time.monotonic()))  # the command is at work: its runs have started
    seen |= _descendants(child.pid)
    assert child.poll() is None, "the command ended before the signal"
    assert len(_alive(seen)) >= workers, f"expected {workers} worker processes, saw {sorted(seen)}"
    if sig == signal.SIGINT:
        os.killpg(child.pid, sig)  # Ctrl-C: every process of the group gets it, the workers too
    else:
        child.send_signal(sig)  # `kill PID`: the command alone
    try:
        _, err = child.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        child.kill()
        raise
    deadline = time.monotonic() + 2  # the resource tracker leaves once it reads its pipe's end
    while _alive(seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    return child.returncode, err, _alive(seen)


def _assert_clean(tmp_path: Path, code: int, err: str, left: set[int], expected: int) -> None:
    assert code == expected, err
    assert err.splitlines() == ["interrupted"], err
    assert not left, f"processes left running: {sorted(left)}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.yaml"]  # no output and no temporary folder


SWEEP = ["sweep", "--grid", "strategy.gamma=1,2,3,4,5,6"]
PLAN = ["plan", "--search", "strategy.gamma=1,2,3,4", "--slo-ttft-ms", "100000", "--tolerance", "0.001"]


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_sweep_on_a_process_pool(tmp_path, sig, code):
    _assert_clean(tmp_path, *_interrupt(tmp_path, [*SWEEP, "--workers", "2"], sig, workers=2), code)


def test_plan_on_a_process_pool_sigterm(tmp_path):
    _assert_clean(tmp_path, *_interrupt(tmp_path, [*PLAN, "--workers", "2"], signal.SIGTERM, workers=2), 143)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_sweep_on_a_local_dask_cluster(tmp_path, sig, code):
    pytest.importorskip("distributed")
    # the nannies run in the command's own process, each starting one worker process
    _assert_clean(tmp_path, *_interrupt(tmp_path, [*SWEEP, "--cluster", "local", "--workers", "2"], sig, workers=2),
                  code)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_run_in_one_process(tmp_path, sig, code):
    big = ["run", "--set", "workload.requests=20000"]
    _assert_clean(tmp_path, *_interrupt(tmp_path, big, sig, workers=0), code)
