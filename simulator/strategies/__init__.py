"""Execution strategies, one module each: how a request's tokens are produced.

Each module holds one strategy whole: its scenario spec (a pydantic model with a `kind` literal,
a StrategySpec), its SimPy process (built by `spec.build(world)`, serving one request at a time
through `serve(record)`), its closed form (`spec.estimate(frame)`) and its one-line description.
SPECS below is the one list of them: the scenario schema's `strategy` union, the engine, the
closed form, the CLI and the reference docs all read it. A process never computes a latency
itself: it asks the device's ForwardTime tables and the links.

A new strategy is one module and one line here (or, from outside the package, `register`).
"""

from __future__ import annotations

from typing import Annotated, Union, get_args

from pydantic import Field
from pydantic.fields import FieldInfo

from .autoregressive import Autoregressive
from .base import Placed, Placement, Role, StrategySpec
from .batched import Batched
from .dynamic_tree import DynamicTree
from .federated import Federated
from .medusa import Medusa
from .pearl import Pearl
from .pipeinfer import PipeInfer
from .pipeline import Pipeline
from .self_speculative import SelfSpeculative
from .shared_verifier import SharedVerifier
from .speculative import Speculative
from .staged import Staged
from .tree import Tree

__all__ = ["SPECS", "Placed", "Placement", "Role", "StrategySpec", "register", "union", "unregister"]


def kind_of(spec: type[StrategySpec]) -> str:
    """The `kind` literal of a strategy spec class."""
    (kind,) = get_args(spec.model_fields["kind"].annotation)
    return kind


# In this order in the schema, the reference docs and error messages.
SPECS: dict[str, type[StrategySpec]] = {kind_of(s): s for s in (
    Autoregressive, Speculative, SharedVerifier, Pearl, Federated, Tree, DynamicTree, Medusa, SelfSpeculative, Staged,
    Pipeline, PipeInfer, Batched)}


def union():
    """The scenario's `strategy` type: every registered spec, chosen by its `kind`."""
    return Annotated[Union[tuple(SPECS.values())], Field(discriminator="kind")]


def register(spec: type[StrategySpec]) -> type[StrategySpec]:
    """Add a strategy kind from outside this package; scenarios accept it from then on."""
    from .. import scenario

    kind = kind_of(spec)
    if kind in SPECS:
        raise ValueError(f"strategy kind {kind!r} is already registered")
    SPECS[kind] = spec
    _rebuild(scenario)
    return spec


def unregister(kind: str) -> None:
    """Remove a kind added by `register`."""
    from .. import scenario

    del SPECS[kind]
    _rebuild(scenario)


def _rebuild(scenario) -> None:
    """Let scenario.Scenario accept exactly the kinds in SPECS."""
    scenario.Strategy = union()
    old = scenario.Scenario.model_fields["strategy"]
    scenario.Scenario.model_fields["strategy"] = FieldInfo.from_annotated_attribute(
        scenario.Strategy, Field(description=old.description))
    scenario.Scenario.model_rebuild(force=True)
