"""What-if grids: `KEY=v1,v2,...` options, their cross product, and a check of every configuration.

A grid names any scenario key as `--set` does (`strategy.gamma`, `links.0.latency_ms`,
`devices.cloud.profile`) and a comma-separated list of values, each read as a YAML scalar or
flow collection, as `--set` reads its value. The list is split at commas outside brackets,
braces and quotes, so `workload.arrival={kind: poisson, rate_per_s: 2},{kind: closed_loop, users: 4}`
has two values; a value that itself holds a top-level comma must be quoted.

Every configuration is built and checked (schema, references, profiles and trace files, as
`specsim validate` does) before anything runs, so bad input ends before any work or output.
"""

from __future__ import annotations

import copy
import itertools
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import engine
from . import scenario as sc
from .errors import InputError
from .formats import FormatError, load_yaml


@dataclass(frozen=True)
class Axis:
    key: str
    raws: tuple[str, ...]  # the values as written: labels and CSV cells
    values: tuple  # the values as YAML reads them


@dataclass(frozen=True)
class Base:
    """A scenario file's data with the `--set` overrides applied, and where its relative paths start."""

    data: dict
    source: str
    base_dir: str


def split_values(text: str) -> list[str]:
    """Split at commas that are not inside [], {} or quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_axis(text: str, option: str = "--grid") -> Axis:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip():
        raise InputError(option, text, "expected dotted.key=v1,v2,...")
    raws = split_values(raw)
    if any(r == "" for r in raws):
        raise InputError(option, key, "empty value in the list (values are separated by single commas)")
    if len(set(raws)) != len(raws):
        raise InputError(option, key, "a value is listed twice")
    values = []
    for r in raws:
        try:
            values.append(load_yaml(r))
        except FormatError as exc:
            raise InputError(option, key, f"value: {exc.rule}") from None
        except (yaml.YAMLError, RecursionError) as exc:
            raise InputError(option, key, f"value {r!r} is not valid YAML: {' '.join(str(exc).split())}") from None
    return Axis(key, tuple(raws), tuple(values))


def parse_axes(texts: list[str], option: str = "--grid") -> list[Axis]:
    axes = [parse_axis(t, option) for t in texts]
    keys = [a.key for a in axes]
    for key in keys:
        if keys.count(key) > 1:
            raise InputError(option, key, "the key is given twice")
    return axes


def configurations(axes: list[Axis]) -> list[dict[str, str]]:
    """The cross product, as {key: raw value} in order (the last axis varies fastest)."""
    return [dict(zip((a.key for a in axes), combo)) for combo in itertools.product(*(a.raws for a in axes))]


def load_base(path: Path, sets: list[str]) -> Base:
    data = sc.read_data(path)
    for assignment in sets:
        sc.apply_override(data, assignment)
    return Base(data, str(path), str(path.parent.resolve()))


def build(base: Base, config: dict[str, str], **top: object) -> dict:
    """The scenario data of one configuration: a copy of the base, the grid's values, then `top`
    (top-level or dotted keys with ready values, such as seed)."""
    data = copy.deepcopy(base.data)
    for key, raw in config.items():
        sc.apply_override(data, f"{key}={raw}", "--grid")
    for key, value in top.items():
        _put(data, key.split("."), value)
    return data


def parse(base: Base, data: dict) -> sc.Scenario:
    return sc.parse(data, base.source, Path(base.base_dir))


def check(base: Base, config: dict[str, str], **top: object) -> sc.Scenario:
    """Build and validate one configuration; an error names it."""
    with naming(config):
        spec = parse(base, build(base, config, **top))
        engine.prepare(spec, base.source)  # opens every profile and trace the run would use
        return spec


@contextmanager
def naming(config: dict[str, str]):
    """An input error inside names the configuration it was found in."""
    try:
        yield
    except InputError as exc:
        if not config:
            raise
        where = ", ".join(f"{k}={v}" for k, v in config.items())
        raise InputError(exc.file, exc.field, f"{exc.rule} (in the configuration {where})") from None


def label(config: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items()) or "the scenario"


def _put(data: dict, parts: list[str], value: object) -> None:
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value
