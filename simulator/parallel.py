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
from concurrent.futures import ProcessPoolExecutor, as_completed

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
    if cluster is not None:
        return _dask(fn, tasks, workers, cluster, progress)
    if workers == 1 or len(tasks) <= 1:
        results = []
        for task in tasks:
            results.append(fn(task))
            _tick(progress, len(results))
        return results
    return _pool(fn, tasks, workers, progress)


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
    submit, wait, stop = (_dask_pool if cluster is not None else _local_pool)(workers, cluster, len(searches))
    try:
        running = {submit(fn, task): i for i, task in pending.items()}
        pending.clear()
        while running:
            future = wait(running)
            i = running.pop(future)
            done += 1
            _tick(notes, done)
            advance(i, future.result())  # a task's error (an InputError too) is raised here
            if i in pending:
                running[submit(fn, pending.pop(i))] = i
    finally:  # after an error or an interruption the tasks still running are not waited for
        stop(bool(running))
    return results


def _local_pool(workers, cluster, n):
    """(submit, wait for one, stop) of a process pool of min(workers, n) processes."""
    from concurrent.futures import FIRST_COMPLETED
    from concurrent.futures import wait as wait_any

    pool = ProcessPoolExecutor(max_workers=min(workers or os.cpu_count() or 1, n), initializer=quiet_worker)

    def wait(running):
        return next(iter(wait_any(running, return_when=FIRST_COMPLETED).done))

    def stop(unfinished: bool) -> None:
        if unfinished:
            _terminate(pool)
        pool.shutdown(wait=True, cancel_futures=True)

    return pool.submit, wait, stop


def _dask_pool(workers, cluster, n):
    """The same on a dask cluster (started here when "local")."""
    import dask
    from distributed import wait as dask_wait

    method = {"distributed.worker.multiprocessing-method": "forkserver"} if cluster == "local" else {}
    with dask.config.set(method):
        with deferred():
            local, client = _connect(cluster, workers)

    def wait(running):
        return next(iter(dask_wait(list(running), return_when="FIRST_COMPLETED").done))

    def stop(unfinished: bool) -> None:
        client.close()
        if local is not None:
            local.close()

    return (lambda fn, task: client.submit(fn, task, pure=False)), wait, stop


def _pool(fn, tasks, workers, progress) -> list:
    results: list = [None] * len(tasks)
    pool = ProcessPoolExecutor(max_workers=min(workers or os.cpu_count() or 1, len(tasks)), initializer=quiet_worker)
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
