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
which gives its distribution for the next position, while the drafter drafts from that token.
Rejected: the target's token is committed and the drafter drops what it drafted since and
starts again from it (pre-verify again). Accepted: the draft is committed and the drafts after
it are post-verified. These are PEARL's switches: pre-verify after a rejection, post-verify
after an accept. When the first draft is judged depends on the draft length:
- fixed: in lock step, as PEARL's code runs it (a round of max(g t_draft, t_verify)): the first
  draft is judged once its whole block of g is drafted, and the block travels up with it; on an
  accept the target verifies the other g - 1 at once, at its own verdict (it holds them), as it
  starts its next forward at once after a rejection. So an accepted first draft never leaves
  the target waiting for drafts (tests/test_pearl.py: throughput never rises as acceptance falls).
- adaptive: as soon as the first draft is made (it travels up alone) and the forward is done;
  the drafter drafts on meanwhile, and the next post-verification takes what it has made. With
  gamma = c, as PEARL sets it, that is the same round as the lock step.

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
- PEARL's code runs draft and target in lock step, a round being max(gamma t_draft, t_verify);
  here only a fixed-length pre-verify does (above). Otherwise each side moves on as soon as it
  can: an adaptive pre-verify ends when its one draft is judged, an adaptive block at the
  verdict, and a drafter may be one draft past its block at a verdict (that draft is finished,
  and wasted on a rejection). A draft finishing at the very instant of a verdict counts as ready.
- Draft and target run on servers of their own even on one device (overlapped streams that do
  not slow each other: optimistic there).
- Default mode: the block drafted ahead is finished even when it is wasted (a running phase is
  not cancelled: pessimistic). Other modes draft token by token and stop at the verdict; only
  the draft forward running then is finished (a forward pass is not cut short).
- Every verification draws from the acceptance model afresh, as from the first draft position
  (pre-verify draws one position); the draft forwards are counted as 1-token queries.
- Across a link a block travels up when the verdict before it reaches the drafter (one round
  trip per verification, as in speculative), except the rest of a lock-step pre-verified block
  (already up); an adaptive pre-verified first draft travels up alone; the target starts its
  pre-verify forward as soon as it has made its token, while the verdict travels down. Over a
  link, adaptive pre-verify can therefore still gain a little as acceptance falls toward 0 (a
  pre-verify round hides most of the round trip; the post-verify an accept leads to does not).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..closed_form import Closed
from ..fields import Payload
from ..server import Server
from .base import Placement, StrategySpec
from .pearl_closed_form import parallel_estimate
from .speculative import (RESULT_BYTES, Lane, chain_estimate, committed, draft_length, draft_token_bytes, prelude,
                          record_step)


class Pearl(StrategySpec):
    """PEARL-style parallel draft and verify: the drafter drafts the next block while the target
    verifies the current one (post-verify), optionally with pre-verify and an adaptive draft
    length (PEARL's full mode); see simulator/strategies/pearl.py."""

    kind: Literal["pearl"] = Field(description="Strategy kind: drafting overlapped with verification.")
    draft: Placement = Field(description="Where the draft model runs (and where the user is).")
    target: Placement = Field(description="Where the target model runs.")
    gamma: int = Field(4, ge=0, le=64, description="Tokens per drafted block (draft_length fixed), or the most "
                       "per block and the most drafted past the block in verification (adaptive).")
    verify: Literal["post", "pre_post"] = Field(
        "post", description="When drafts are checked. post: in blocks, each verified while the drafter drafts "
        "on; after a rejection the target waits for new drafts. pre_post (PEARL): in addition, after a "
        "rejection the target's next forward (over its own new token, a query of 1) runs while the first "
        "new draft is made and judges it, so a rejected first draft costs about one target forward or one "
        "draft forward, whichever is longer (with draft_length fixed, in lock step as in PEARL's code: the "
        "first draft is judged once its whole block is drafted, gamma draft forwards, and an accept has the "
        "rest verified at once); the drafter restarts from the target's token.")
    draft_length: Literal["fixed", "adaptive"] = Field(
        "fixed", description="Drafts per post-verified block. fixed: gamma tokens (fewer near the end), drafted "
        "before the verification starts. adaptive (PEARL): the tokens the drafter has finished when the "
        "previous verdict arrives (at least 1, at most gamma), so the block length follows the target's "
        "verification time.")
    draft_payload: Payload = Field(
        "ids", description="What crosses the link per drafted token, as for speculative.")

    def build(self, world):
        return PearlProcess(self, world)

    def estimate(self, f) -> Closed:
        if (self.verify, self.draft_length) == ("post", "fixed"):
            return chain_estimate(f, self, self.draft, pearl=True)
        return parallel_estimate(f, self)

    def describe(self) -> str:
        places = ", ".join(f"{p.model} on {p.device}" for p in self.placements().values())
        return f"pearl, {self.verify} verify, {self.draft_length} blocks, gamma {self.gamma}: {places}"


