"""Federated verification (SpecFed-style): K workers verify each drafted block in parallel.

Per step: the drafter (where the user is, which also aggregates) drafts g tokens; the block
goes to every worker over its own link; each worker runs its model over the g + 1 tokens and
uploads its top-k probabilities for every position, (g + 1) x top_k x (4 B id + 2 B
probability); when the last upload is in, the drafter averages them (a weighted average of
the workers' distributions: no time is charged) and the acceptance model decides how many
drafts the averaged distribution accepts. Workers that share a device queue on it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .. import payloads
from ..closed_form import Closed
from ..fields import Payload
from .base import Placed, Placement, Role, StrategySpec
from .speculative import TOKEN_ID_BYTES, Lane, SpeculativeProcess, draft_token_bytes


class Federated(StrategySpec):
    """Federated verification (SpecFed): K workers verify each drafted block in parallel and
    upload top-k probabilities; the drafter averages them and accepts."""

    kind: Literal["federated"] = Field(description="Strategy kind: K workers verify, the drafter aggregates.")
    draft: Placement = Field(description="Where the draft model runs; the user is there and it aggregates.")
    workers: list[Placement] = Field(min_length=1, description="The verifying workers: each a model on a device.")
    gamma: int = Field(4, ge=0, le=64, description="Tokens drafted per step.")
    top_k: int = Field(8, ge=1, le=100_000, description="Probabilities each worker uploads per position, "
                       "in tokens (each 4 B id + 2 B probability).")
    draft_payload: Payload = Field(
        "ids", description="What crosses each link per drafted token, as for speculative.")

    def placements(self) -> dict[str, Placed]:
        workers = {f"workers.{i}": w.placed(Role.TARGET) for i, w in enumerate(self.workers)}
        return {"draft": self.draft.placed(Role.DRAFT)} | workers

    def exchanges(self) -> list[tuple[str, str]]:
        return [("draft", f"workers.{i}") for i in range(len(self.workers))]

    def reference_target(self) -> Placed:
        return self.placements()["workers.0"]

    def build(self, world):
        return FederatedProcess(self, world)

    def estimate(self, f) -> Closed:
        """The drafter, then the slowest worker's round trip."""
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
        self.depth = spec.gamma
        self.sent = list(range(self.depth + 1))
        d = world.devices[spec.draft.device]
        self.d_name = d.name
        self.per_token_bytes = draft_token_bytes(world, spec.draft_payload, spec.draft.model)
        self.workers = [world.endpoint(place.device, place.model, d.name) for place in spec.workers]
        self._lane = Lane(d.server, d.forward[spec.draft.model], None, d.name, None, d.name)  # links: per worker

    def target_prefill(self, prompt: int):
        return self._all_workers("prefill", prompt * TOKEN_ID_BYTES, prompt, 0, upload_bytes(0, self.spec.top_k))

    def target_verify(self, r, g: int, n: int, context: int):
        return self._all_workers("verify", g * self.per_token_bytes, g + 1, context, upload_bytes(g, self.spec.top_k))

    def _worker(self, worker, job: str, payload: int, query: int, context: int, back: int):
        server, fwd, name, link = worker
        if link:
            yield from link.send(self.d_name, payload)
        seconds = fwd.prefill_s(1, query, 0) if job == "prefill" else fwd.forward_s(1, query, context) + fwd.step_s
        yield from server.serve(seconds, job)
        if link:
            yield from link.send(name, back)

    def _all_workers(self, job: str, payload: int, query: int, context: int, back: int):
        env = self.env
        yield env.all_of([env.process(self._worker(w, job, payload, query, context, back)) for w in self.workers])
