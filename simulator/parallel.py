"""Running many independent simulations: in this process, on local cores, or on a dask cluster.

The unit of work is a pure, module-level function of one picklable task (scenario data, the
configuration's overrides, a seed) returning a flat dict, so the results are the same whatever
runs them; `run_all` returns them in task order. Backends:

  workers=1           in this process, one task after another
  workers=N or None   a ProcessPoolExecutor with N processes (None: every local core)
  cluster="local"     a dask.distributed LocalCluster started here (N worker processes)
  cluster=ADDRESS     the dask.distributed scheduler at ADDRESS (e.g. tcp://10.0.0.5:8786); its
                      workers need specsim installed and the scenario's files at the same paths
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

from .errors import InputError

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
    results: list = [None] * len(tasks)
    pool = ProcessPoolExecutor(max_workers=min(workers or os.cpu_count() or 1, len(tasks)))
    try:
        futures = {pool.submit(fn, task): i for i, task in enumerate(tasks)}
        for done, future in enumerate(as_completed(futures), 1):
            results[futures[future]] = future.result()  # a task's error (an InputError too) is raised here
            _tick(progress, done)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after an error, the tasks not started never run
    return results


def _dask(fn, tasks, workers, cluster, progress) -> list:
    import logging

    from distributed import Client, LocalCluster
    from distributed import as_completed as dask_completed

    local = None
    try:
        if cluster == "local":
            local = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                 dashboard_address=None, silence_logs=logging.CRITICAL)
            client = Client(local)
        else:
            client = Client(cluster, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        if local is not None:
            local.close()
        raise InputError("--cluster", cluster, f"cannot reach the scheduler ({' '.join(str(exc).split())})") from None
    futures: list = []
    try:
        futures = client.map(fn, tasks, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(tasks)
        for done, future in enumerate(dask_completed(futures), 1):
            results[index[future.key]] = future.result()
            _tick(progress, done)
        return results
    finally:
        client.cancel(futures)  # after an error, the tasks not finished are dropped
        client.close()
        if local is not None:
            local.close()


def _tick(progress, done: int) -> None:
    if progress is not None:
        progress(done)
