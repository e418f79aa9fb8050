"""SIGINT and SIGTERM end a long command the same way: its work stopped, one line, the usual code.

A command wrapped in `interruptible` turns either signal into an exception (KeyboardInterrupt for
SIGINT, Interrupted for SIGTERM, whose default action would kill the process on the spot, with no
cleanup), so every `finally` on the way out runs: process pools and dask clusters stop their
workers (parallel.py), a half-written output folder is removed (outputs.py). The command then
prints `interrupted` on stderr and exits with 130 (SIGINT) or 143 (SIGTERM), the shell's 128 + the
signal's number. Further signals while that cleanup runs are ignored, so it finishes.

A cluster's start-up runs with the signals held off (`deferred`), so that what was started is
known and closed. Workers ignore SIGINT (`quiet_worker` for a process pool's; a LocalCluster's are forked by a
fork server started with `sigint_ignored_by_children`): a Ctrl-C reaches every process of the terminal's group, and the parent stops
them itself, without a traceback from each.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading


class Interrupted(BaseException):
    """A termination signal arrived. A BaseException, as KeyboardInterrupt is, so that no
    `except Exception` in the work swallows it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signum)  # args rebuild it: SimPy re-raises a failed process's error as type(e)(*e.args)


def _raise(signum, frame):
    _ignore_further()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(signum)


def _ignore_further() -> None:
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)


def exit_code(exc: BaseException) -> int:
    return 128 + (exc.signum if isinstance(exc, Interrupted) else signal.SIGINT)


def interruptible(command):
    """Wrap a CLI command: SIGINT or SIGTERM stops it, prints `interrupted`, exits 130 or 143."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        import typer

        main = threading.current_thread() is threading.main_thread()  # handlers can only be set there
        before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
        try:
            for s in before:
                signal.signal(s, _raise)
            return command(*args, **kwargs)
        except (KeyboardInterrupt, Interrupted) as exc:
            if main:
                _ignore_further()
            sys.stderr.write("interrupted\n")
            sys.stderr.flush()
            raise typer.Exit(exit_code(exc)) from None
        finally:
            for s, handler in before.items():
                signal.signal(s, handler)

    return wrapper


@contextlib.contextmanager
def deferred():
    """SIGINT and SIGTERM arriving inside the block take effect as it ends, for a start-up that cannot
    be cut midway (a dask LocalCluster half started is left to its atexit hook, which fails loudly).
    Outside the main thread, where no handler can be set, the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in before:
        signal.signal(s, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        if got:
            signal.raise_signal(got[0])  # now, to whatever handles it outside the block


@contextlib.contextmanager
def sigint_ignored_by_children():
    """Processes started inside the block ignore SIGINT for life (the action to ignore a signal is
    inherited; a handler is not), while this one still gets it: SIGINT is blocked as well as
    ignored, and Linux keeps a blocked signal pending even when ignored, so it reaches the
    original handler as the block ends. Keep the block short and free of threads: a thread that
    does not block SIGINT would take it and drop it (elsewhere than Linux it may be lost too)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a SIGINT held meanwhile is delivered now


def quiet_worker() -> None:
    """A pool worker's initializer: Ctrl-C is the parent's to handle, SIGTERM ends the worker at once
    (a forked worker would otherwise inherit the parent's handlers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
