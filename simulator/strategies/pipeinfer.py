"""PipeInfer-style asynchronous pipelined speculation over the stages of strategies/pipeline.py.

`pipeinfer` (kind "pipeinfer"), a simplification of PipeInfer (Butler et al., SC 2024). The head is
the draft's device: it drafts, launches runs into the pipeline and verifies the results. A run feeds
tokens into the target:

- a *canonical* run feeds the newest committed token (query 1) and yields the target's next token:
  it commits 1 token and guarantees progress however poor the drafts (PipeInfer's non-speculative run);
- a *speculative micro-batch* feeds g drafted tokens (query g) continuing the tokens the runs before
  it fed. Its first draft is checked against the prediction of the run before it, the rest against
  its own outputs: k of its g drafts are accepted (one draw of the acceptance model, made when the run
  before it resolves, i.e. as soon as its first draft can be checked). k = 0: the micro-batch and
  everything after it are invalid at once. Otherwise it commits k tokens when it resolves (drafts 2..k
  and the target's token after draft k; draft 1 is the token the run before it already committed).

Runs of one request pass each stage, and resolve at the head, in launch order. When the chain of
unresolved valid runs empties (nothing follows a resolved run) the head launches a canonical run at
once. The drafter drafts one token per draft forward and launches micro-batches of
g = min(gamma, output - fed - 1) tokens (fed: the output position of the last token fed into the
pipeline), while fewer than `max_in_flight` speculative micro-batches are unresolved.

Early inference cancellation (PipeInfer skips invalidated runs "even in the middle of inference"):
every request has a generation counter and an event that fires when its generation ends; every run
carries the generation (and event) it was launched in. A rejection (k < g, or k = 0 at the first-draft
check) starts a new generation and launches a canonical run for the newest committed token; the last
commit starts one too, cancelling whatever is still in flight. A stale run is skipped (no compute, no
transfer) at every stage it has not started, including one whose turn at a busy stage comes after
the cancellation, and a stage job under way stops at the end of the layer it is computing: a stage's
job is taken as layers[i] equal pieces, the counter checked between them (Server.serve_until; the
timeline shows the part computed as "cancelled"). So a stale micro-batch holds a stage at most one
layer's time after its cancellation, and the new canonical run waits at most that long behind it at
each stage: at low acceptance PipeInfer degrades to about the plain pipeline's speed. The cancellation
reaches every stage at once (its few bytes are not put on the links); a message already on a link is
delivered. The drafter checks the counter after each draft forward and abandons a stale micro-batch.
Drafted tokens of cancelled micro-batches are not counted in the request's drafted tokens (only
verified ones are).

Left out of the paper's design: every stage serves runs first come, first served, as PipeInfer's
ordered transactions do (the canonical run has no priority; a stale run ahead of it costs it at most
a layer per stage); a canonical run is launched only when nothing valid follows the resolved run
(PipeInfer starts one after every verification, redundant whenever a valid micro-batch already carries
that token); the micro-batch size is fixed (PipeInfer stops drafting when the draft's own confidence
falls below a cutoff that it adjusts with the time since a token was last accepted; the acceptance
models here carry no draft confidence).

With `branching` a micro-batch is a token tree of g levels (FlowSpec-style): the drafter grows it a
level a forward (query: the level above's nodes), the micro-batch feeds all its nodes through the
stages, and its accepted depth k is drawn from the tree's acceptance (strategies/tree.py); it commits
and rejects by depth as a chain of g does, and the next micro-batch continues the draft's top path.
Invalid branches are pruned in flight (FlowSpec): once the run before a micro-batch resolves, only
the subtree under its matched first-level node stays valid, and every stage it has not yet reached
computes (and every hop carries) that subtree's nodes alone. The KV context of a run counts the
accepted path only, not the nodes of the trees in flight before it; the tree's shape is fixed (no
expansion by score).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from .. import payloads
from ..closed_form import Closed
from .base import Placement
from .pipeline import PipelineStages, Stages, pipeline_estimate
from .speculative import TOKEN_ID_BYTES, Lane, draft_length, draft_token_bytes, prelude, record_step
from .tree import TreeDrafts, tree_levels


class PipeInfer(PipelineStages):
    """PipeInfer-style asynchronous pipelined speculation (Butler et al., SC 2024): drafted micro-batches
    enter the pipeline while earlier ones are in flight, and a rejection cancels the micro-batches built
    on the rejected tokens, stopping a stage's job at the end of the layer under way; see strategies/pipeinfer.py."""

    kind: Literal["pipeinfer"] = Field(description="Strategy kind: asynchronous pipelined speculation.")
    draft: Placement = Field(description="Where the draft model runs (the head: the user is there, and it "
                             "verifies the results returning from the last stage).")
    gamma: int = Field(4, ge=0, le=64, description="Tokens per speculative micro-batch, in tokens (0: no "
                       "speculation, plain pipelined decoding).")
    max_in_flight: int = Field(4, ge=1, le=64, description="Most speculative micro-batches drafted and not yet "
                               "verified at once, in micro-batches (the canonical single-token run not counted).")

    def lookahead_tokens(self) -> int:
        return self.step_nodes() * self.max_in_flight

    def build(self, world):
        return PipeInferProcess(self, world)

    def estimate(self, f) -> Closed:
        closed = pipeline_estimate(f, self)
        closed.report["approximate"] = ("pipeinfer: estimated as the synchronous pipeline with its draft (one "
                                        "micro-batch at a time); the asynchronous overlap and cancellations are "
                                        "simulated only")
        return closed


