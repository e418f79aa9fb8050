"""Running many independent simulations: in this process, on local cores, or on a dask cluster.

The unit of work is a pure, module-level function of one picklable task (scenario data, the
configuration's overrides, a seed) returning a flat dict, so the results are the same whatever
runs them; `run_all` returns them in task order. Backends:

  workers=1           in this process, one task after another
  workers=N or None   a ProcessPoolExecutor with N processes (None: every local core)
  cluster="local"     a dask.distributed LocalCluster started here (N worker processes)
  cluster=ADDRESS     the dask.distributed scheduler at ADDRESS (e.g. tcp://10.0.0.5:8786); its
                      workers need specsim installed and the scenario's files at the same paths

A task may call `note()` after each unit of its own work (a plan's trial): `run_all(..., notes=f)`
calls f(units so far) in the parent as they happen, from this process or from the pool's workers
(through a queue; a dask cluster reports tasks only).

However `run_all` ends (an error, SIGINT or SIGTERM: interrupts.py), it stops the workers it
started before returning or raising: the pool's processes are terminated, a LocalCluster is
closed, so none is left running.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

from .errors import InputError
from .interrupts import deferred, quiet_worker, sigint_ignored_by_children

EXTRA = "pip install 'specsim[cluster]'"
_note: Callable[[], None] | None = None  # where note() reports: a callback here, a queue's put in a worker


def note() -> None:
    """One unit of a task's work done (see the module's docstring); nothing when nobody listens."""
    if _note is not None:
        _note()


def _worker_init(queue) -> None:
    global _note
    quiet_worker()
    _note = None if queue is None else (lambda: queue.put(1))


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
            progress: Callable[[int], None] | None = None, notes: Callable[[int], None] | None = None) -> list:
    """[fn(task) for task in tasks], computed by the chosen backend; progress(done) after each, and
    notes(units) after each note() of a task."""
    global _note
    check_backend(workers, cluster)
    if cluster is not None:
        return _dask(fn, tasks, workers, cluster, progress)
    units = [0]

    def count() -> None:
        units[0] += 1
        _tick(notes, units[0])

    if workers == 1 or len(tasks) <= 1:
        results, _note = [], count if notes is not None else None
        try:
            for task in tasks:
                results.append(fn(task))
                _tick(progress, len(results))
        finally:
            _note = None
        return results
    return _pool(fn, tasks, workers, progress, count if notes is not None else None)


def _pool(fn, tasks, workers, progress, count) -> list:
    import multiprocessing
    import threading

    queue = multiprocessing.get_context().Queue() if count is not None else None
    drain = None
    if queue is not None:  # the workers' notes, counted here as they come; None ends the thread
        drain = threading.Thread(target=lambda: [count() for _ in iter(queue.get, None)], daemon=True)
        drain.start()
    results: list = [None] * len(tasks)
    pool = ProcessPoolExecutor(max_workers=min(workers or os.cpu_count() or 1, len(tasks)), initializer=_worker_init,
                               initargs=(queue,))
    try:
        futures = {pool.submit(fn, task): i for i, task in enumerate(tasks)}
        for done, future in enumerate(as_completed(futures), 1):
            results[futures[future]] = future.result()  # a task's error (an InputError too) is raised here
            _tick(progress, done)
    except BaseException:  # an error, or an interruption: the tasks still running are not waited for
        _terminate(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # the tasks not started never run
        if queue is not None:
            queue.put(None)
            drain.join(timeout=5)
            queue.close()
    return results


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


def _dask(fn, tasks, workers, cluster, progress) -> list:
    import dask
    from distributed import as_completed as dask_completed

    local = client = None
    futures: list = []
    # a LocalCluster's workers are forked by a fork server that ignores SIGINT (_fork_server)
    method = {"distributed.worker.multiprocessing-method": "forkserver"} if cluster == "local" else {}
    try:
        with dask.config.set(method):
            with deferred():  # a signal during start-up acts once the cluster is known, so it is closed below
                local, client = _connect(cluster, workers)
            chunks = _chunks(len(tasks), _workers_of(client))
            futures = client.map(_run_chunk, [fn] * len(chunks), [tasks[a:b] for a, b in chunks], pure=False)
            index = {f.key: chunks[i] for i, f in enumerate(futures)}
            results: list = [None] * len(tasks)
            done = 0
            for future in dask_completed(futures):
                a, b = index[future.key]
                results[a:b] = future.result()
                done += b - a
                _tick(progress, done)
            return results
    finally:  # after an error or an interruption, the tasks not finished are dropped, the workers stopped
        if client is not None:
            client.cancel(futures)
            client.close()
        if local is not None:
            local.close()


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
