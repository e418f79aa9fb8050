"""Speculative decoding (Leviathan et al. 2023): draft, verify, accept, commit.

Per step: the draft model runs g = min(gamma, tokens left - 1) forwards of one token each;
if draft and target sit on different devices the drafted tokens cross the link; the target
verifies g + 1 tokens (the newest committed token and the drafts) in one forward; the
acceptance model decides how many drafts survive (k); the result crosses back; k + 1 tokens
are committed (the accepted drafts and the target's own next token). The user sits at the
draft device, so a request's prompt crosses the link before the target's prefill and its
first token crosses back. The draft forward after a fully accepted step is counted as one
token (a real drafter also feeds the target's extra token, a query of two): a small
underestimate of draft time, unless `loop` says how the engine's loop runs (Loop).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NamedTuple

from pydantic import Field

from .. import payloads
from ..closed_form import Closed, speedup
from ..fields import Payload, Strict
from ..payloads import RESULT_BYTES, TOKEN_ID_BYTES  # noqa: F401 (other strategies import them from here)
from .base import Placement, StrategySpec

if TYPE_CHECKING:
    from ..network import Link
    from ..profiles import ForwardTime
    from ..server import Server


class Loop(Strict):
    """What a decoding loop does around its forward passes, where engines differ (the closed form
    ignores it)."""

    prefill: Literal["separate", "merged"] = Field(
        "separate", description="separate: the draft and the target each prefill the prompt before the "
        "first step, whose first token the target's prefill makes; merged (Hugging Face assisted "
        "generation): no prefill of their own: the draft's first forward is the prompt and yields its first "
        "draft token, and the target's first verification is one forward of prompt + drafts at context 0.")
    draft_feed: Literal["one", "catch_up", "two"] = Field(
        "one", description="Tokens the draft's first forward of a step feeds: one (the newest committed "
        "token; a simplification); catch_up (two after a fully accepted step, the draft's last token and the "
        "target's bonus token, else one: this package's runner); two (every step after the first: Hugging "
        "Face, which crops the draft's cache to the sequence minus two every step).")


DEFAULT_LOOP = Loop()


class Speculative(StrategySpec):
    """Draft `gamma` tokens one forward at a time, verify them in one target forward over
    gamma + 1 tokens, commit the accepted ones plus one token from the target."""

    kind: Literal["speculative"] = Field(description="Strategy kind: draft, then verify.")
    draft: Placement = Field(description="Where the draft model runs (and where the user is).")
    target: Placement = Field(description="Where the target model runs.")
    gamma: int = Field(4, ge=0, le=64, description="Tokens drafted per step.")
    draft_payload: Payload = Field(
        "ids",
        description="What crosses the link per drafted token: token ids (4 B, greedy), ids with the "
        "draft probability (8 B), or ids with the full draft distribution (4 B + vocab x dtype bytes).",
    )
    loop: Loop = Field(DEFAULT_LOOP, description="How the decoding loop runs around its forward passes (engines differ).")
    tokens_per_forward: int = Field(1, ge=1, le=64, description="Drafted tokens one draft forward makes "
                                    "(ParallelSpec-style parallel drafting: the newest token and k - 1 mask tokens "
                                    "in, k drafts out), in tokens: a step of g drafts takes ceil(g / k) forwards "
                                    "of query k (the last one of what is left). 1: a forward a token.")

    def build(self, world):
        return SpeculativeProcess(self, world)

    def estimate(self, f) -> Closed:
        return chain_estimate(f, self, self.draft)

    def describe(self) -> str:
        d, t = self.draft, self.target
        per = f", {self.tokens_per_forward} drafted a forward" if self.tokens_per_forward > 1 else ""
        return f"speculative, gamma {self.gamma}{per}: {d.model} on {d.device}, {t.model} on {t.device}"


def draft_length(gamma: int, tokens_left: int) -> int:
    """Draft no more than can be used: the step always commits one token of the target's own."""
    return max(0, min(gamma, tokens_left - 1))


