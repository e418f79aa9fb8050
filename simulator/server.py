"""A first-come-first-served single server with busy-time accounting: a device or a link direction.

Leaner than simpy.Resource: an idle server is taken without scheduling any event, so one job
costs one timeout event. Use it as `yield from server.serve(seconds)` inside a SimPy process.
"""

from __future__ import annotations

from collections import deque

import simpy


class Server:
    def __init__(self, env: simpy.Environment, name: str):
        self.env, self.name = env, name
        self.busy = False
        self.busy_s = 0.0
        self.jobs = 0
        self.log: list[tuple] | None = None  # (server, start_s, end_s, label) per job, when recording
        self._waiting: deque[simpy.Event] = deque()

    def serve(self, seconds: float, label: str = "job"):
        """Wait for the server, hold it for `seconds`, hand it to the next waiter."""
        if self.busy:
            turn = self.env.event()
            self._waiting.append(turn)
            yield turn  # the releasing job hands the server over still marked busy
        else:
            self.busy = True
        self.jobs += 1
        if self.log is not None:
            self.log.append((self.name, self.env.now, self.env.now + seconds, label))
        if seconds > 0:
            self.busy_s += seconds
            yield self.env.timeout(seconds)
        if self._waiting:
            self._waiting.popleft().succeed()
        else:
            self.busy = False