# ---------------------------------------------------------------- decisions (no SimPy)


def run_commits(depth: int, accepted: int, tokens_left: int) -> int:
    """Tokens a resolving run commits: a canonical run (depth 0) its one token; a micro-batch with
    k >= 1 of its depth's drafts accepted k (drafts 2..k and the target's token after draft k)."""
    return min(1 if depth == 0 else accepted, tokens_left)


def rejects(depth: int, accepted: int) -> bool:
    """A micro-batch that does not keep a draft at every depth invalidates every run after it."""
    return depth > 0 and accepted < depth


# ---------------------------------------------------------------- pipeinfer (asynchronous)


@dataclass(eq=False)
class PipeRun:
    """One run through the pipeline: a canonical run (the newest committed token) or a speculative
    micro-batch."""

    gen: int  # the request's generation when it was launched
    drafted: int  # drafts it feeds (a tree's nodes); 0 for a canonical run
    query: int  # tokens fed into the target
    context: int  # tokens in the target's KV before it
    start_s: float  # when its drafting (or, canonical, its launch) began
    flush: object = None  # event of its generation: triggered when the generation ends (the run is stale)
    depth: int = 0  # draft positions it covers: drafted for a chain, the tree's levels
    accepted: int | None = None  # drawn when the run before it resolves
    prev: "PipeRun | None" = None
    passed: list = field(default_factory=list)  # per stage: an event, it left (or skipped) the stage
    resolved: object = None  # event: the head has handled it


@dataclass(eq=False)
class _Request:
    record: object
    done: int = 1  # tokens committed (the prefill gives the first)
    gen: int = 0
    flush: object = None  # event: the current generation ends (succeeded when gen moves on)
    fed: int = 1  # output position of the last token fed (or being drafted) into the pipeline
    chain: deque = field(default_factory=deque)  # unresolved valid runs, in launch order
    drafting: PipeRun | None = None  # the micro-batch being drafted, if valid
    wake: object = None  # event the drafter waits on
    finished: object = None  # event: every token committed


