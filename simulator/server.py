"""A first-come-first-served single server with busy-time accounting: a device or a link direction.

Leaner than simpy.Resource: an idle server is taken without scheduling any event, so one job
costs one timeout event. Use it as `yield from server.serve(seconds)` inside a SimPy process.
`serve_until` is the same server for a job that can be stopped partway (a cancelled pipeline run);
`reserve` queues a job without any event, for a server all of whose jobs are reserved (a link's
wire), and `wait_until` waits for its end.
"""

from __future__ import annotations

import math
from collections import deque

import simpy


class Server:
    def __init__(self, env: simpy.Environment, name: str):
        self.env, self.name = env, name
        self.busy = False
        self.busy_s = 0.0  # every job's seconds, counted as the job starts
        self.end_s = 0.0  # when the latest job started ends (jobs follow one another)
        self.run_busy_s = 0.0  # busy seconds up to the latest `mark` (the run's last request finished)
        self.jobs = 0
        self.log: list[tuple] | None = None  # (server, start_s, end_s, label) per job, when recording
        self._waiting: deque[simpy.Event] = deque()
        self.lossy = False  # a link's wire that loses messages: they queue by serve; reserve otherwise

    def _acquire(self):
        if self.busy:
            turn = self.env.event()
            self._waiting.append(turn)
            yield turn  # the releasing job hands the server over still marked busy
        else:
            self.busy = True

    def _release(self) -> None:
        if self._waiting:
            self._waiting.popleft().succeed()
        else:
            self.busy = False

    release = _release  # the end of a job taken by `hold`

    def hold(self, start: float, seconds: float, label: str = "job") -> None:
        """Take the idle server now for a job from `start` (>= now) of `seconds`, booked now, for a
        caller that knows nothing can ask for the server before `start` and waits one timeout for
        whatever comes before the job and the job itself; it calls `release` as the job ends. Jobs
        asking meanwhile queue behind it, as behind serve's."""
        self.busy = True
        self.book(start, seconds, label)

    def serve(self, seconds: float, label: str = "job"):
        """Wait for the server, hold it for `seconds`, hand it to the next waiter."""
        if self.busy:  # _acquire and _release, inlined: every job of every strategy passes here
            turn = self.env.event()
            self._waiting.append(turn)
            yield turn
        else:
            self.busy = True
        self.jobs += 1
        if self.log is not None:
            self.log.append((self.name, self.env.now, self.env.now + seconds, label))
        if seconds > 0:
            env = self.env
            self.busy_s += seconds
            self.end_s = env.now + seconds
            yield env.timeout(seconds)
        if self._waiting:
            self._waiting.popleft().succeed()
        else:
            self.busy = False

    def reserve(self, seconds: float, label: str = "job") -> float:
        """Queue a job of `seconds` and return when it ends, scheduling nothing: for a server whose
        every job is reserved (a link's wire, whose messages nothing interrupts), so that the caller
        waits once for its job and whatever follows it (wait_until). It starts when the jobs reserved
        before it end (first come, first served), as serve's would."""
        now = self.env.now
        start = self.end_s if self.end_s > now else now
        self.book(start, seconds, label)
        return self.end_s if seconds > 0 else start

    def book(self, start: float, seconds: float, label: str = "job") -> None:
        """Account a job of `seconds` from `start` as serve would, scheduling nothing: for a caller
        that alone uses the server (nothing can queue behind it) and waits one timeout for several
        jobs in a row."""
        self.jobs += 1
        if self.log is not None:
            self.log.append((self.name, start, start + seconds, label))
        if seconds > 0:
            self.busy_s += seconds
            self.end_s = start + seconds

    def mark(self) -> None:
        """Note the busy seconds so far (of a job under way, the part done): the run's busy time if
        nothing after this counts (work still under way when the last request finishes, such as a
        draft no one will verify, is not part of the run)."""
        self.run_busy_s = self.busy_s - max(0.0, self.end_s - self.env.now)

    def serve_until(self, seconds: float, stop: simpy.Event, pieces: int = 1, label: str = "job",
                    stopped_label: str = "cancelled"):
        """As serve, for a job of `pieces` equal pieces that is abandoned once the event `stop` has
        triggered, checked between pieces: not started if `stop` has triggered when the job's turn comes
        (nothing held, no job counted), ended with the piece under way if it triggers during the job (the
        log then shows the part held, as `stopped_label`). Returns the seconds held. Costs one event more
        than serve (the wait on job-or-stop), and a stopped job one more (the rest of its piece)."""
        yield from self._acquire()
        held = 0.0
        if not stop.triggered:
            start, held = self.env.now, seconds
            self.jobs += 1
            entry = len(self.log) if self.log is not None else -1
            if self.log is not None:
                self.log.append((self.name, start, start + seconds, label))
            if seconds > 0:
                self.busy_s += seconds  # counted as it starts, as serve does; less what a stop leaves undone
                self.end_s = start + seconds
                done = self.env.timeout(seconds)
                yield self.env.any_of([done, stop])
                # a job that ends at the instant of the stop is whole: its timeout, scheduled first, is processed first
                if not done.processed:  # stopped: end with the piece under way (one just ended is not redone)
                    piece, elapsed = seconds / pieces, self.env.now - start
                    held = min(seconds, math.ceil(elapsed / piece - 1e-9) * piece)
                    self.busy_s -= seconds - held
                    self.end_s = start + held
                    if held > elapsed:
                        yield self.env.timeout(held - elapsed)
                    if self.log is not None:
                        self.log[entry] = (self.name, start, start + held, stopped_label)
        self._release()
        return held


def wait_until(env: simpy.Environment, t: float):
    """Timeouts that bring the clock exactly to t (>= now), as the sum SimPy formed step by step
    would: one, of t - now, lands exactly on t while t <= 2 now (Sterbenz's lemma) or from 0;
    before that, jumps of now each (exact doublings) until it does."""
    now = env.now
    while t > 2 * now > 0:
        yield env.timeout(now)
        now = env.now
    if t > now:
        yield env.timeout(t - now)
