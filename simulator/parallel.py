"""Running many independent simulations: in this process, on local cores, or on a dask cluster.

The unit of work is a pure, module-level function of one picklable task (scenario data, the
configuration's overrides, a seed) returning a flat dict, so the results are the same whatever
runs them; `run_all` returns them in task order. Backends:

  workers=1           in this process, one task after another
  workers=N or None   a ProcessPoolExecutor with N processes (None: every local core)
  cluster="local"     a dask.distributed LocalCluster started here (N worker processes)
  cluster=ADDRESS     the dask.distributed scheduler at ADDRESS (e.g. tcp://10.0.0.5:8786); its
                      workers need specsim installed and the scenario's files at the same paths

`drive` runs searches, each a generator that yields one task at a time and is sent fn(task) back
(a plan's search: a trial rate, its verdict), keeping every worker busy with the pending tasks of
all the searches, so that a few long searches do not leave workers idle while one finishes; each
search sees its results in its own order, so what it returns does not depend on the backend.

However `run_all` or `drive` ends (an error, SIGINT or SIGTERM: interrupts.py), it stops the workers it
started before returning or raising: the pool's processes are terminated, a LocalCluster is
closed, so none is left running.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed
from concurrent.futures import wait as futures_wait
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from .errors import InputError
from .interrupts import deferred, quiet_worker, sigint_ignored_by_children

EXTRA = "pip install 'specsim[cluster]'"


def check_backend(workers: int | None, cluster: str | None) -> None:
    """Refuse a bad --workers or a --cluster without dask's distributed, before anything runs."""
    if workers is not None and workers < 1:
        raise InputError("--workers", "", "must be >= 1")
    if cluster is not None:
        if not cluster.strip():
            raise InputError("--cluster", "", "expected a scheduler address or 'local'")
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise InputError("--cluster", "", f"needs dask's distributed package (the 'cluster' extra): "
                             f"{EXTRA}") from None


def run_all(fn: Callable, tasks: list, workers: int | None = None, cluster: str | None = None,
            progress: Callable[[int], None] | None = None) -> list:
    """[fn(task) for task in tasks], computed by the chosen backend; progress(done) after each."""
    check_backend(workers, cluster)
    results: list = [None] * len(tasks)
    if cluster is None and (workers == 1 or len(tasks) <= 1):
        for i, task in enumerate(tasks):
            results[i] = fn(task)
            _tick(progress, i + 1)
        return results
    with _backend(workers, cluster, len(tasks)) as be:
        # a dask task carries several runs (scheduling one costs more than a tiny run); a pool's one
        spans = _chunks(len(tasks), be.workers) if cluster is not None else [(i, i + 1) for i in range(len(tasks))]
        futures = {be.submit(partial(_run_chunk, fn), tasks[a:b]): (a, b) for a, b in spans}
        done = 0
        for future in be.as_completed(futures):
            a, b = futures[future]
            results[a:b] = future.result()  # a task's error (an InputError too) is raised here
            done += b - a
            _tick(progress, done)
    return results


def drive(fn: Callable, searches: list, workers: int | None = None, cluster: str | None = None,
          notes: Callable[[int], None] | None = None) -> list:
    """The return value of each search (a generator yielding tasks, sent fn(task) for each), in order,
    with fn's tasks computed by the chosen backend, as many at once as there are workers and searches
    waiting; notes(tasks done) after each."""
    check_backend(workers, cluster)
    results: list = [None] * len(searches)
    pending: dict[int, object] = {}  # search index -> the task it waits on

    def advance(i: int, value, first: bool = False) -> None:
        try:
            pending[i] = next(searches[i]) if first else searches[i].send(value)
        except StopIteration as stop:
            results[i] = stop.value

    for i in range(len(searches)):
        advance(i, None, first=True)
    done = 0
    if cluster is None and (workers == 1 or len(searches) <= 1):
        for i in range(len(searches)):
            while i in pending:
                value = fn(pending.pop(i))
                done += 1
                _tick(notes, done)
                advance(i, value)
        return results
    with _backend(workers, cluster, len(searches)) as be:
        running = {be.submit(fn, task): i for i, task in pending.items()}
        pending.clear()
        while running:
            future = be.first(running)
            i = running.pop(future)
            done += 1
            _tick(notes, done)
            advance(i, future.result())  # a task's error (an InputError too) is raised here
            if i in pending:
                running[be.submit(fn, pending.pop(i))] = i
    return results


