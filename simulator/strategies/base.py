"""What every strategy spec is: where its models run and in which role, which devices exchange
messages, how far it looks ahead, its cross-field rules, its SimPy process, its closed form and
its one-line description. A strategy module subclasses StrategySpec with a `kind` literal and
is listed once in strategies/__init__.py; everything else (the scenario schema, the engine, the
closed form, the CLI, the reference docs) asks the registry."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, ClassVar, NamedTuple

from pydantic import Field

from ..fields import Strict

if TYPE_CHECKING:
    from ..closed_form import Closed, Frame
    from ..engine import World
    from ..scenario import Scenario


class Role(enum.Enum):
    """What a placed model does: drafts (charged the device's draft_forward_ms per forward), verifies
    as the target, or runs a pipeline stage of the target."""

    DRAFT = "draft"
    TARGET = "target"
    STAGE = "stage"


class Placed(NamedTuple):
    """A model on a device in a role, as a strategy places it; tp: over how many of the device's GPUs
    it is split (None: all of them)."""

    model: str
    device: str
    role: Role
    tp: int | None = None


class Placement(Strict):
    model: str = Field(description="Key of a model in `models`.")
    device: str = Field(description="Key of a device in `devices`.")
    tp: int | None = Field(None, ge=1, description="Tensor-parallel degree: over how many of the device's "
                           "`gpus` the model is split (a divisor of them; 1 runs it on one GPU of the group, as "
                           "a small drafter beside a split target). Default: all of the device's GPUs.")

    def placed(self, role: Role) -> Placed:
        return Placed(self.model, self.device, role, self.tp)


class StrategySpec(Strict):
    """What every strategy spec tells the engine and the checks: which model runs on which device
    in which role, and which devices exchange messages (and so need a link)."""

    rules: ClassVar[str] = ""  # rules its validators and `check` enforce, for the reference docs
    admits_by_memory: ClassVar[bool] = False  # it admits requests by KV memory itself (no memory warning)

    def placements(self) -> dict[str, Placed]:
        """The models this strategy runs, by the field path that places each."""
        roles = {"draft": Role.DRAFT, "target": Role.TARGET}
        return {key: place.placed(role) for key, role in roles.items() if (place := getattr(self, key, None)) is not None}

    def exchanges(self) -> list[tuple[str, str]]:
        """Pairs of placements whose devices send each other messages."""
        return [("draft", "target")] if "draft" in self.placements() else []

    def lookahead_tokens(self) -> int:
        """Most tokens a step puts in a KV cache beyond the committed context (sizes the latency
        tables and the memory check): gamma for a chain of drafts."""
        return getattr(self, "gamma", 0)

    def reference_target(self) -> Placed:
        """The placement whose forward times give the autoregressive baseline of the closed form."""
        return self.placements()["target"]

    def check(self, scenario: Scenario) -> None:
        """Rules across this strategy and the rest of the scenario; raise fields.Ref(field, rule)."""

    def build(self, world: World):
        """The SimPy side: an object whose `serve(record)` is a process body serving one request."""
        raise NotImplementedError(f"strategy {self.kind!r} has no process")

    def estimate(self, f: Frame) -> Closed:
        """The closed form at the frame's mean lengths, adding each device's and link's demand."""
        raise NotImplementedError(f"strategy {self.kind!r} has no closed form")

    def describe(self) -> str:
        """One line for report titles: the kind, gamma if any, and where each model runs."""
        places = ", ".join(f"{p.model} on {p.device}" for p in self.placements().values())
        return f"{self.kind}" + (f", gamma {self.gamma}" if hasattr(self, "gamma") else "") + f": {places}"
