"""Pieces every part of the scenario schema shares: the strict base model, constrained numbers,
and a rule error that names its field (scenario.py and the strategy specs in strategies/)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Prob = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Payload = Literal["ids", "ids_probs", "full_dist"]
Gamma = Annotated[int, Field(ge=0, le=64)]


class Strict(BaseModel):
    """Unknown keys refused; no number may be NaN or infinite unless its field says so."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class Ref(ValueError):
    """A rule that knows its field path, relative to the model that raises it."""

    def __init__(self, field: str, rule: str):
        self.field, self.rule = field, rule
        super().__init__(f"{field}: {rule}")