def pearl_commits(g: int, k: int, tokens_left: int) -> int:
    """Tokens a verification of g drafts with k accepted commits: all g on a full accept (the
    target's own next token is dropped: the drafter has moved past it), else k + 1."""
    return g if (g and k == g) else committed(k, tokens_left)


def draft_cap(gamma: int, verifying: int, tokens_left: int) -> int:
    """Most drafts the drafter holds past the committed tokens: those in verification and gamma
    more, never the request's last token (the target makes it)."""
    return max(0, min(verifying + gamma, tokens_left - 1))


class FixedBlocks:
    """draft_length "fixed": a post-verification takes a whole block of gamma (fewer near the end).
    take: the drafts the next post-verification takes, or None while it must wait for more;
    settle: an event to let land before a round looks at the drafts, or None."""

    @staticmethod
    def take(drafted: int, gamma: int, tokens_left: int) -> int | None:
        g = draft_length(gamma, tokens_left)
        return g if drafted >= g else None

    @staticmethod
    def first(drafted: int, gamma: int, tokens_left: int) -> int | None:
        """Pre-verify in lock step, as PEARL's code: the first draft is judged once its whole
        block is drafted, and an accept leaves the rest of the block (rest) to post-verify."""
        return 1 if drafted >= draft_length(gamma, tokens_left) else None

    rest = staticmethod(lambda gamma, tokens_left: draft_length(gamma, tokens_left) - 1)
    settle = staticmethod(lambda env: None)


class AdaptiveBlocks:
    """draft_length "adaptive": a post-verification takes whatever is drafted (at least one),
    capped at a block; a draft finishing at the very instant a round starts counts (it lands first)."""

    @staticmethod
    def take(drafted: int, gamma: int, tokens_left: int) -> int | None:
        g = draft_length(gamma, tokens_left)
        return min(drafted, g) if drafted or not g else None

    # pre-verify judges the first draft as soon as it exists; the drafter drafts on beside it
    first = staticmethod(lambda drafted, gamma, tokens_left: 1 if drafted else None)
    rest = staticmethod(lambda gamma, tokens_left: 0)
    settle = staticmethod(lambda env: env.timeout(0))


class PostVerify:
    """verify "post": the target waits for drafts after a rejection; lead (the target's forward
    started at once over its newest token, for pre-verify) is None."""

    lead = staticmethod(lambda process, context, left: None)


class PrePostVerify:
    """verify "pre_post": after a rejection (and the prefill) the target's forward over the token
    it has just made starts at once, when a pre-verify follows (a draft is worth making)."""

    @staticmethod
    def lead(process, context: int, left: int):
        if not draft_length(process.gamma, left):
            return None
        fwd = process.t_fwd
        return process.env.process(process.t_server.serve(fwd.forward_s(1, 1, context) + fwd.step_s, "verify"))


BLOCKS = {"fixed": FixedBlocks, "adaptive": AdaptiveBlocks}
VERIFY = {"post": PostVerify, "pre_post": PrePostVerify}


class _Line:
    """One request's drafts past its committed tokens, shared by its drafter and its verifier
    loop (the decisions are the plain functions above). A rejection starts a new line."""

    def __init__(self, env, context: int, left: int):
        self.env, self.context, self.left = env, context, left
        self.drafted = self.verifying = self.epoch = self.rest = 0
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


