"""Edge drafters sharing one verifier (distributed speculative decoding: DSD, SLED, GoodSpeed).

Each request drafts on one edge (by `assign`: user u's requests on edges[u mod n], request i on
edges[i mod n], or the edge of the highest goodput so far), with that edge's draft model and
gamma, and sends its drafts over that edge's link; a verifier process on the target device takes waiting verifications in
batches and runs one target forward per batch: batch = the number taken, query = the longest
draft + 1, context = the longest context among them (the batch is padded to it). Prefills run
on the target one request at a time, between batches, first come first served. Which waiting
verifications a batch takes is a plain decision (`choose`), free of SimPy.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..closed_form import Closed
from ..fields import Payload
from ..fields import Strict
from .base import Placed, Placement, Role, StrategySpec
from .speculative import Lane, SpeculativeProcess, chain_estimate, draft_token_bytes


class Edge(Strict):
    """One edge drafter: its device, and the draft model and gamma it runs (the strategy's by default)."""

    device: str = Field(description="Key of the edge device in `devices`.")
    draft_model: str | None = Field(None, description="Key of the draft model in `models` this edge runs; "
                                    "default: the strategy's draft_model.")
    gamma: int | None = Field(None, ge=0, le=64, description="Tokens this edge drafts per step; default: the "
                              "strategy's gamma.")


class SharedVerifier(StrategySpec):
    """Edge devices draft for their own users (DSD, SLED, GoodSpeed); their drafts cross each
    edge's link to one verifier, which verifies the waiting drafts in batches."""

    kind: Literal["shared_verifier"] = Field(description="Strategy kind: edge drafters, one batching verifier.")
    draft_model: str = Field(description="Key of the draft model in `models`, run on every edge that names "
                             "none of its own.")
    edges: list[str | Edge] = Field(min_length=1, description="Edge drafters: a device key, or {device, "
                                    "draft_model, gamma} for an edge with its own draft model or gamma.")
    assign: Literal["user", "round_robin", "learned"] = Field(
        "user", description="Which edge drafts a request: user, user u's requests on edges[u mod n] (open "
        "loops: request u); round_robin, request i on edges[i mod n]; learned, each edge once in turn, then "
        "the edge whose finished requests made the most output tokens per second in the system (ties: "
        "the first), as a request choosing among drafters by what it observed (SPIN).")
    target: Placement = Field(description="Where the verifier runs.")
    gamma: int = Field(4, ge=0, le=64, description="Tokens drafted per step.")
    policy: Literal["fcfs", "max_batch", "fair"] = Field(
        "fcfs", description="Which waiting verifications the free verifier takes: fcfs, the oldest up to "
        "max_batch; max_batch, the same after waiting up to max_wait_ms for a full batch; fair, the users "
        "with the lowest goodput so far first (proportional fairness, as GoodSpeed).")
    max_batch: int = Field(8, ge=1, le=1024, description="Most verifications in one batched target forward.")
    max_wait_ms: float = Field(0.0, ge=0, allow_inf_nan=False, description="max_batch policy: longest wait "
                               "for a full batch, in ms.")
    draft_payload: Payload = Field(
        "ids", description="What crosses the link per drafted token, as for speculative.")

    def edge_specs(self) -> list[Edge]:
        """Every edge with its draft model and gamma filled in."""
        return [Edge(device=e, draft_model=self.draft_model, gamma=self.gamma) if isinstance(e, str) else
                e.model_copy(update={"draft_model": e.draft_model or self.draft_model,
                                     "gamma": self.gamma if e.gamma is None else e.gamma})
                for e in self.edges]

    def lookahead_tokens(self) -> int:
        return max(e.gamma for e in self.edge_specs())

    def placements(self) -> dict[str, Placed]:
        drafts = {f"edges.{i}": Placed(e.draft_model, e.device, Role.DRAFT) for i, e in enumerate(self.edge_specs())}
        return drafts | {"target": self.target.placed(Role.TARGET)}

    def exchanges(self) -> list[tuple[str, str]]:
        return [(f"edges.{i}", "target") for i in range(len(self.edges))]

    def build(self, world):
        return SharedVerifierProcess(self, world)

    def estimate(self, f) -> Closed:
        """Speculative's step with the first edge standing for all (identical edges, each serving
        1/n of the users; edges of other draft models or gammas are not told apart here) and every
        verification riding in a full batch of min(max_batch, users)."""
        batch = min(self.max_batch, getattr(f.scenario.workload.arrival, "users", self.max_batch))
        return chain_estimate(f, self, self.placements()["edges.0"], len(self.edges), batch)

    def describe(self) -> str:
        return (f"shared verifier, gamma {self.gamma}: {self.draft_model} on {len(self.edges)} edge device(s) "
                f"({self.assign} assignment), "
                f"{self.target.model} on {self.target.device} in {self.policy} batches of up to {self.max_batch}")


def choose(waiting: list[tuple], policy: str, max_batch: int, goodput: dict[int, float]) -> list[int]:
    """Indices of the waiting verifications (oldest first) that the next batch takes.
    fcfs and max_batch: the oldest max_batch; fair: the max_batch whose users have the lowest
    goodput so far (ties: oldest first)."""
    order = range(len(waiting))
    if policy == "fair":
        order = sorted(order, key=lambda i: (goodput.get(waiting[i][0].user, 0.0), i))
    return sorted(list(order)[:max_batch])


class EdgeTally:
    """Finished requests of one edge (or user): how many, their output tokens and seconds in the system."""

    __slots__ = ("requests", "tokens", "seconds")

    def __init__(self) -> None:
        self.requests, self.tokens, self.seconds = 0, 0, 0.0

    def add(self, tokens: int, seconds: float) -> None:
        self.requests += 1
        self.tokens += tokens
        self.seconds += seconds

    @property
    def goodput(self) -> float | None:
        """Output tokens per second in the system (None before any request finished, or in no time)."""
        return self.tokens / self.seconds if self.seconds > 0 else None


def jain(x: list[float]) -> float | None:
    """Jain's fairness index (sum x)^2 / (n sum x^2): 1 when all are equal, 1/n when one has all."""
    return sum(x) ** 2 / (len(x) * sum(v * v for v in x)) if x and any(x) else None


def assign(policy: str, r, served: list[EdgeTally], assigned: int) -> int:
    """The edge that drafts request r (a plain decision): by user, round robin over the requests
    given an edge so far, or learned: edges never tried first, in order; then the best goodput of
    finished requests (ties: the first edge); before any has finished, round robin."""
    n = len(served)
    if policy == "user":
        return r.user % n
    if policy == "round_robin":
        return r.id % n
    if assigned < n:
        return assigned
    scores = [t.goodput for t in served]
    if all(g is None for g in scores):
        return assigned % n
    return max(range(n), key=lambda i: (scores[i] is not None, scores[i] or 0.0, -i))


class SharedVerifierProcess(SpeculativeProcess):
    """Speculative's step with each user's drafter and link its edge's, and the verification a
    place in the verifier's queue: the batch the verifier takes it in draws its accepted count."""

    def __init__(self, spec, world):
        self.env, self.spec, self.steps, self.acceptance = world.env, spec, world.steps, world.acceptance
        self.draw = world.acceptance.draw
        edges = spec.edge_specs()
        self.gammas = [e.gamma for e in edges]
        self.depth = max(self.gammas)
        self.sent = list(range(self.depth + 1))
        t = world.devices[spec.target.device]
        self.t_server, self.t_fwd = t.server, t.forward[spec.target.model]
        self.token_bytes = [draft_token_bytes(world, spec.draft_payload, e.draft_model) for e in edges]
        ends = [world.endpoint(e.device, e.draft_model, t.name) for e in edges]
        self.lanes = [Lane(e.server, e.forward, e.link, e.name, e.link, t.name) for e in ends]
        self.edge_of: dict[int, int] = {}  # request id -> the edge drafting it, while it is served
        self.served = [EdgeTally() for _ in edges]  # per edge, its finished requests
        self.users: dict[int, EdgeTally] = {}  # per user, likewise (for Jain's index)
        self.waiting: list[tuple] = []  # (record, drafted, context, event)
        self.goodput: dict[int, float] = {}  # user -> committed tokens per second in system so far
        self._wake = self._full = None  # events the verifier waits on: any work; a full batch
        world.env.process(self._verifier())

    def lane(self, r) -> Lane:
        i = self.edge_of.get(r.id)
        if i is None:
            i = self.edge_of[r.id] = assign(self.spec.assign, r, self.served, self._assigned)
            self._assigned += 1
        return self.lanes[i]

    _assigned = 0  # requests given an edge so far

    def depth_of(self, r) -> int:
        return self.gammas[self.edge_of[r.id]]

    def token_bytes_of(self, r) -> int:
        return self.token_bytes[self.edge_of[r.id]]

    def serve(self, r):
        yield from super().serve(r)
        seconds, tokens = r.finish_s - r.arrival_s, r.output_tokens
        self.served[self.edge_of.pop(r.id)].add(tokens, seconds)
        self.users.setdefault(r.user, EdgeTally()).add(tokens, seconds)

    def report(self) -> dict:
        """The report's `fleet` block: per edge its device, draft model, gamma, requests, output tokens and
        goodput (output tokens over its requests' seconds in the system); Jain's index of the users'
        goodput ((sum x)^2 / (n sum x^2): 1 when all are equal)."""
        edges = {}
        for i, (e, t) in enumerate(zip(self.spec.edge_specs(), self.served)):
            edges[f"{i}"] = {"device": e.device, "draft_model": e.draft_model, "gamma": e.gamma,
                             "requests": t.requests, "output_tokens": t.tokens, "goodput_tokens_per_s": t.goodput}
        return {"fleet": {"edges": edges,
                          "users_jain_index": jain([t.goodput for t in self.users.values() if t.goodput is not None])}}

    def target_verify(self, r, g: int, n: int, context: int):
        """Queue for the verifier; its batch returns the accepted count."""
        verdict = self.env.event()
        self.waiting.append((r, g, context, verdict))
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()
        if self._full is not None and not self._full.triggered and len(self.waiting) >= self.spec.max_batch:
            self._full.succeed()
        k = yield verdict
        return k

    def on_commit(self, r, done: int) -> None:
        self.goodput[r.user] = done / max(self.env.now - r.arrival_s, 1e-12)

    def _verifier(self):
        env, spec = self.env, self.spec
        while True:
            if not self.waiting:
                self._wake = env.event()
                yield self._wake
            if spec.policy == "max_batch" and len(self.waiting) < spec.max_batch and spec.max_wait_ms > 0:
                self._full = env.event()  # arrivals meanwhile join this batch; a full one goes at once
                yield self._full | env.timeout(spec.max_wait_ms / 1000)
            taken = choose(self.waiting, spec.policy, spec.max_batch, self.goodput)
            batch = [self.waiting[i] for i in taken]
            gone = set(taken)
            self.waiting = [w for i, w in enumerate(self.waiting) if i not in gone]
            query = max(g for _, g, _, _ in batch) + 1
            context = max(c for _, _, c, _ in batch)
            yield from self.t_server.serve(self.t_fwd.forward_s(len(batch), query, context) + self.t_fwd.step_s, "verify")
            for _, g, _, verdict in batch:
                verdict.succeed(self.draw(g) if g else 0)
