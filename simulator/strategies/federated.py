"""Federated verification (SpecFed-style): K workers verify each drafted block in parallel.

Per step: the drafter (where the user is, which also aggregates) drafts g tokens; the block
goes to every worker over its own link; each worker runs its model over the g + 1 tokens and
uploads its top-k probabilities for every position, (g + 1) x top_k x (4 B id + 2 B
probability); when the last upload is in, the drafter averages them (a weighted average of
the workers' distributions: no time is charged) and the acceptance model decides how many
drafts the averaged distribution accepts. Workers that share a device queue on it.
"""

from __future__ import annotations

from .. import payloads
from .speculative import TOKEN_ID_BYTES, committed, draft_length, draft_token_bytes, record_step

def upload_bytes(drafted: int, top_k: int) -> int:
    """What one worker sends back per step: top-k probabilities at each of the g + 1 positions."""
    return payloads.top_k_probs(drafted + 1, top_k)


class Federated:
    def __init__(self, spec, world):
        self.env, self.spec, self.steps = world.env, spec, world.steps
        self.draw = world.acceptance.draw
        d = world.devices[spec.draft.device]
        self.d_server, self.d_fwd, self.d_name = d.server, d.forward[spec.draft.model], d.name
        self.per_token_bytes = draft_token_bytes(world, spec.draft_payload, spec.draft.model)
        self.workers = [world.endpoint(place.device, place.model, d.name) for place in spec.workers]

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

    def serve(self, r):
        env, gamma, top_k = self.env, self.spec.gamma, self.spec.top_k
        if gamma:
            yield from self.d_server.serve(self.d_fwd.prefill_s(1, r.prompt_tokens, 0), "prefill")
        yield from self._all_workers("prefill", r.prompt_tokens * TOKEN_ID_BYTES, r.prompt_tokens, 0,
                                     upload_bytes(0, top_k))
        r.first_token_s = env.now
        done, context = 1, r.prompt_tokens
        while done < r.output_tokens:
            start, left = env.now, r.output_tokens - done
            g = draft_length(gamma, left)
            if g:
                yield from self.d_server.serve(self.d_fwd.consecutive_s(1, 1, context, g), "draft")
            yield from self._all_workers("verify", g * self.per_token_bytes, g + 1, context, upload_bytes(g, top_k))
            k = self.draw(g) if g else 0
            c = committed(k, left)
            done, context = done + c, context + c
            record_step(r, self.steps, start, env.now, g, k, c)
        r.finish_s = env.now
