"""Continuous batching on one target: who runs in the next step, and what each request gets.

Plain code, no SimPy: strategies/batched.py asks `schedule()` for a step, runs it for the time
the latency model gives, and hands the accepted counts to `commit()`. Per-request state lives in
numpy arrays of `max_batch` slots, so a step's bookkeeping is a few array operations, not a
loop over requests.

The rules (docs/model.md, "Serving with continuous batching"):
- Requests wait in a FCFS queue and are admitted between steps while a slot is free and their
  KV cache fits; the queue's head blocks those behind it (no overtaking).
- KV memory, in tokens: `capacity` = (device memory - weights) / KV bytes per token. With
  preemption "none" a request reserves prompt + output + lookahead + 1 tokens when admitted,
  so memory never runs out. With "recompute" it holds what it has used (context + prompt still
  to prefill + lookahead + 1); when the running batch no longer fits, the newest admitted
  requests are preempted: their KV cache is dropped and they go back to the head of the
  queue, to prefill prompt + the tokens produced so far again when readmitted.
- Prefill "separate": a step with prompts to prefill prefills only them (whole prompts, at least
  one, up to `step_tokens` tokens), and the decodes wait. "chunked": every step decodes the
  running requests and fills the rest of `step_tokens` with prompt pieces, oldest first.
- A finished prefill commits one token (the request's first, or after a recompute its next).
  A decode step drafts g_i tokens for request i, verifies g_i + 1, commits min(k_i + 1, left).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass
class Step:
    """One batch step as scheduled: decoding slots with their drafts, and prompt pieces."""

    decode: np.ndarray  # slot indices that decode
    gammas: np.ndarray  # drafted tokens per decoding slot
    context: int  # mean tokens in the decoding requests' KV caches
    pieces: list[tuple[int, int, int]]  # (slot, prompt tokens fed, tokens already in its KV cache)
    preempted: int  # requests preempted before this step
    drafted: int  # sum of gammas
    prompt_tokens: int  # sum of the pieces' tokens
    top: int = 0  # largest of gammas, and the smallest: the draft's cost and draws need them, and
    low: int = 0  # Python ints cost less than reductions over arrays this small
    piece_context: int = 0  # sum of the pieces' KV tokens


_NONE = np.zeros(0, np.int64)


# ---------------------------------------------------------------- memory modes (preemption)


class Reserve:
    """preemption "none": a request reserves its largest KV cache when admitted; memory never runs out."""

    @staticmethod
    def footprint(prompt: int, left: int, lookahead: int) -> int:
        return prompt + left + lookahead + 1

    @staticmethod
    def relieve(batcher: Batcher) -> int:
        """Requests preempted when the batch no longer fits (which a reserving batch never reaches)."""
        return 0

    grow = None  # (batcher, slots, committed, made), after a decode step: nothing more is held here

    @staticmethod
    def held(batcher: Batcher, i: int) -> int:
        """KV tokens slot i holds: what it reserved when admitted."""
        return int(batcher.reserved[i])


class Recompute:
    """preemption "recompute": a request holds what it has used; when the batch no longer fits the
    newest are preempted and later prefill again."""

    @staticmethod
    def footprint(prompt: int, left: int, lookahead: int) -> int:
        return prompt + lookahead + 1

    @staticmethod
    def relieve(batcher: Batcher) -> int:
        return batcher._preempt()

    @staticmethod
    def grow(batcher: Batcher, slots: np.ndarray, committed, made: int) -> None:
        batcher.used += made  # each slot's context grew by what it committed (held: from the context)

    @staticmethod
    def held(batcher: Batcher, i: int) -> int:
        """KV tokens slot i holds: its context, the prompt still to feed, lookahead + 1 (what it
        reserved when admitted, grown by every token it committed since)."""
        return batcher.context(i) + int(batcher.prefill_left[i]) + batcher.lookahead + 1


# ---------------------------------------------------------------- prefill modes


class Separate:
    """prefill "separate": a step with prompts to feed feeds only them (whole prompts, at least one,
    up to step_tokens), and the decodes wait."""

    @staticmethod
    def before(batcher: Batcher, decoding: np.ndarray, pieces: list) -> np.ndarray:
        """With prompts to feed: lay out prompt pieces before the drafts; returns the slots that decode."""
        budget = batcher.step_tokens
        for i in batcher.prefilling:
            p = int(batcher.prefill_left[i])
            if pieces and p > budget:
                break
            pieces.append((i, p, int(batcher.ctx[i])))
            budget -= p
        return decoding[:0]  # a prefill step: the decodes wait

    @staticmethod
    def after(batcher: Batcher, budget: int, pieces: list) -> None:
        """Lay out prompt pieces in the `budget` tokens the decodes leave: none."""


class Chunked:
    """prefill "chunked": every step decodes and fills what the decodes leave of step_tokens with
    prompt pieces, oldest first (Sarathi-Serve)."""

    @staticmethod
    def before(batcher: Batcher, decoding: np.ndarray, pieces: list) -> np.ndarray:
        return decoding

    @staticmethod
    def after(batcher: Batcher, budget: int, pieces: list) -> None:
        for i in batcher.prefilling:
            if budget <= 0:
                break
            p = min(int(batcher.prefill_left[i]), budget)
            pieces.append((i, p, int(batcher.ctx[i])))
            budget -= p


MEMORY = {"none": Reserve, "recompute": Recompute}
PREFILL = {"separate": Separate, "chunked": Chunked}


class Batcher:
    def __init__(self, max_batch: int, capacity: int, lookahead: int, memory=Reserve, prefill=Separate,
                 step_tokens: int = 2048, nodes: np.ndarray | None = None):
        self.capacity, self.lookahead, self.memory = capacity, lookahead, memory
        self.nodes = nodes  # token trees: tokens drafted at each depth (None: a chain drafts its depth)
        self.prefill, self.step_tokens = prefill, step_tokens
        self.waiting: deque = deque()  # records; preempted ones come back to the front
        n = max_batch
        self.rec: list = [None] * n
        self.free = list(range(n - 1, -1, -1))  # free slots, lowest on top
        self.active = np.zeros(n, bool)
        self.prefill_left = np.zeros(n, np.int64)  # prompt tokens still to feed
        # `unit` counts the steps without drafts, in which every decoding slot commits one token and
        # grows by one: counted there, not added slot by slot. A decoding slot's two counts lag by it:
        self.left = np.zeros(n, np.int64)  # output tokens still to commit; a decoding slot's plus unit
        self.ctx = np.zeros(n, np.int64)  # tokens in the KV cache; a decoding slot's less unit
        self.unit = 0
        self._zero = np.zeros(n, np.int64)  # no drafts: a view of it stands for every step's gammas
        self._zero.flags.writeable = False
        self.reserved = np.zeros(n, np.int64)  # KV tokens held
        self.order = np.zeros(n, np.int64)  # admission number: preemption takes the newest
        # decoding steps, kept lazily: every decoding slot decodes in a step that decodes at all, so
        # a slot's count is the steps decoded since it joined (decode_steps then, held here negated)
        self.steps = np.zeros(n, np.int64)
        self.decode_steps = 0
        self.drafted = np.zeros(n, np.int64)
        self.accepted = np.zeros(n, np.int64)
        self.gamma = np.zeros(n, np.int64)  # per-request draft length, for policies that keep one
        self.resume: dict[int, int] = {}  # preempted request id -> output tokens it still had to commit
        self.used = 0  # KV tokens reserved by the admitted requests
        self.prefilling: list[int] = []  # slots with prompt tokens still to feed, oldest admitted first
        self._decoding: np.ndarray | None = None  # slots that decode, until membership changes
        self._decoding_ctx = 0  # sum of their KV tokens, kept as they commit (a reduction costs more)
        self._first_done = 0  # the smallest left (as kept) of the decoding slots: the unit they finish at
        self._admitted = 0
        self.preemptions = 0
        self.kv_peak = 0

    # ------------------------------------------------------------ admission and memory

    def need(self, rec) -> int:
        """KV tokens a request holds at its largest: it must fit alone (checked on arrival)."""
        return rec.prompt_tokens + rec.output_tokens + self.lookahead + 1

    def _admit(self, gamma0: int) -> None:
        while self.waiting and self.free:
            rec = self.waiting[0]
            produced = rec.output_tokens - self.resume.get(rec.id, rec.output_tokens)
            prompt = rec.prompt_tokens + produced  # a preempted request recomputes its output so far
            left = rec.output_tokens - produced
            foot = self.memory.footprint(prompt, left, self.lookahead)
            if self.used + foot > self.capacity:
                return  # FCFS: the head waits for memory, and so does everyone behind it
            self.waiting.popleft()
            self.resume.pop(rec.id, None)
            i = self.free.pop()
            self.rec[i] = rec
            self.active[i] = True
            self.prefill_left[i], self.left[i], self.ctx[i], self.reserved[i] = prompt, left, 0, foot
            self.order[i] = self._admitted
            self.steps[i] = self.drafted[i] = self.accepted[i] = 0
            self.gamma[i] = gamma0
            self._admitted += 1
            self.used += foot
            self.prefilling.append(i)
            if not prompt:  # only an empty prompt joins the decoding slots at once
                self._decoding = None
                self.steps[i] = -self.decode_steps
                self.ctx[i] = -self.unit
                self.left[i] += self.unit

    def _preempt(self) -> int:
        """Drop the newest requests' KV caches until the batch fits again (Recompute: commit keeps
        reserved = context + prompt still to feed + lookahead + 1 and `used` their sum)."""
        dropped = 0
        while self.used > self.capacity and len(self.free) < len(self.rec) - 1:
            i = int(np.flatnonzero(self.active)[np.argmax(self.order[self.active])])
            rec = self.rec[i]
            self._release(i)
            self.resume[rec.id] = self.remaining(i)
            self.waiting.appendleft(rec)
            dropped += 1
        self.preemptions += dropped
        return dropped

    def context(self, i: int) -> int:
        """Tokens in slot i's KV cache."""
        return int(self.ctx[i]) + (self.unit if self.prefill_left[i] == 0 else 0)  # decoding: it lags by unit

    def remaining(self, i: int) -> int:
        """Output tokens slot i still has to commit."""
        return int(self.left[i]) - (self.unit if self.prefill_left[i] == 0 else 0)

    def decoding_state(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The KV tokens and the output tokens left of decoding slots `slots`."""
        return self.ctx[slots] + self.unit, self.left[slots] - self.unit

    def _release(self, i: int) -> None:
        rec = self.rec[i]
        rec.steps += int(self.steps[i]) + (self.decode_steps if self.prefill_left[i] == 0 else 0)
        rec.drafted += int(self.drafted[i])
        rec.accepted += int(self.accepted[i])
        self.active[i] = False
        self.used -= self.memory.held(self, i)
        self.reserved[i] = 0
        if self.prefill_left[i] > 0:
            self.prefilling.remove(i)  # it was not decoding: the decoding slots stay as they were
        else:
            self._decoding = None
        self.rec[i] = None
        self.free.append(i)

    # ------------------------------------------------------------ a step

    def schedule(self, policy) -> Step | None:
        """Admit, preempt if memory ran out, and lay out the next step; the speculation policy
        (simulator/speculation.py) gives the draft lengths. None when nothing is admitted."""
        preempted = self.memory.relieve(self) if self.used > self.capacity else 0
        if self.waiting:
            self._admit(policy.start())
        if len(self.free) == len(self.rec):
            return None
        self.kv_peak = max(self.kv_peak, self.used)
        pieces: list[tuple[int, int, int]] = []
        decoding = self._decoding
        if decoding is None:
            decoding = self._decoding = np.flatnonzero(self.active & (self.prefill_left == 0))
            self._decoding_ctx = int(np.add.reduce(self.ctx[decoding])) + decoding.size * self.unit
            self._first_done = int(self.left[decoding].min()) if decoding.size else 1 << 62
        if self.prefilling:
            decoding = self.prefill.before(self, decoding, pieces)
        gammas, drafted, context, top, low = _NONE, 0, 0, 0, 0
        b = decoding.size
        if b:
            context = self._decoding_ctx // b
            wanted = policy.gammas(self.gamma, decoding, b, context)
            if wanted is None:  # no drafts
                gammas = self._zero[:b]
            else:
                gammas = np.minimum(wanted, self.left[decoding] - (self.unit + 1))
                g = gammas.tolist()
                top, low = max(g), min(g)
                if low < 0:  # no slot that decodes has nothing left, so this is rare: clip only then
                    g = np.maximum(gammas, 0, out=gammas).tolist()
                    top, low = max(g), min(g)
                if self.nodes is None:
                    drafted = top * b if top == low else sum(g)
                else:
                    drafted = int(self.nodes[top]) * b if top == low else int(np.add.reduce(self.nodes[gammas]))
        if not self.prefilling:
            return Step(decoding, gammas, context, pieces, preempted, drafted, 0, top, low)
        self.prefill.after(self, self.step_tokens - drafted - b, pieces)
        tokens, piece_context = 0, 0
        for _, p, c in pieces:
            tokens += p
            piece_context += c
        return Step(decoding, gammas, context, pieces, preempted, drafted, tokens, top, low, piece_context)

    def commit(self, step: Step, accepted: np.ndarray) -> tuple[list, list, int]:
        """Apply a step's outcome: accepted[j] of decoding slot j's drafts. Returns the records whose
        first token this step produced, those that finished, and the tokens committed."""
        firsts, made, done = [], 0, []
        d = step.decode
        if d.size:
            self.decode_steps += 1
            if step.drafted:
                left = self.left[d]
                c = np.minimum(accepted + 1, left - self.unit)
                left -= c
                self.left[d] = left
                self.ctx[d] += c
                self.drafted[d] += step.gammas if self.nodes is None else self.nodes[step.gammas]
                self.accepted[d] += accepted
                made = int(np.add.reduce(c))
                first = self._first_done = min(left.tolist())  # a list's min costs less than left.min() here
            else:  # every decoding slot commits one token: unit counts it for all
                c, made = 1, d.size
                self.unit += 1
                first = self._first_done
            self._decoding_ctx += made  # every decoding slot decodes (or none does)
            if self.memory.grow is not None:
                self.memory.grow(self, d, c, made)
            if first == self.unit:  # some slot has nothing left
                done = d[self.left[d] == self.unit].tolist()
        for i, p, _ in step.pieces:
            self.prefill_left[i] -= p
            self.ctx[i] += p
            if self.prefill_left[i] == 0:  # the prefill's own token
                self.prefilling.remove(i)
                self._decoding = None
                self.steps[i] = -self.decode_steps  # it decodes from the next step on
                self.ctx[i] -= self.unit
                self.left[i] -= 1
                made += 1
                firsts.append(self.rec[i])
                if self.left[i] == 0:
                    done.append(i)
                self.left[i] += self.unit
        finished = []
        for i in done:
            finished.append(self.rec[i])
            self._release(i)
        return firsts, finished, made
