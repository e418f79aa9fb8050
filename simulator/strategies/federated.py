"""Federated verification (SpecFed-style): K workers verify each drafted block in parallel.

Per step: the drafter (where the user is, which also aggregates) drafts g tokens; the block
goes to every worker over its own link; each worker runs its model over the g + 1 tokens and
uploads its top-k probabilities for every position, (g + 1) x top_k x (4 B id + 2 B
probability); when the last upload is in, the drafter averages them (a weighted average of
the workers' distributions: no time is charged) and the acceptance model decides how many
drafts the averaged distribution accepts. Workers that share a device queue on it. With
`drafters`, user u drafts on [draft, *drafters][u mod n], each with its own model, gamma and
links to every worker; all of them share the workers.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .. import payloads
from ..closed_form import Closed
from ..fields import Payload
from .base import Placed, Placement, Role, StrategySpec
from .speculative import TOKEN_ID_BYTES, Lane, SpeculativeProcess, draft_token_bytes, prelude


class Drafter(Placement):
    """One more drafting edge: a draft model on a device, and the tokens it drafts a step."""

    gamma: Annotated[int, Field(ge=0, le=64)] | None = Field(None, description="Tokens this drafter drafts "
                                                             "per step; default: the strategy's gamma.")


class Federated(StrategySpec):
    """Federated verification (SpecFed): K workers verify each drafted block in parallel and
    upload top-k probabilities; the drafter averages them and accepts."""

    kind: Literal["federated"] = Field(description="Strategy kind: K workers verify, the drafter aggregates.")
    draft: Placement = Field(description="Where the draft model runs; the user is there and it aggregates.")
    workers: list[Placement] = Field(min_length=1, description="The verifying workers: each a model on a device.")
    gamma: int = Field(4, ge=0, le=64, description="Tokens drafted per step.")
    drafters: list[Drafter] = Field([], description="More drafting edges beside draft, each a model on a "
                                    "device with its own gamma: user u (a closed loop's user index, or an open "
                                    "loop's request id) drafts on [draft, *drafters][u mod n], over its own links "
                                    "to every worker.")
    top_k: int = Field(8, ge=1, le=100_000, description="Probabilities each worker uploads per position, "
                       "in tokens (each 4 B id + 2 B probability).")
    draft_payload: Payload = Field(
        "ids", description="What crosses each link per drafted token, as for speculative.")

    def placements(self) -> dict[str, Placed]:
        workers = {f"workers.{i}": w.placed(Role.TARGET) for i, w in enumerate(self.workers)}
        drafters = {f"drafters.{i}": d.placed(Role.DRAFT) for i, d in enumerate(self.drafters)}
        return {"draft": self.draft.placed(Role.DRAFT)} | drafters | workers

    def exchanges(self) -> list[tuple[str, str]]:
        edges = ["draft"] + [f"drafters.{i}" for i in range(len(self.drafters))]
        return [(e, f"workers.{i}") for e in edges for i in range(len(self.workers))]

    def gammas(self) -> list[int]:
        """Each drafting edge's gamma, draft first."""
        return [self.gamma] + [self.gamma if d.gamma is None else d.gamma for d in self.drafters]

    def lookahead_tokens(self) -> int:
        return max(self.gammas())

    def reference_target(self) -> Placed:
        return self.placements()["workers.0"]

    def build(self, world):
        return FederatedProcess(self, world)

    def estimate(self, f) -> Closed:
        """The drafter, then the slowest worker's round trip (with `drafters`, the first drafter
        stands for all of them: their models, gammas and links are not told apart here)."""
        gamma, d = self.gamma, self.draft
        d_fwd = f.forward(d)
        per_tok = f.per_token_bytes(self.draft_payload, d.model)
        e_tokens = f.world.acceptance.mean_accepted(gamma) + 1
        n_steps = (f.output - 1) / e_tokens
        t_draft = d_fwd.forward_s(1, 1, f.ctx)
        f.add(d.device, (d_fwd.prefill_s(1, f.prompt, 0) if gamma else 0.0) + n_steps * gamma * t_draft)
        rounds = [self._worker_round(f, w, per_tok, n_steps) for w in self.workers]
        ttft = (d_fwd.prefill_s(1, f.prompt, 0) if gamma else 0.0) + max(r[0] for r in rounds)
        return Closed(ttft, (gamma * t_draft + max(r[1] for r in rounds)) / e_tokens, {"tokens_per_step": e_tokens})

    def _worker_round(self, f, w: Placement, per_tok: int, n_steps: float) -> tuple[float, float]:
        """(a worker's prefill round, its step round), adding its device's and link's demand."""
        gamma, d, p = self.gamma, self.draft.device, f.prompt
        fwd = f.forward(w)
        link = f.link(d, w.device)
        verify = fwd.forward_s(1, gamma + 1, f.ctx) + fwd.step_s
        f.add(w.device, fwd.prefill_s(1, p, 0) + n_steps * verify)
        hops_p = hops_s = 0.0
        if link is not None:
            up_p, down_p = link.mean_wire_s(p * TOKEN_ID_BYTES, d), link.mean_wire_s(upload_bytes(0, self.top_k), w.device)
            up_s = link.mean_wire_s(gamma * per_tok, d)
            down_s = link.mean_wire_s(upload_bytes(gamma, self.top_k), w.device)
            f.add(f"{link.name}:{link.direction(d)}", up_p + n_steps * up_s)
            f.add(f"{link.name}:{link.direction(w.device)}", down_p + n_steps * down_s)
            hops_p, hops_s = up_p + down_p + 2 * link.mean_flight_s(), up_s + down_s + 2 * link.mean_flight_s()
        return fwd.prefill_s(1, p, 0) + hops_p, verify + hops_s