def committed(accepted: int, tokens_left: int) -> int:
    return min(accepted + 1, tokens_left)


def record_step(r, steps: list, start: float, end: float, drafted: int, accepted: int, made: int) -> None:
    """Count a decoding step on its request and append its row (records.StepRecord's fields)."""
    r.steps += 1
    r.drafted += drafted
    r.accepted += accepted
    steps.append((r.id, start, end, drafted, accepted, made))  # a row of records.StepRecord


def payload_bytes(kind: str, vocab: int, dtype_bytes: int) -> int:
    """Bytes per drafted token sent to the verifier (see simulator/payloads.py)."""
    return payloads.per_drafted_token(kind, vocab, dtype_bytes)


def draft_token_bytes(world, payload: str, draft_model: str) -> int:
    """payload_bytes for the draft model's vocabulary and dtype."""
    arch = world.scenario.models[draft_model].architecture()
    return payload_bytes(payload, arch.vocab, arch.dtype_bytes)


def alone(world) -> bool:
    """One request at a time (a single closed-loop user): nothing can queue for a server between or
    during a request's jobs."""
    arrival = world.scenario.workload.arrival
    return getattr(arrival, "kind", None) == "closed_loop" and arrival.users == 1


class Lane(NamedTuple):
    """A request's way to its verifier: the drafter's server and forward times, and the link a step's
    drafts go up and the one its result comes down (None where there is no hop), with their senders."""

    d_server: Server | None
    d_fwd: ForwardTime | None
    up: Link | None
    up_from: str
    down: Link | None
    down_from: str


def prelude(r, lane: Lane, drafting: bool, target_prefill, first_bytes: int, after=None):
    """How a draft-then-verify request starts: the drafter's prefill (when it drafts at all), the
    prompt up to the verifier, the verifier's prefill (`target_prefill(prompt)`, a generator), the
    first token down (first_bytes). Returns what `after()`, called as the verifier's prefill ends,
    returns (None without it)."""
    prompt = r.prompt_tokens
    if drafting:  # with no drafts the draft model never runs: plain autoregressive cost
        yield from lane.d_server.serve(lane.d_fwd.prefill_s(1, prompt, 0), "prefill")
    if lane.up:
        yield from lane.up.send(lane.up_from, prompt * TOKEN_ID_BYTES)
    yield from target_prefill(prompt)
    made = after() if after is not None else None
    if lane.down:
        yield from lane.down.send(lane.down_from, first_bytes)
    return made


