"""PEARL-style parallel drafting and verification (post-verify), after Liu et al. 2024.

The drafter does not wait for a verdict: while the target verifies block k (g drafted tokens,
one forward over g + 1 tokens), the drafter already drafts block k + 1 as if block k were
accepted whole. When the verdict comes:
- all g accepted: the g tokens are committed (the target's own next token is dropped: the
  drafter has moved past it) and block k + 1, once drafted, is verified next;
- k < g accepted: k + 1 tokens are committed (the accepted drafts and the target's
  correction); block k + 1 is wasted. The drafter finishes drafting it (a running phase is
  not cancelled: pessimistic where a draft phase outlasts a verification) and then drafts a
  fresh block from the correction, which the target waits for.
Draft and target each run on their own server even when they share a device (overlapped
streams that do not slow each other: optimistic for one device); across a link, each block
travels up and each verdict down. With alpha = 1 a round takes max(g t_draft, t_verify + link
round trip) for g tokens (tests/test_pearl.py).
"""

from __future__ import annotations

from ..server import Server
from .speculative import RESULT_BYTES, TOKEN_ID_BYTES, committed, draft_token_bytes, record_step


def block_length(gamma: int, tokens_left: int) -> int:
    """Drafts worth verifying when tokens_left remain: a full accept must not overshoot."""
    return max(0, min(gamma, tokens_left - 1))


class Pearl:
    def __init__(self, spec, world):
        self.env, self.gamma, self.steps = world.env, spec.gamma, world.steps
        self.draw = world.acceptance.draw
        d, t = world.devices[spec.draft.device], world.devices[spec.target.device]
        self.d_fwd, self.t_fwd = d.forward[spec.draft.model], t.forward[spec.target.model]
        self.t_server, self.d_name, self.t_name = t.server, d.name, t.name
        # the draft stream gets a server of its own when it shares the target's device
        self.d_server = d.server if d.name != t.name else Server(world.env, f"{d.name}:draft-stream")
        self.link = world.link(d.name, t.name) if d.name != t.name else None
        self.per_token_bytes = draft_token_bytes(world, spec.draft_payload, spec.draft.model)

    def _draft(self, g: int, context: int):
        if g:
            yield from self.d_server.serve(self.d_fwd.run(1, 1, context, g), "draft")

    def _verify(self, g: int, context: int):
        """Send the block, verify it, send the verdict back; returns the accepted count."""
        if self.link:
            yield from self.link.send(self.d_name, g * self.per_token_bytes)
        yield from self.t_server.serve(self.t_fwd.one(1, g + 1, context) + self.t_fwd.step_s, "verify")
        k = self.draw(g) if g else 0
        if self.link:
            yield from self.link.send(self.t_name, RESULT_BYTES)
        return k

    def serve(self, r):
        env, link = self.env, self.link
        if self.gamma:
            yield from self.d_server.serve(self.d_fwd.point(1, r.prompt_tokens, 0), "prefill")
        if link:
            yield from link.send(self.d_name, r.prompt_tokens * TOKEN_ID_BYTES)
        yield from self.t_server.serve(self.t_fwd.point(1, r.prompt_tokens, 0), "prefill")
        if link:
            yield from link.send(self.t_name, RESULT_BYTES)
        r.first_token_s = env.now
        done, context = 1, r.prompt_tokens
        g = block_length(self.gamma, r.output_tokens - done)
        yield from self._draft(g, context)  # the first block is drafted alone
        while done < r.output_tokens:
            start, left = env.now, r.output_tokens - done
            verdict = env.process(self._verify(g, context))
            g_next = block_length(self.gamma, left - g)  # the next block, as if this one is accepted whole
            ahead = env.process(self._draft(g_next, context + g)) if g_next and g else None
            k = yield verdict
            c = g if (g and k == g) else committed(k, left)
            done, context = done + c, context + c
            record_step(r, self.steps, start, env.now, g, k, c)
            if ahead is not None:
                yield ahead  # drafted in the shadow of the verification (or wasted)
            if done >= r.output_tokens:
                break
            if g and k == g and ahead is not None:
                g = g_next
            else:
                g = block_length(self.gamma, r.output_tokens - done)
                yield from self._draft(g, context)  # after a rejection the target waits for a fresh block
        r.finish_s = env.now