class PearlProcess:
    def __init__(self, spec, world):
        self.env, self.gamma, self.steps = world.env, spec.gamma, world.steps
        self.draw = world.acceptance.draw
        self.blocks, self.verify = BLOCKS[spec.draft_length], VERIFY[spec.verify]
        # the default mode drafts whole blocks ahead; the others, a drafter process token by token
        self.decode = self._post_fixed if (spec.verify, spec.draft_length) == ("post", "fixed") else self._parallel
        d, t = world.devices[spec.draft.device], world.devices[spec.target.device]
        self.d_fwd, self.t_fwd = d.forward[spec.draft.model], t.forward[spec.target.model]
        self.t_server, self.d_name, self.t_name = t.server, d.name, t.name
        # the draft stream gets a server of its own when it shares the target's device
        self.d_server = d.server if d.name != t.name else Server(world.env, f"{d.name}:draft-stream")
        self.link = world.link(d.name, t.name) if d.name != t.name else None
        self.lane = Lane(self.d_server, self.d_fwd, self.link, d.name, self.link, t.name)
        self.per_token_bytes = draft_token_bytes(world, spec.draft_payload, spec.draft.model)

    def _target_prefill(self, prompt: int):
        return self.t_server.serve(self.t_fwd.prefill_s(1, prompt, 0), "prefill")

    def _draft(self, g: int, context: int):
        if g:
            yield from self.d_server.serve(self.d_fwd.consecutive_s(1, 1, context, g), "draft")

    def serve(self, r):
        env = self.env
        lead = yield from prelude(r, self.lane, self.gamma > 0, self._target_prefill, RESULT_BYTES,
                                  after=lambda: self.verify.lead(self, r.prompt_tokens, r.output_tokens - 1))
        r.first_token_s = env.now
        yield from self.decode(r, lead)
        r.finish_s = env.now

    def _post_fixed(self, r, lead):
        """Default mode: blocks of gamma drafted whole, post-verify only (no lead forward)."""
        env = self.env
        done, context = 1, r.prompt_tokens
        g = draft_length(self.gamma, r.output_tokens - done)
        yield from self._draft(g, context)  # the first block is drafted alone
        while done < r.output_tokens:
            start, left = env.now, r.output_tokens - done
            verdict = env.process(self._judge(g, left, context, None))
            g_next = draft_length(self.gamma, left - g)  # the next block, as if this one is accepted whole
            ahead = env.process(self._draft(g_next, context + g)) if g_next and g else None
            k, _ = yield verdict
            c = pearl_commits(g, k, left)
            done, context = done + c, context + c
            record_step(r, self.steps, start, env.now, g, k, c)
            if ahead is not None:
                yield ahead  # drafted in the shadow of the verification (or wasted)
            if done >= r.output_tokens:
                break
            if g and k == g and ahead is not None:
                g = g_next
            else:
                g = draft_length(self.gamma, r.output_tokens - done)
                yield from self._draft(g, context)  # after a rejection the target waits for a fresh block

    # ------------------------------------------------ pre-verify and adaptive draft length

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
        if line.rest:  # the rest of a block whose first draft was pre-verified (fixed blocks)
            return line.rest
        if lead is not None:
            return self.blocks.first(line.drafted, self.gamma, line.left)
        return self.blocks.take(line.drafted, self.gamma, line.left)

    def _judge(self, g: int, left: int, context: int, lead, rest: int = 0, held: bool = False):
        """At the target: take g drafts (and, from a lock-step pre-verify, the rest of their block
        with them; held: they are there already), verify them (with a lead forward: judge them
        against it), start the next forward at once (over the target's token on a rejection, over
        the rest of the block on an accepted pre-verify), send the verdict down. Returns (accepted, lead)."""
        if self.link and not held:
            yield from self.link.send(self.d_name, (g + rest) * self.per_token_bytes)
        if lead is None:
            yield from self.t_server.serve(self.t_fwd.forward_s(1, g + 1, context) + self.t_fwd.step_s, "verify")
        else:
            yield lead
        k = self.draw(g) if g else 0
        c = pearl_commits(g, k, left)
        if k < g:
            lead = self.verify.lead(self, context + c, left - c)
        else:
            lead = self.env.process(self.t_server.serve(self.t_fwd.forward_s(1, rest + 1, context + c)
                                                        + self.t_fwd.step_s, "verify")) if rest else None
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
            settle = self.blocks.settle(env)
            if settle is not None:
                yield settle
            while (g := self._take(line, lead)) is None:
                yield line.wait("target")
            line.verifying, left, held = g, line.left, line.rest > 0  # held: at the target already
            rest = self.blocks.rest(self.gamma, left) if lead is not None and not held else 0
            line.wake("drafter")
            k, lead = yield env.process(self._judge(g, left, line.context, lead, rest, held))
            full = g > 0 and k == g
            c = pearl_commits(g, k, left)
            record_step(r, self.steps, start, env.now, g, k, c)
            line.commit(c, same_line=full)
            line.rest = rest if full else 0
