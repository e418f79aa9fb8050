"""Links between devices, each its own object (as SimPy's latency example keeps its Cable).

A link is full duplex: each direction ("up" from end a to end b, "down" from b to a) is a
first-come-first-served transmitter. A message of S bytes (payload plus the link's header) waits
for its direction, occupies it for 8 S / bandwidth of that direction, and is lost with
probability `loss`; a lost transmission is sent again (queueing afresh) `retransmit_ms` after it
ended. The one that gets through arrives after the one-way delay: latency plus jitter drawn from
the link's jitter kind. Links naming one medium share its transmitters (a Medium), so their
messages in one direction queue together. Every draw comes from the network stream given to the link.

A wire whose links lose nothing is reserved, not waited on: its messages cannot be interrupted, so
a message's end on the wire is known as it is sent (Server.reserve, first come first served) and
the message waits one timeout, to its arrival, where waiting for the wire, then for the transfer,
then for the flight took two or three; its flight delay is drawn as it is sent (on a lossy link,
once it got through), so the shared stream's draws can come in another order when a message sent
later ends its wire time sooner on another link (tests/test_links.py checks the two paths against
each other).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import simpy

from .scenario import LinkSpec
from .server import Server, wait_until

WAYS = ("up", "down")


def block_uniforms(rng: np.random.Generator, block: int = 512):
    """rng.random(), drawn a block at a time (next() of this generator): the very doubles in the same
    order (numpy fills a block with the draws single calls would make), at a fraction of a call's
    cost. Only for a stream nothing else draws from (every link on it jitters uniformly or not at
    all): it runs a block ahead."""
    while True:
        yield from rng.random(block).tolist()


def uniform_draws(rng: np.random.Generator, specs: list[LinkSpec]):
    """The uniform draws of the links `specs` sharing stream `rng`: block_uniforms where nothing else
    draws from it, else rng.random itself."""
    if all(s.jitter_ms == 0 or s.jitter_kind == "uniform" for s in specs):
        return block_uniforms(rng).__next__
    return rng.random


class Medium:
    """One transmitter per direction shared by every link on the medium (stations of one access point)."""

    def __init__(self, env: simpy.Environment, name: str):
        self.name = name
        self.wire = {way: Server(env, f"{name}:{way}") for way in WAYS}
        self.links: list[str] = []  # names of the links on it, in scenario order


class Link:
    def __init__(self, env: simpy.Environment, spec: LinkSpec, rng: np.random.Generator,
                 media: dict[str, Medium] | None = None, uniform=None):
        self.env, self.spec, self.rng = env, spec, rng
        self.uniform = uniform or rng.random  # rng.random(), or the same draws a block at a time
        # losses draw from a stream of their own (spawned, so the delays' draws are untouched): a
        # change of loss then never shifts which delay a message draws (common random numbers)
        self.loss_rng = rng.spawn(1)[0]
        self.name = spec.label
        mbps = {"up": spec.up_mbps or spec.bandwidth_mbps, "down": spec.down_mbps or spec.bandwidth_mbps}
        self.bits_per_s = {way: mbps[way] * 1e6 for way in WAYS}
        self.latency_s, self.jitter_s, self.jitter_kind = spec.latency_ms / 1000, spec.jitter_ms / 1000, spec.jitter_kind
        self.loss = spec.loss
        self.retransmit_s = (2 * spec.latency_ms if spec.retransmit_ms is None else spec.retransmit_ms) / 1000
        self.header_bytes = spec.header_bytes
        self.medium: Medium | None = None
        if spec.medium is not None:
            media = {} if media is None else media  # the engine passes one dict for all its links
            if spec.medium not in media:
                media[spec.medium] = Medium(env, spec.medium)
            self.medium = media[spec.medium]
            self.medium.links.append(self.name)
            self.wire = self.medium.wire
        else:
            self.wire = {way: Server(env, f"{self.name}:{way}") for way in WAYS}
        for w in self.wire.values():  # a wire whose every message gets through is reserved, not waited on
            w.lossy = w.lossy or self.loss > 0
        self._sent = {way: deque() for way in WAYS}  # (end, seconds) of reserved transmissions not yet settled
        self.busy_s = {way: 0.0 for way in WAYS}  # this link's own seconds on its transmitters
        self.run_busy_s = dict(self.busy_s)  # as they were at the latest `mark` (the last request finished)
        self.bytes = {way: 0 for way in WAYS}  # bytes put on the wire, every attempt counted
        self.messages = 0
        self.retransmissions = 0
        self.host_s = 0.0  # the two ends' host time per message (their profiles' message_ms), set by the engine

    def direction(self, src: str) -> str:
        return "up" if src == self.spec.a else "down"

    def transfer_s(self, payload_bytes: int, src: str | None = None) -> float:
        """Time on the wire of one transmission from `src` (default: end a), in seconds."""
        bits_per_s = self.bits_per_s["up" if src is None else self.direction(src)]
        if math.isinf(bits_per_s):
            return 0.0
        return 8 * (payload_bytes + self.header_bytes) / bits_per_s

    def delay_s(self) -> float:
        """One draw of the one-way delay after a transmission that got through, in seconds."""
        if self.jitter_s == 0:
            return self.latency_s
        if self.jitter_kind == "uniform":
            # the very double uniform(0, 2 jitter) draws (0 + 2 jitter x U), without its argument handling
            return self.latency_s + 2 * self.jitter_s * self.uniform()
        if self.jitter_kind == "exponential":
            return self.latency_s + self.rng.exponential(self.jitter_s)
        return max(0.0, self.latency_s + self.jitter_s * self.rng.standard_normal())

    def lost_attempts(self) -> int:
        """Transmissions of one message that are lost before one gets through: geometric,
        P(lost >= n) = loss^n, drawn from one uniform by inversion, so that for the same seed a
        higher loss never gives a message fewer attempts. No draw when loss is 0; the draws come
        from the link's own loss stream, so the delays drawn do not depend on the loss."""
        if self.loss == 0:
            return 0
        return int(math.log(1.0 - self.loss_rng.random()) / math.log(self.loss))

    # ------------------------------------------------------------ means, for closed forms

    def mean_delay_s(self) -> float:
        """Mean of delay_s(): latency + jitter for exponential and uniform jitter; for normal jitter
        the mean of max(0, N(latency, jitter^2)), which is latency while jitter << latency."""
        lat, jit = self.latency_s, self.jitter_s
        if jit == 0:
            return lat
        if self.jitter_kind != "normal":
            return lat + jit
        z = lat / jit
        return lat * 0.5 * (1 + math.erf(z / math.sqrt(2))) + jit * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    def mean_attempts(self) -> float:
        """Mean transmissions per message: 1 / (1 - loss) (geometric)."""
        return 1 / (1 - self.loss)

    def mean_wire_s(self, payload_bytes: int, src: str | None = None) -> float:
        """Mean seconds one message holds its transmitter, every attempt counted."""
        return self.mean_attempts() * self.transfer_s(payload_bytes, src)

    def mean_flight_s(self) -> float:
        """Mean time a message spends off the wire between its first transmission and its arrival:
        (attempts - 1) x retransmit + delay + the two ends' host time."""
        return (self.mean_attempts() - 1) * self.retransmit_s + self.mean_delay_s() + self.host_s

    def mean_message_s(self, payload_bytes: int, src: str | None = None) -> float:
        """Mean time from the first transmission of a message to its arrival, without queueing."""
        return self.mean_wire_s(payload_bytes, src) + self.mean_flight_s()

    def mark(self) -> None:
        """Note the transmitters' seconds so far (messages sent in full): the run's, if nothing after
        this counts (see Server.mark)."""
        for way in WAYS:
            self._settle(way)
        self.run_busy_s = dict(self.busy_s)

    def _settle(self, way: str) -> None:
        """Count the reserved transmissions that have ended, in the order they end (first come, first
        served), as the waiting path counts each when it ends."""
        sent, now = self._sent[way], self.env.now
        while sent and sent[0][0] <= now:
            self.busy_s[way] += sent.popleft()[1]

    # ------------------------------------------------------------ the process

    def post(self, src: str, payload_bytes: int) -> float:
        """Reserve one message from `src` on a wire that loses nothing, as `send` does, and return
        when it arrives (its wire time and flight drawn now): for a caller that schedules the
        arrival itself. The wire must not be lossy."""
        way = "up" if src == self.spec.a else "down"  # direction(src) and transfer_s, inline: once per message
        bits_per_s, sent_bytes = self.bits_per_s[way], payload_bytes + self.header_bytes
        seconds = 0.0 if math.isinf(bits_per_s) else 8 * sent_bytes / bits_per_s
        self.messages += 1
        self.bytes[way] += sent_bytes
        end = self.wire[way].reserve(seconds, "transfer")
        sent = self._sent[way]
        if len(sent) > 16:  # the ended ones add up in the order they end whenever they are counted:
            self._settle(way)  # now and then is enough to keep the queue short (mark counts the rest)
        sent.append((end, seconds))
        delay = self.delay_s() + self.host_s
        return end + delay if delay > 0 else end

    def send(self, src: str, payload_bytes: int):
        """Carry one message from device `src` to the other end: `yield from link.send(...)`."""
        way = self.direction(src)
        wire = self.wire[way]
        if not wire.lossy:  # one event: the wire reserved first come, first served, then the flight
            t, now = self.post(src, payload_bytes), self.env.now
            if t > 2 * now > 0:  # early in a run: wait_until's exact doublings
                yield from wait_until(self.env, t)
            elif t > now:  # one timeout lands exactly on t (wait_until's own case, inline)
                yield self.env.timeout(t - now)
            return
        seconds = self.transfer_s(payload_bytes, src)
        self.messages += 1
        lost = self.lost_attempts()  # a reliable wire (loss 0) draws nothing: only here
        self.retransmissions += lost
        for attempt in range(lost + 1):
            self.bytes[way] += payload_bytes + self.header_bytes
            yield from wire.serve(seconds, "transfer" if attempt == 0 else "retransmit")
            self.busy_s[way] += seconds
            if attempt < lost and self.retransmit_s > 0:
                yield self.env.timeout(self.retransmit_s)
        delay = self.delay_s() + self.host_s
        if delay > 0:
            yield self.env.timeout(delay)
