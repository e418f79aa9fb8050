"""Speculation-length policies for a batch: how many tokens each running request drafts this step.

Plain code, no SimPy. Each policy gives per-slot draft lengths (`gammas`) and learns from the
step's outcome (`observe`). `cost(batch, g, context)` is the step's time in seconds from the
latency model (draft forwards + the verifying forward), for policies that weigh it.

- fixed: every request drafts `gamma`.
- goodput (after SmartSpec, Liu et al. 2024): one g for the whole batch, 0..gamma, maximising
  expected committed tokens per second, batch x E[tokens | g] / cost(batch, g, context), with
  E[tokens | g] = (1 - a^(g + 1)) / (1 - a) for the estimated per-token acceptance a.
  The estimate is successes / trials over recent steps: a request that drafted g and had k
  accepted tried k + 1 drafts if k < g (k if k = g) and succeeded k times; both counts decay by
  `DECAY` per step (a memory of about 10 steps). They start from the scenario's acceptance model
  as `PRIOR_TRIALS` trials at its rate E[K] / (E[K] + P(K < g)) for g = gamma (alpha, for iid),
  so a batch that stops drafting keeps the estimate it had.
- adaptive (acceptance history, per request, as Hugging Face's "heuristic" schedule): a request
  starts at gamma; after a step where all its drafts were accepted it drafts 2 more (at most
  gamma), after a rejection 1 fewer (at least 1).
- off_under_load: gamma, or 0 in a step whose batch is compute-bound: where verifying 2 tokens
  per request costs more than `compute_bound_ratio` times verifying 1.
"""

from __future__ import annotations

import numpy as np

DECAY = 0.9
PRIOR_TRIALS = 20.0


class Fixed:
    def __init__(self, gamma: int, cost=None, verify=None, ratio: float = 0.0, prior: float = 0.5):
        self.cap, self.cost, self.verify, self.ratio = gamma, cost, verify, ratio

    def start(self) -> int:
        return self.cap

    def gammas(self, per_request: np.ndarray, slots: np.ndarray, batch: int, context: int) -> np.ndarray | int | None:
        """Draft lengths per slot (an int: the same for every slot, which spares building an array the
        batcher clips anyway), or None when nobody drafts this step."""
        return self.cap or None

    def observe(self, per_request: np.ndarray, slots: np.ndarray, gammas: np.ndarray, accepted: np.ndarray) -> None:
        pass


class Adaptive(Fixed):
    def gammas(self, per_request, slots, batch, context):
        return per_request[slots]

    def observe(self, per_request, slots, gammas, accepted):
        g = per_request[slots]
        tried = gammas > 0
        full = tried & (accepted == gammas)
        per_request[slots] = np.where(full, np.minimum(g + 2, self.cap),
                                      np.where(tried, np.maximum(g - 1, 1), g))


class Goodput(Fixed):
    def __init__(self, gamma: int, cost=None, verify=None, ratio: float = 0.0, prior: float = 0.5):
        super().__init__(gamma, cost, verify, ratio)
        self.successes, self.trials = prior * PRIOR_TRIALS, PRIOR_TRIALS

    def estimate(self) -> float:
        return self.successes / self.trials

    def gammas(self, per_request, slots, batch, context):
        a = min(self.estimate(), 1 - 1e-9)
        best, best_rate = 0, -1.0
        for g in range(self.cap + 1):
            rate = (1 - a ** (g + 1)) / (1 - a) / self.cost(batch, g, context)
            if rate > best_rate:
                best, best_rate = g, rate
        return best or None

    def observe(self, per_request, slots, gammas, accepted):
        tried = gammas > 0
        self.successes = self.successes * DECAY + float(accepted[tried].sum())
        self.trials = self.trials * DECAY + float((accepted + (accepted < gammas))[tried].sum())


class OffUnderLoad(Fixed):
    def gammas(self, per_request, slots, batch, context):
        bound = self.verify(batch, 2, context) > self.ratio * self.verify(batch, 1, context)
        return None if bound or not self.cap else self.cap


def prior_rate(acceptance, gamma: int) -> float:
    """Per-draft acceptance rate of an acceptance model at draft length gamma: E[K] / (E[K] + P(K < g))."""
    if gamma == 0:
        return 0.5
    pmf = acceptance.pmf(gamma)
    mean = float(np.dot(np.arange(gamma + 1), pmf))
    return mean / (mean + 1 - float(pmf[gamma])) if mean + 1 - pmf[gamma] > 0 else 1.0


POLICIES = {"fixed": Fixed, "adaptive": Adaptive, "goodput": Goodput, "off_under_load": OffUnderLoad}
