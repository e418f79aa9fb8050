"""Edge drafters sharing one verifier (distributed speculative decoding: DSD, SLED, GoodSpeed).

Each user drafts on its own edge device (user u on edges[u mod n]) and sends its drafts over
that edge's link; a verifier process on the target device takes waiting verifications in
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
from .base import Placed, Placement, Role, StrategySpec
from .speculative import Lane, SpeculativeProcess, chain_estimate, draft_token_bytes


class SharedVerifier(StrategySpec):
    """Edge devices draft for their own users (DSD, SLED, GoodSpeed); their drafts cross each
    edge's link to one verifier, which verifies the waiting drafts in batches."""

    kind: Literal["shared_verifier"] = Field(description="Strategy kind: edge drafters, one batching verifier.")
    draft_model: str = Field(description="Key of the draft model in `models`, run on every edge device.")
    edges: list[str] = Field(min_length=1, description="Edge devices; user u drafts on edges[u mod len(edges)] "
                             "(open loops: request u).")
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

    def placements(self) -> dict[str, Placed]:
        drafts = {f"edges.{i}": Placed(self.draft_model, e, Role.DRAFT) for i, e in enumerate(self.edges)}
        return drafts | {"target": self.target.placed(Role.TARGET)}

    def exchanges(self) -> list[tuple[str, str]]:
        return [(f"edges.{i}", "target") for i in range(len(self.edges))]

    def build(self, world):
        return SharedVerifierProcess(self, world)

    def estimate(self, f) -> Closed:
        """Speculative's step with the first edge standing for all (identical edges, each serving
        1/n of the users) and every verification riding in a full batch of min(max_batch, users)."""
        batch = min(self.max_batch, getattr(f.scenario.workload.arrival, "users", self.max_batch))
        return chain_estimate(f, self, self.placements()["edges.0"], len(self.edges), batch)

    def describe(self) -> str:
        return (f"shared verifier, gamma {self.gamma}: {self.draft_model} on {len(self.edges)} edge device(s), "
                f"{self.target.model} on {self.target.device} in {self.policy} batches of up to {self.max_batch}")


def choose(waiting: list[tuple], policy: str, max_batch: int, goodput: dict[int, float]) -> list[int]:
    """Indices of the waiting verifications (oldest first) that the next batch takes.
    fcfs and max_batch: the oldest max_batch; fair: the max_batch whose users have the lowest
    goodput so far (ties: oldest first)."""
    order = range(len(waiting))
    if policy == "fair":
        order = sorted(order, key=lambda i: (goodput.get(waiting[i][0].user, 0.0), i))
    return sorted(list(order)[:max_batch])


class SharedVerifierProcess(SpeculativeProcess):
    """Speculative's step with each user's drafter and link its edge's, and the verification a
    place in the verifier's queue: the batch the verifier takes it in draws its accepted count."""

    def __init__(self, spec, world):
        self.env, self.spec, self.steps, self.acceptance = world.env, spec, world.steps, world.acceptance
        self.draw = world.acceptance.draw
        self.depth = spec.gamma
        self.sent = list(range(self.depth + 1))
        t = world.devices[spec.target.device]
        self.t_server, self.t_fwd = t.server, t.forward[spec.target.model]
        self.per_token_bytes = draft_token_bytes(world, spec.draft_payload, spec.draft_model)
        edges = [world.endpoint(name, spec.draft_model, t.name) for name in spec.edges]
        self.lanes = [Lane(e.server, e.forward, e.link, e.name, e.link, t.name) for e in edges]
        self.waiting: list[tuple] = []  # (record, drafted, context, event)
        self.goodput: dict[int, float] = {}  # user -> committed tokens per second in system so far
        self._wake = self._full = None  # events the verifier waits on: any work; a full batch
        world.env.process(self._verifier())

    def lane(self, r) -> Lane:
        return self.lanes[r.user % len(self.lanes)]

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