class SpeculativeProcess:
    """The draft-send-verify-draw-commit step, for every strategy whose steps have that shape. Its
    hooks: `lane(r)` (the request's drafter and links), `draft_s` (the draft job's seconds: a chain,
    a tree's levels, a staged draft), `sent` (tokens sent and verified after g draft forwards),
    `target_prefill` and `target_verify` (the verifier's jobs, each a generator: one server, the
    stages of a pipeline, the federated workers, or a batching verifier, which then returns the
    accepted count itself), `on_commit` and the acceptance model."""

    result_bytes = RESULT_BYTES  # the verdict sent down per step, and the first token
    label = "verify"
    loop = DEFAULT_LOOP  # strategies without a `loop` field run the simplest one
    solo = False  # the world serves one request at a time (alone(world)): serve may run _solo
    per_forward = 1  # drafted tokens per draft forward (Speculative.tokens_per_forward)
    steady = True  # depth_of(r) holds for all of r's steps; False: serve asks it again every step
    verify_brings_result = False  # target_verify returns once the verdict has come down the link itself

    def __init__(self, spec, world):
        self.place(spec, world)
        self.depth = spec.gamma  # draft forwards per step, at most
        self.sent = list(range(self.depth + 1))  # tokens sent to the target after g draft forwards
        self.acceptance = world.acceptance
        self.loop = getattr(spec, "loop", self.loop)
        self.per_forward = getattr(spec, "tokens_per_forward", 1)

    def place(self, spec, world) -> None:
        self.env, self.steps = world.env, world.steps
        self.solo = alone(world)
        d, t = world.devices[spec.draft.device], world.devices[spec.target.device]
        self.d_fwd = d.forward[spec.draft.model]
        self.t_server, self.t_fwd = t.server, t.forward[spec.target.model]
        link = world.link(d.name, t.name) if d.name != t.name else None
        self._lane = Lane(d.server, self.d_fwd, link, d.name, link, t.name)
        self.per_token_bytes = draft_token_bytes(world, spec.draft_payload, spec.draft.model)

    # ------------------------------------------------------------ hooks

    def lane(self, r) -> Lane:
        return self._lane

    def depth_of(self, r) -> int:
        """Tokens r drafts per step, at most (its drafter's gamma); `sent` must cover it. Asked once
        per request, or before every step where `steady` is False."""
        return self.depth

    def token_bytes_of(self, r) -> int:
        """Bytes a drafted token of r takes over the link (its drafter's payload)."""
        return self.per_token_bytes

    def draft_s(self, fwd: ForwardTime, g: int, context: int) -> float:
        """The draft job of a step of g drafts: g forwards of one token, or with per_forward = k,
        ceil(g / k) forwards of k query tokens (the last of what is left), each k tokens further on."""
        if self.per_forward == 1:
            return fwd.consecutive_s(1, 1, context, g)
        return parallel_draft_s(fwd, g, self.per_forward, context)

    def target_prefill(self, prompt: int):
        return self.t_server.serve(self.t_fwd.prefill_s(1, prompt, 0), "prefill")

    def target_verify(self, r, g: int, n: int, context: int):
        """The verifier's job over the newest token and n drafted tokens; a generator that returns
        the accepted count, or None to draw it from the acceptance model when the job ends."""
        return self.t_server.serve(self.t_fwd.forward_s(1, n + 1, context) + self.t_fwd.step_s, self.label)

    on_commit = None  # or a method (r, done), called after a step commits: done tokens of r are made

    def prefill(self, r, lane: Lane):
        return prelude(r, lane, self.depth_of(r) > 0, self.target_prefill, self.result_bytes)

    # ------------------------------------------------------------ the process

    def serve(self, r):
        env, sent, steps, draw, on_commit = self.env, self.sent, self.steps, self.acceptance.draw, self.on_commit
        lane, steady, brought = self.lane(r), self.steady, self.verify_brings_result
        draft_s, verify, depth, loop = self.draft_s, self.target_verify, self.depth_of(r), self.loop
        d_server, d_fwd, up, up_from, down, down_from = lane
        per_token = self.token_bytes_of(r) if up else 0
        plain = loop == DEFAULT_LOOP and not getattr(d_fwd, "call_s", 0.0)  # the draft job is the hook alone
        if loop.prefill == "merged":  # the first step prefills both models: only the prompt's trip comes first
            if up:
                yield from up.send(up_from, r.prompt_tokens * TOKEN_ID_BYTES)
            done, context, check = 0, 0, self.merged_verify
        else:
            yield from self.prefill(r, lane)
            r.first_token_s = env.now
            done, context, check = 1, r.prompt_tokens, verify  # tokens produced; tokens in the KV caches
        refeed = False  # the draft's next first forward feeds two tokens
        if (self.solo and plain and up is None and down is None and on_commit is None
                and type(self).target_verify is SpeculativeProcess.target_verify):
            yield from self._solo(r, done, context, d_server, d_fwd)
            return
        while done < r.output_tokens:
            start = env.now
            left = r.output_tokens - done
            if not steady:
                depth = self.depth_of(r)
            g = depth if depth < left else left - 1  # draft_length, inline (left >= 1 here)
            n = sent[g]
            if g:
                yield from d_server.serve(draft_s(d_fwd, g, context) if plain else
                                          self.draft_job_s(d_fwd, g, context, r.prompt_tokens, refeed), "draft")
            if up:
                yield from up.send(up_from, n * per_token)
            k = yield from check(r, g, n, context)
            if k is None:
                k = draw(g) if g else 0
            if down and not brought:
                yield from down.send(down_from, self.result_bytes)
            c = k + 1 if k < left else left  # committed, inline
            if not plain:  # the loop's options: what the next step's draft feeds; a merged first step
                refeed = loop.draft_feed == "two" or (loop.draft_feed == "catch_up" and g > 0 and k == g)
                if not context:
                    r.first_token_s, context, check = env.now, r.prompt_tokens, verify
            done += c
            context += c
            if on_commit is not None:
                on_commit(r, done)
            r.steps, r.drafted, r.accepted = r.steps + 1, r.drafted + n, r.accepted + k  # record_step, inline:
            steps.append((r.id, start, env.now, n, k, c))  # the hottest loop of the engine
        r.finish_s = env.now

    def _solo(self, r, done: int, context: int, d_server: Server, d_fwd: ForwardTime):
        """The steps of the one request in the world (a single closed-loop user, no links, the plain
        loop, one verifier): nothing can queue between or during its jobs, so they are booked on the
        servers (Server.book) and the clock kept here, each time the sum SimPy would form (start +
        draft job, + verify job), and the run's clock is moved only when it must be to stay exact: a
        jump of now - env.now lands exactly on now while now <= 2 env.now (Sterbenz's lemma), so the
        process waits about log2(finish / start) timeouts a request instead of two a step, and a step
        longer than all the time before it waits its two jobs as serve does. Records, logs, busy
        time and random draws are those of the event-per-job loop, in the same order."""
        env, sent, steps, draw, depth = self.env, self.sent, self.steps, self.acceptance.draw, self.depth_of(r)
        t_server, t_fwd, label = self.t_server, self.t_fwd, self.label
        forward, step_s, consecutive, draft_s = t_fwd.forward_s, t_fwd.step_s, d_fwd.consecutive_s, self.draft_s
        chain = type(self).draft_s is SpeculativeProcess.draft_s and self.per_forward == 1  # draft_s, inline
        out, rid = r.output_tokens, r.id
        now = env.now
        while done < out:
            start = now
            left = out - done
            g = depth if depth < left else left - 1
            n = sent[g]
            d1 = (consecutive(1, 1, context, g) if chain else draft_s(d_fwd, g, context)) if g else 0.0
            d2 = forward(1, n + 1, context) + step_s  # target_verify, inline
            t1 = start + d1 if d1 > 0 else start
            end = t1 + d2 if d2 > 0 else t1
            if end > 2 * env.now:  # past the range of an exact jump: bring the clock to now first
                if now > env.now:
                    yield env.timeout(now - env.now)
                if end > 2 * env.now:  # this step alone outlasts the time before it
                    if t1 > start:
                        yield env.timeout(d1)
                    if end > t1:
                        yield env.timeout(d2)
            if g:
                d_server.book(start, d1, "draft")
            t_server.book(t1, d2, label)
            k = draw(g) if g else 0
            c = k + 1 if k < left else left
            done += c
            context += c
            now = end
            r.steps, r.drafted, r.accepted = r.steps + 1, r.drafted + n, r.accepted + k
            steps.append((rid, start, end, n, k, c))
        if now > env.now:
            yield env.timeout(now - env.now)
        r.finish_s = env.now

    def merged_verify(self, r, g: int, n: int, context: int):
        """A merged prefill's first verification: the prompt and the n drafts in one forward at context 0."""
        return self.t_server.serve(self.t_fwd.prefill_s(1, r.prompt_tokens + n, 0) + self.t_fwd.step_s, self.label)

    def draft_job_s(self, fwd: ForwardTime, g: int, context: int, prompt: int, refeed: bool) -> float:
        """The draft job of a step: the `draft_s` hook, its first forward feeding two tokens where the
        loop re-feeds, or the prompt where the prefill is merged (context 0), and the call overhead."""
        if not context:
            return fwd.prefill_s(1, prompt, 0) + fwd.consecutive_s(1, 1, prompt, g - 1) + fwd.call_s
        extra = fwd.forward_s(1, 2, context) - fwd.forward_s(1, 1, context) if refeed else 0.0
        return self.draft_s(fwd, g, context) + extra + fwd.call_s


