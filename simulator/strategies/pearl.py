"""PEARL: parallel drafting and verification, after Liu et al. 2024 ("PEARL: Parallel
Speculative Decoding with Adaptive Draft Length"). Two scenario fields choose the mode; the
defaults (`verify: post`, `draft_length: fixed`) are post-verify with blocks of gamma, and PEARL
itself is `verify: pre_post` with `draft_length: adaptive`.

Post-verify (every mode). While the target verifies a block of g drafted tokens (one forward
over g + 1 tokens), the drafter drafts on as if the block were accepted whole. All g accepted:
the g tokens are committed (the target's own next token is dropped: the drafter has moved past
it) and the drafts that follow are verified next. k < g accepted: k + 1 tokens are committed
(the accepted drafts and the target's correction) and everything drafted past them is wasted.

Pre-verify (`verify: pre_post`). After a rejection, and after the prefill, the target does not
wait for a block: at once it runs its forward over the token it has just made (a query of 1),
which gives its distribution for the next position, while the drafter drafts from that token;
the first draft is judged as soon as both are done. Rejected: the target's token is committed
and the drafter drops what it drafted since and starts again from it (pre-verify again).
Accepted: the draft is committed and the drafts after it are post-verified. These are PEARL's
switches: pre-verify after a rejection, post-verify after an accept.

Draft length. fixed: a post-verified block holds g = min(gamma, tokens left - 1) drafts and the
target waits until all are drafted; the drafter drafts at most one block past the one in
verification. adaptive: a post-verification takes whatever the drafter has finished when the
verdict before it reaches the drafter (at least one draft, at most g), and the drafter drafts on
up to gamma past the block in verification. So the block length follows the verification time:
PEARL sets gamma to c = t_verify / t_draft to get that; here gamma is only the cap. With
alpha = 1 every mode settles at min(gamma / round, 1 / t_draft) tokens per second, round being
a verification with its link round trip: co-located, a speedup of min(gamma, c) over
autoregressive decoding (tests/test_pearl.py).

What is simplified:
- PEARL's code runs draft and target in lock step, a round being max(gamma t_draft, t_verify)
  (the drafter drafts a whole block even while the first draft is pre-verified); here each side
  moves on as soon as it can: a pre-verify ends when its one draft is judged, and an adaptive
  block ends at the verdict. A draft finishing at the very instant of a verdict counts as ready.
- Draft and target run on servers of their own even on one device (overlapped streams that do
  not slow each other: optimistic there).
- Default mode: the block drafted ahead is finished even when it is wasted (a running phase is
  not cancelled: pessimistic). Other modes draft token by token and stop at the verdict; only
  the draft forward running then is finished (a forward pass is not cut short).
- Every verification draws from the acceptance model afresh, as from the first draft position
  (pre-verify draws one position); the draft forwards are counted as 1-token queries.
- Across a link a block travels up when the verdict before it reaches the drafter (one round
  trip per verification, as in speculative), a pre-verified first draft travels up alone, and
  the target starts its pre-verify forward as soon as it has made its token, while the verdict
  travels down.
"""

from __future__ import annotations

from ..server import Server
from .speculative import RESULT_BYTES, TOKEN_ID_BYTES, committed, draft_token_bytes, record_step


def block_length(gamma: int, tokens_left: int) -> int:
    """Drafts worth verifying when tokens_left remain: a full accept must not overshoot."""
    return max(0, min(gamma, tokens_left - 1))


def draft_cap(gamma: int, verifying: int, tokens_left: int) -> int:
    """Most drafts the drafter holds past the committed tokens: those in verification and gamma
    more, never the request's last token (the target makes it)."""
    return max(0, min(verifying + gamma, tokens_left - 1))


def post_block(drafted: int, gamma: int, tokens_left: int, adaptive: bool) -> int | None:
    """Drafts the next post-verification takes, or None while it must wait for more: fixed,
    a whole block; adaptive, whatever is drafted (at least one), capped at a block."""
    g = block_length(gamma, tokens_left)
    if adaptive:
        return min(drafted, g) if drafted or not g else None
    return g if drafted >= g else None


class _Line:
    """One request's drafts past its committed tokens, shared by its drafter and its verifier
    loop (the decisions are the plain functions above). A rejection starts a new line."""

    def __init__(self, env, context: int, left: int):
        self.env, self.context, self.left = env, context, left
        self.drafted = self.verifying = self.epoch = 0
        self._waiting: dict[str, object] = {}

    def wait(self, who: str):
        event = self._waiting[who] = self.env.event()
        return event

    def wake(self, who: str) -> None:
        event = self._waiting.pop(who, None)
        if event is not None:
            event.succeed()

    def commit(self, c: int, same_line: bool) -> None:
        self.context, self.left = self.context + c, self.left - c
        if same_line:
            self.drafted -= c
        else:  # the target's own token was committed: the drafts past it are void
            self.drafted, self.epoch = 0, self.epoch + 1
        self.verifying = 0
        self.wake("drafter")


