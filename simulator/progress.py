"""Progress of long commands on stderr: a rich bar on a terminal, a plain line now and then elsewhere."""

from __future__ import annotations

import sys

from rich.console import Console

err_console = Console(stderr=True, highlight=False)


class _lines:
    """Progress off a terminal: a plain line on stderr at most every `every_s` seconds (a log shows the
    run is alive; a short run prints nothing)."""

    def __init__(self, what: str, total: int | None = None, every_s: float = 10.0):
        import time

        self.what, self.total, self.every_s, self._clock = what, total, every_s, time.monotonic
        self.start = self.last = self._clock()

    def __call__(self, done: int, total: int | None = None) -> None:
        now = self._clock()
        if now - self.last >= self.every_s:
            self.last = now
            of = total or self.total
            print(f"{self.what}: {done}{f'/{of}' if of else ''} after {now - self.start:.0f} s", file=sys.stderr,
                  flush=True)


class _count_progress:
    """A progress bar of finished units (runs, searches) with the time left, on a terminal's stderr;
    plain lines now and then elsewhere."""

    def __init__(self, total: int | None, what: str):
        self.total, self.what, self._bar = total, what, None

    def __enter__(self):
        if not sys.stderr.isatty():
            return _lines(self.what, self.total)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        columns = (MofNCompleteColumn(), TimeRemainingColumn()) if self.total else (TextColumn("{task.completed}"),)
        self._bar = Progress(TextColumn(self.what), BarColumn(), *columns, console=err_console, transient=True)
        self._bar.start()
        self._task = self._bar.add_task(self.what, total=self.total)
        return lambda done: self._bar.update(self._task, completed=done)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
        return False


class _progress:
    """A progress bar on a terminal's stderr for runs of many requests; plain lines now and then elsewhere."""

    def __enter__(self):
        self._bar = None
        if not sys.stderr.isatty():
            return _lines("simulated requests")
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
        self._bar = Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.completed}/{task.total} requests"),
                             TimeRemainingColumn(), console=err_console, transient=True)
        self._bar.start()
        self._task = self._bar.add_task("run", total=None)
        return self._update

    def _update(self, done: int, total: int | None) -> None:
        self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
        return False
