"""Links between devices, each its own object (as SimPy's latency example keeps its Cable).

A link is full duplex: each direction is a first-come-first-served transmitter. A message of S
bytes (payload plus the link's header) waits for its direction, occupies it for 8 S / bandwidth,
then arrives after the one-way delay: latency_ms plus normal jitter, truncated at zero.
Concurrent messages in one direction share the bandwidth by queueing for it.
"""

from __future__ import annotations

import math

import numpy as np
import simpy

from .scenario import LinkSpec
from .server import Server


class Link:
    def __init__(self, env: simpy.Environment, spec: LinkSpec, rng: np.random.Generator):
        self.env, self.spec, self.rng = env, spec, rng
        self.name = spec.label
        self.bits_per_s = spec.bandwidth_mbps * 1e6
        self.latency_s, self.jitter_s = spec.latency_ms / 1000, spec.jitter_ms / 1000
        self.header_bytes = spec.header_bytes
        # direction "up" carries messages from end a to end b, "down" from b to a
        self.wire = {"up": Server(env, f"{self.name}:up"), "down": Server(env, f"{self.name}:down")}
        self.bytes = {"up": 0, "down": 0}
        self.messages = 0

    def direction(self, src: str) -> str:
        return "up" if src == self.spec.a else "down"

    def transfer_s(self, payload_bytes: int) -> float:
        """Time on the wire of one message, in seconds (no queueing, no propagation)."""
        if math.isinf(self.bits_per_s):
            return 0.0
        return 8 * (payload_bytes + self.header_bytes) / self.bits_per_s

    def delay_s(self) -> float:
        if self.jitter_s == 0:
            return self.latency_s
        return max(0.0, self.latency_s + self.jitter_s * self.rng.standard_normal())

    def send(self, src: str, payload_bytes: int):
        """Carry one message from device `src` to the other end: `yield from link.send(...)`."""
        way = self.direction(src)
        self.bytes[way] += payload_bytes + self.header_bytes
        self.messages += 1
        yield from self.wire[way].serve(self.transfer_s(payload_bytes), "transfer")
        delay = self.delay_s()
        if delay > 0:
            yield self.env.timeout(delay)
