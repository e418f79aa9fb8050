"""The flat records a run keeps: one per request, one per decoding step, one per batch step.

Each field is defined by formula in docs/model.md; metrics.py turns them into the report and
writes them as requests.csv, steps.csv and batches.csv. In the step loop a process appends a
plain row (a tuple of StepRecord's or BatchRecord's fields, in order: the cheapest thing to build
there) to World.steps or World.batches; engine.Result.steps and .batches give them as records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass
class RequestRecord:
    id: int
    prompt_tokens: int
    output_tokens: int
    arrival_s: float
    first_token_s: float = float("nan")
    finish_s: float = float("nan")
    steps: int = 0  # decoding steps after prefill (one target forward each)
    drafted: int = 0  # drafted tokens, over all steps
    accepted: int = 0  # drafted tokens the target accepted
    user: int = 0  # closed loop: the user who sent it; open loop: the request's id


class StepRecord(NamedTuple):
    """One decoding step of one request (a row of steps.csv)."""

    request: int  # RequestRecord.id
    start_s: float
    end_s: float
    drafted: int  # tokens sent to the target for checking (tree nodes for a tree)
    accepted: int  # of them, accepted
    committed: int  # tokens the step added to the output


class BatchRecord(NamedTuple):
    """One step of a batching server (strategy batched; a row of batches.csv)."""

    start_s: float
    end_s: float
    batch: int  # requests decoding
    prefill_tokens: int  # prompt tokens fed
    drafted: int  # over the batch
    accepted: int
    committed: int
    preempted: int  # requests preempted before the step


STEP_FIELDS = StepRecord._fields
BATCH_FIELDS = BatchRecord._fields