class PipeInferProcess:
    def __init__(self, spec, world):
        self.env, self.steps = world.env, world.steps
        self.spec, self.stages = spec, Stages(spec, world)
        b = spec.tree()
        self.tree = TreeDrafts(b, spec.gamma, world.acceptance, spec.top_k_decay)
        self.draw = self.tree.acceptance.draw
        # a tree of g levels pruned to the subtree under its matched first-level node
        self.pruned = None if b is None else [0] + [sum(tree_levels(b[1:g])) for g in range(1, len(b) + 1)]
        d = world.devices[spec.draft.device]
        self.d_server, self.d_fwd = d.server, d.forward[spec.draft.model]
        self.per_token_bytes = draft_token_bytes(world, spec.draft_payload, spec.draft.model)
        st = self.stages
        self.lane = Lane(self.d_server, self.d_fwd, st.up, st.head, st.back, st.last)

    def serve(self, r):
        env, st, gamma = self.env, self.stages, self.spec.gamma
        yield from prelude(r, self.lane, gamma > 0, self._target_prefill, payloads.token_ids(1))
        r.first_token_s = env.now
        s = _Request(r, flush=env.event(), finished=env.event())
        if r.output_tokens <= 1:
            s.finished.succeed()
        else:
            self._canonical(s)
            if gamma:
                env.process(self._drafter(s))
        yield s.finished
        r.finish_s = env.now

    def _target_prefill(self, prompt: int):
        return self.stages.traverse(prompt, 0, "prefill", prefill=True)

    # ------------------------------------------------------------ the head's decisions

    def _canonical(self, s: _Request) -> None:
        """Feed the newest committed token: query 1 at context prompt + done - 1."""
        s.fed = s.done
        self._launch(s, PipeRun(s.gen, 0, 1, s.record.prompt_tokens + s.done - 1, self.env.now, s.flush))

    def _launch(self, s: _Request, run: PipeRun) -> None:
        run.prev = s.chain[-1] if s.chain else None
        run.passed = [self.env.event() for _ in self.stages.devices]
        run.resolved = self.env.event()
        s.chain.append(run)
        self.env.process(self._flow(s, run))
        self._wake(s)

    def _flush(self, s: _Request) -> None:
        """A new generation: every run in flight or being drafted is stale from now on."""
        s.gen += 1
        s.flush.succeed()
        s.flush = self.env.event()
        s.chain.clear()
        s.drafting = None

    def _restart(self, s: _Request) -> None:
        """A rejection: everything in flight is stale; start again from the newest committed token."""
        self._flush(s)
        self._canonical(s)

    def _resolve(self, s: _Request, run: PipeRun) -> None:
        r = s.record
        s.chain.popleft()
        k = run.accepted or 0
        c = run_commits(run.depth, k, r.output_tokens - s.done)
        s.done += c
        record_step(r, self.steps, run.start_s, self.env.now, run.drafted, k, c)
        if s.done >= r.output_tokens:
            self._flush(s)  # cancel whatever is still in flight
            s.finished.succeed()
            self._wake(s)
            return
        if rejects(run.depth, k):
            self._restart(s)
            return
        nxt = s.chain[0] if s.chain else s.drafting
        if nxt is None:  # nothing follows: feed the newest token
            self._canonical(s)
            return
        nxt.accepted = self.draw(nxt.depth)  # its first draft meets this run's prediction now
        if nxt.accepted == 0:
            self._restart(s)
        elif self.pruned is not None:  # a tree: only the matched first-level node's subtree stays valid
            nxt.query = self.pruned[nxt.depth]  # the stages it has not reached compute that alone
        self._wake(s)

    def _wake(self, s: _Request) -> None:
        if s.wake is not None and not s.wake.triggered:
            s.wake.succeed()

    # ------------------------------------------------------------ processes

    def _drafter(self, s: _Request):
        env, spec, r = self.env, self.spec, s.record
        while not s.finished.triggered:
            g = draft_length(spec.gamma, r.output_tokens - s.fed)  # the last run's prediction commits one more
            in_flight = sum(1 for run in s.chain if run.drafted)
            if g == 0 or not s.chain or in_flight >= spec.max_in_flight:
                s.wake = env.event()
                yield s.wake
                continue
            gen, fed0, nodes, levels, offsets = s.gen, s.fed, self.tree.sent[g], self.tree.levels, self.tree.offsets
            run = PipeRun(gen, nodes, nodes, r.prompt_tokens + fed0, env.now, s.flush, depth=g)
            s.drafting, s.fed = run, fed0 + g
            for i in range(g):  # level i + 1 feeds the nodes of level i (one token each for a chain)
                yield from self.d_server.serve(self.d_fwd.forward_s(1, levels[i], r.prompt_tokens + fed0 - 1 + offsets[i]),
                                               "draft")
                if s.gen != gen:
                    break
            if s.gen != gen:
                continue  # cancelled while drafting (s.drafting and s.fed were reset)
            s.drafting = None
            self._launch(s, run)

    def _flow(self, s: _Request, run: PipeRun):
        """One run through the pipeline and back to the head, in order, skipping stages once stale."""
        st = self.stages
        if st.up:
            yield from st.up.send(st.head, run.drafted * self.per_token_bytes if run.drafted else TOKEN_ID_BYTES)
        label = "verify" if run.drafted else "decode"
        for i, dev in enumerate(st.devices):
            if run.prev is not None and not run.prev.passed[i].triggered:
                yield run.prev.passed[i]  # runs of a request pass each stage in launch order
            if run.gen != s.gen:
                return self._drop(run)
            yield from dev.server.serve_until(st.seconds(i, run.query, run.context), run.flush, st.layers[i], label)
            run.passed[i].succeed()
            if run.gen != s.gen:
                return self._drop(run)
            if i < len(st.hops) and st.hops[i] is not None:
                yield from st.hops[i].send(dev.name, st.activation_bytes(run.query))
        if st.back:
            yield from st.back.send(st.last, payloads.token_ids(run.query))  # one predicted token per fed token
        if run.prev is not None and not run.prev.resolved.triggered:
            yield run.prev.resolved  # the head verifies in launch order
        if run.gen != s.gen:
            return self._drop(run)
        self._resolve(s, run)
        run.resolved.succeed()

    @staticmethod
    def _drop(run: PipeRun) -> None:
        """A cancelled run: release whoever waits on it (they are stale too)."""
        for ev in run.passed + [run.resolved]:
            if not ev.triggered:
                ev.succeed()