@dataclass(frozen=True)
class _Backend:
    submit: Callable  # (fn, task) -> a future
    first: Callable  # (futures) -> the first of them done
    as_completed: Callable  # (futures) -> an iterator over them as they finish
    workers: int


@contextmanager
def _backend(workers: int | None, cluster: str | None, n: int):
    """A process pool of min(workers, n) processes, or a dask cluster (started here when "local"),
    stopped however the block ends: after an error or an interruption the tasks still running are
    not waited for (the pool's processes terminated, the cluster's futures cancelled)."""
    if cluster is None:
        size = min(workers or os.cpu_count() or 1, n)
        pool = ProcessPoolExecutor(max_workers=size, initializer=quiet_worker)
        try:
            yield _Backend(pool.submit, lambda fs: next(iter(futures_wait(fs, return_when=FIRST_COMPLETED).done)),
                           as_completed, size)
        except BaseException:
            _terminate(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # the tasks not started never run
        return
    import dask
    from distributed import as_completed as dask_completed
    from distributed import wait as dask_wait

    local = client = None
    submitted: list = []
    # a LocalCluster's workers are forked by a fork server that ignores SIGINT (_fork_server)
    method = {"distributed.worker.multiprocessing-method": "forkserver"} if cluster == "local" else {}
    try:
        with dask.config.set(method):
            with deferred():  # a signal during start-up acts once the cluster is known, so it is closed below
                local, client = _connect(cluster, workers)

        def submit(fn, task):
            submitted.append(client.submit(fn, task, pure=False))
            return submitted[-1]

        yield _Backend(submit, lambda fs: next(iter(dask_wait(list(fs), return_when="FIRST_COMPLETED").done)),
                       dask_completed, _workers_of(client))
    finally:  # the tasks not finished are dropped, the workers stopped
        if client is not None:
            client.cancel(submitted)
            client.close()
        if local is not None:
            local.close()


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop a pool's worker processes now. Python 3.14 has ProcessPoolExecutor.terminate_workers;
    before it, the same through the pool's own table of its processes (stable since Python 3.2)."""
    if hasattr(pool, "terminate_workers"):
        pool.terminate_workers()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for p in processes:
        p.terminate()
    for p in processes:
        p.join(timeout=5)


CHUNKS_PER_WORKER = 4  # dask tasks per worker: few enough that scheduling does not dominate tiny runs,
# enough that a slow chunk does not leave the other workers idle at the end


def _chunks(n: int, workers: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive runs of tasks, about CHUNKS_PER_WORKER per worker."""
    size = max(1, -(-n // max(1, workers * CHUNKS_PER_WORKER)))
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _run_chunk(fn, tasks: list) -> list:
    """One dask task: several runs, in order (a task per tiny run costs more to schedule than to run)."""
    return [fn(t) for t in tasks]


def _workers_of(client) -> int:
    try:
        return max(1, len(client.scheduler_info().get("workers", {})))
    except Exception:  # a scheduler that cannot say: one chunk per CHUNKS_PER_WORKER tasks
        return 1


def _fork_server() -> None:
    """Start multiprocessing's fork server (if it is not running) with SIGINT ignored: the worker
    processes it forks keep that, so a Ctrl-C, which reaches the terminal's whole process group, is
    left to this process, which closes the cluster, instead of a traceback from every worker."""
    from multiprocessing import forkserver

    with sigint_ignored_by_children():
        forkserver.ensure_running()


def _connect(cluster: str, workers: int | None):
    """(the LocalCluster started here or None, a Client of the cluster)."""
    import logging

    from distributed import Client, LocalCluster

    local = None
    try:
        if cluster == "local":
            _fork_server()
            local = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                 dashboard_address=None, silence_logs=logging.CRITICAL)
            return local, Client(local)
        return None, Client(cluster, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        if local is not None:
            local.close()
        raise InputError("--cluster", cluster, f"cannot reach the scheduler ({' '.join(str(exc).split())})") from None


def _tick(progress, done: int) -> None:
    if progress is not None:
        progress(done)