def parallel_draft_s(fwd: ForwardTime, g: int, k: int, context: int) -> float:
    """g drafts made k a forward: ceil(g / k) forwards of query min(k, what is left)."""
    return sum(fwd.forward_s(1, min(k, g - j), context + j) for j in range(0, g, k))


def chain_estimate(f, spec, drafter, edges: int = 1, batch: int = 1, pearl: bool = False) -> Closed:
    """Leviathan's step at context ctx: step_s = g t_draft + t_verify(g + 1) + link time up and
    down; tokens_per_step = E[accepted] + 1; prefill = the draft's and the target's prefills (and
    the prompt's trip). `edges` drafters each serve 1/edges of the requests and each verification
    rides in a batch of `batch` (shared_verifier). pearl (post-verify, fixed blocks): a full accept
    commits gamma (no bonus token), a rejection costs a fresh block, and drafting the next block
    hides behind the verification round trip."""
    gamma, acc = spec.gamma, f.world.acceptance
    d_fwd, t_fwd = f.forward(drafter), f.forward(spec.target)
    d_dev, t_dev = drafter.device, spec.target.device
    e_tokens, drafts_per_step = acc.mean_accepted(gamma) + 1, gamma
    if pearl:
        pmf = acc.pmf(gamma)
        p_all = float(pmf[gamma]) if gamma else 0.0
        e_tokens = p_all * gamma + sum(float(pmf[k]) * (k + 1) for k in range(gamma)) if gamma else 1.0
        drafts_per_step = gamma * (2 - p_all)
    n_steps = (f.output - 1) / e_tokens
    t_draft, t_verify = d_fwd.forward_s(1, 1, f.ctx), t_fwd.forward_s(batch, gamma + 1, f.ctx) + t_fwd.step_s
    d_prefill = d_fwd.prefill_s(1, f.prompt, 0) if gamma else 0.0
    prefill = d_prefill + t_fwd.prefill_s(1, f.prompt, 0)
    colocated_stream = pearl and d_dev == t_dev  # the draft stream has a server of its own
    f.add(f"{d_dev}:draft-stream" if colocated_stream else d_dev,
          (d_prefill + n_steps * drafts_per_step * t_draft) / edges)
    f.add(t_dev, t_fwd.prefill_s(1, f.prompt, 0) + n_steps * t_verify / batch)
    step = gamma * t_draft + t_verify
    k = getattr(spec, "tokens_per_forward", 1)
    if k > 1:  # ceil(gamma / k) wider draft forwards instead of gamma narrow ones
        phase = parallel_draft_s(d_fwd, gamma, k, f.ctx)
        f.add(d_dev, n_steps * (phase - gamma * t_draft) / edges)
        step += phase - gamma * t_draft
    link = f.link(d_dev, t_dev)
    if link is not None:
        first, per_step = f.round_trip(link, d_dev, t_dev, gamma * f.per_token_bytes(spec.draft_payload, drafter.model),
                                       n_steps, edges)
        prefill += first
        step += per_step
    if pearl:
        overlap = max(gamma * t_draft, step - gamma * t_draft)
        step = p_all * overlap + (1 - p_all) * (overlap + gamma * t_draft)
    t_one = t_fwd.forward_s(1, 1, f.ctx)
    c = d_fwd.forward_s(1, 1, f.ctx) / t_one if t_one > 0 else None  # a free target has no cost ratio
    alpha = getattr(f.scenario.acceptance, "alpha", None)
    return Closed(prefill, step / e_tokens, {
        "tokens_per_step": e_tokens,
        "step_s": step,
        "cost_ratio_c": c,
        "leviathan_speedup": speedup(alpha, gamma, c) if alpha is not None and c is not None else None,
        "speedup_vs_autoregressive": (e_tokens / step) * f.ar_token_s if step else None,
    })
