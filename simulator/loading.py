"""Reading a scenario: a file (YAML, JSON or TOML) to a validated Scenario, with --set overrides.

A scenario is data: YAML is read with a safe loader, JSON and TOML load too, nothing in it
executes code, and relative paths resolve against the scenario file's folder.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from .errors import InputError, from_validation, one_line
from .formats import FormatError, load_json, load_yaml, read_input

if TYPE_CHECKING:
    from .scenario import Scenario

# scenario.py imports this module at its end (its loaders are sc.load, sc.parse, ...), so the
# scenario models are imported where they are used, not at the top


def read_data(path: Path) -> dict:
    """The raw mapping of a YAML, JSON or TOML file; never executes anything."""
    text = read_input(path)
    try:
        if path.suffix == ".json":
            data = load_json(text)
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = load_yaml(text)
    except FormatError as exc:
        raise InputError(path, exc.field, exc.rule) from None
    except (ValueError, yaml.YAMLError, RecursionError) as exc:  # ValueError: JSON, TOML (and its long integers)
        why = one_line(exc).split("; use sys.set_int_max_str_digits")[0]
        raise InputError(path, "", f"not valid {path.suffix.lstrip('.') or 'YAML'}: {why}") from None
    if not isinstance(data, dict):
        raise InputError(path, "", "the top level must be a mapping of scenario fields")
    return data


def apply_override(data: dict, assignment: str, source: str = "--set") -> None:
    """Apply `dotted.key=value` in place; the value is read as a YAML scalar or flow collection."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise InputError(source, assignment, "expected dotted.key=value")
    try:
        value = load_yaml(raw) if raw.strip() else raw
    except FormatError as exc:
        raise InputError(source, key, f"value: {exc.rule}") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise InputError(source, key, f"value is not valid YAML: {one_line(exc)}") from None
    parts = key.split(".")
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise InputError(source, key, f"{'.'.join(parts[:depth]) or 'top level'} has no item {part}")
            idx: Any = int(part)
        elif isinstance(node, dict):
            idx = part
            if not last and idx not in node:
                node[idx] = {}
        else:
            raise InputError(source, key, f"{'.'.join(parts[:depth])} is not a mapping or list")
        if last:
            node[idx] = value
        else:
            node = node[idx]


def parse(data: dict, source: str | Path, base_dir: Path | None = None) -> "Scenario":
    from .scenario import Scenario

    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc, data, source) from None
    return _resolve_paths(scenario, base_dir or Path("."), source)


def load(path: str | Path, overrides: list[str] = ()) -> "Scenario":
    path = Path(path)
    data = read_data(path)
    for assignment in overrides:
        apply_override(data, assignment)
    return parse(data, path, path.parent)


def _resolve_paths(scenario: "Scenario", base: Path, source) -> "Scenario":
    from . import scenario as sc

    updates = {}
    for field in ("acceptance",):
        spec = getattr(scenario, field)
        if isinstance(spec, sc.TraceAcceptance) and spec.path is not None:
            updates[field] = spec.model_copy(update={"path": _trace_file(base, spec.path, f"{field}.path", source)})
    arrival = scenario.workload.arrival
    if isinstance(arrival, sc.TraceArrivals):
        arrival = arrival.model_copy(update={"path": _trace_file(base, arrival.path, "workload.arrival.path", source)})
        updates["workload"] = scenario.workload.model_copy(update={"arrival": arrival})
    for key, dev in scenario.devices.items():
        if isinstance(dev.profile, str) and (base / dev.profile).is_dir():
            updates.setdefault("devices", dict(scenario.devices))[key] = dev.model_copy(
                update={"profile": str((base / dev.profile).resolve())})
    return scenario.model_copy(update=updates) if updates else scenario


def _trace_file(base: Path, path: str, field: str, source) -> str:
    resolved = (base / path).resolve()
    if not resolved.is_file():
        raise InputError(source, field, f"file not found: {resolved}")
    return str(resolved)