def upload_bytes(drafted: int, top_k: int) -> int:
    """What one worker sends back per step: top-k probabilities at each of the g + 1 positions."""
    return payloads.top_k_probs(drafted + 1, top_k)


class FederatedProcess(SpeculativeProcess):
    """Speculative's step with the verifier's jobs run by every worker at once (each sending,
    verifying and uploading over its own link); the step waits for the last upload."""

    def __init__(self, spec, world):
        self.env, self.spec, self.steps, self.acceptance = world.env, spec, world.steps, world.acceptance
        edges = [spec.draft, *spec.drafters]
        self.gammas = spec.gammas()
        self.depth = max(self.gammas)
        self.sent = list(range(self.depth + 1))
        self.names = [e.device for e in edges]
        self.token_bytes = [draft_token_bytes(world, spec.draft_payload, e.model) for e in edges]
        # per drafting edge: each worker's endpoint as that edge reaches it, and the edge's lane
        self.workers = [[world.endpoint(place.device, place.model, e.device) for place in spec.workers] for e in edges]
        self.lanes = [Lane(d.server, d.forward[e.model], None, d.name, None, d.name)  # links: per worker
                      for e in edges for d in [world.devices[e.device]]]

    def edge(self, r) -> int:
        return r.user % len(self.lanes)

    def lane(self, r) -> Lane:
        return self.lanes[self.edge(r)]

    def depth_of(self, r) -> int:
        return self.gammas[self.edge(r)]

    def token_bytes_of(self, r) -> int:
        return self.token_bytes[self.edge(r)]

    def prefill(self, r, lane: Lane):
        e = self.edge(r)
        return prelude(r, lane, self.gammas[e] > 0, lambda prompt: self._all_workers(
            e, "prefill", prompt * TOKEN_ID_BYTES, prompt, 0, upload_bytes(0, self.spec.top_k)), self.result_bytes)

    def target_verify(self, r, g: int, n: int, context: int):
        e = self.edge(r)
        return self._all_workers(e, "verify", g * self.token_bytes[e], g + 1, context, upload_bytes(g, self.spec.top_k))

    def _worker(self, edge: int, worker, job: str, payload: int, query: int, context: int, back: int):
        server, fwd, name, link = worker
        if link:
            yield from link.send(self.names[edge], payload)
        seconds = fwd.prefill_s(1, query, 0) if job == "prefill" else fwd.forward_s(1, query, context) + fwd.step_s
        yield from server.serve(seconds, job)
        if link:
            yield from link.send(name, back)

    def _all_workers(self, edge: int, job: str, payload: int, query: int, context: int, back: int):
        env = self.env
        yield env.all_of([env.process(self._worker(edge, w, job, payload, query, context, back))
                          for w in self.workers[edge]])