class Pearl:
    def __init__(self, spec, world):
        self.env, self.gamma, self.steps = world.env, spec.gamma, world.steps
        self.draw = world.acceptance.draw
        self.pre, self.adaptive = spec.verify == "pre_post", spec.draft_length == "adaptive"
        d, t = world.devices[spec.draft.device], world.devices[spec.target.device]
        self.d_fwd, self.t_fwd = d.forward[spec.draft.model], t.forward[spec.target.model]
        self.t_server, self.d_name, self.t_name = t.server, d.name, t.name
        # the draft stream gets a server of its own when it shares the target's device
        self.d_server = d.server if d.name != t.name else Server(world.env, f"{d.name}:draft-stream")
        self.link = world.link(d.name, t.name) if d.name != t.name else None
        self.per_token_bytes = draft_token_bytes(world, spec.draft_payload, spec.draft.model)

    def _draft(self, g: int, context: int):
        if g:
            yield from self.d_server.serve(self.d_fwd.consecutive_s(1, 1, context, g), "draft")

    def _verify(self, g: int, context: int):
        """Send the block, verify it, send the verdict back; returns the accepted count."""
        if self.link:
            yield from self.link.send(self.d_name, g * self.per_token_bytes)
        yield from self.t_server.serve(self.t_fwd.forward_s(1, g + 1, context) + self.t_fwd.step_s, "verify")
        k = self.draw(g) if g else 0
        if self.link:
            yield from self.link.send(self.t_name, RESULT_BYTES)
        return k

    def serve(self, r):
        env, link = self.env, self.link
        if self.gamma:
            yield from self.d_server.serve(self.d_fwd.prefill_s(1, r.prompt_tokens, 0), "prefill")
        if link:
            yield from link.send(self.d_name, r.prompt_tokens * TOKEN_ID_BYTES)
        yield from self.t_server.serve(self.t_fwd.prefill_s(1, r.prompt_tokens, 0), "prefill")
        parallel = self.pre or self.adaptive
        lead = self._lead(r.prompt_tokens, r.output_tokens - 1) if parallel else None
        if link:
            yield from link.send(self.t_name, RESULT_BYTES)
        r.first_token_s = env.now
        yield from (self._parallel(r, lead) if parallel else self._post_fixed(r))
        r.finish_s = env.now

    def _post_fixed(self, r):
        """Default mode: blocks of gamma drafted whole, post-verify only."""
        env = self.env
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

    # ------------------------------------------------ pre-verify and adaptive draft length

    def _lead(self, context: int, left: int):
        """pre_post: the target's forward over the token it has just made, started at once, when
        a pre-verify follows (a draft is worth making); else None."""
        if not (self.pre and block_length(self.gamma, left)):
            return None
        return self.env.process(self.t_server.serve(self.t_fwd.forward_s(1, 1, context) + self.t_fwd.step_s, "verify"))

    def _drafter(self, line: _Line):
        """Drafts one token at a time while the cap allows; a draft finished after its line was
        rejected is dropped."""
        while line.left > 0:
            if line.drafted >= draft_cap(self.gamma, line.verifying, line.left):
                yield line.wait("drafter")
                continue
            epoch = line.epoch
            yield from self.d_server.serve(self.d_fwd.forward_s(1, 1, line.context + line.drafted), "draft")
            if line.epoch == epoch:
                line.drafted += 1
                line.wake("target")

    def _take(self, line: _Line, lead) -> int | None:
        """Drafts the next check takes, or None to wait: with a lead forward running (pre-verify),
        the first draft of the fresh line; else a post-verified block."""
        if lead is not None:
            return 1 if line.drafted else None
        return post_block(line.drafted, self.gamma, line.left, self.adaptive)

    def _judge(self, g: int, left: int, context: int, lead):
        """At the target: take g drafts, verify them (with a lead forward: judge the first draft
        against it), start the next lead forward on a rejection, send the verdict down.
        Returns (accepted, lead)."""
        if self.link:
            yield from self.link.send(self.d_name, g * self.per_token_bytes)
        if lead is None:
            yield from self.t_server.serve(self.t_fwd.forward_s(1, g + 1, context) + self.t_fwd.step_s, "verify")
        else:
            yield lead
        k = self.draw(g) if g else 0
        c = g if (g and k == g) else committed(k, left)
        lead = self._lead(context + c, left - c) if k < g else None
        if self.link:
            yield from self.link.send(self.t_name, RESULT_BYTES)
        return k, lead

    def _parallel(self, r, lead):
        """pre_post and/or adaptive: a drafter process beside this verifier loop."""
        env = self.env
        line = _Line(env, r.prompt_tokens, r.output_tokens - 1)
        env.process(self._drafter(line))
        while line.left > 0:
            start = env.now
            if self.adaptive:
                yield env.timeout(0)  # a draft finishing at this very instant counts: let it land first
            while (g := self._take(line, lead)) is None:
                yield line.wait("target")
            line.verifying = g
            line.wake("drafter")
            k, lead = yield env.process(self._judge(g, line.left, line.context, lead))
            full = g > 0 and k == g
            c = g if full else committed(k, line.left)
            record_step(r, self.steps, start, env.now, g, k, c)
            line.commit(c, same_line=full)
