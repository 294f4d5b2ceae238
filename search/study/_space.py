"""Search spaces: dotted config paths -> distributions, with defaults and conditions.

```yaml
search_space:
  optimizer.name: {choices: [adamw, sgd]}
  optimizer.lr: {low: 1.0e-4, high: 1.0e-1, log: true, default: 3.0e-3}
  optimizer.momentum: {low: 0.8, high: 0.99, when: {optimizer.name: sgd}}
```
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Literal, Protocol

from pydantic import Field, model_validator

from training.config import StrictModel

__all__ = ["Param", "Space", "sample_params", "defaults", "apply_params", "get_path", "space_hash", "is_active",
           "lookup"]

Scalar = bool | int | float | str | None


class Param(StrictModel):
    type: Literal["float", "int", "categorical"] | None = None
    low: int | float | None = None  # int first: an int range {low: 16, high: 512} stays int (suggest_int)
    high: int | float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Scalar] | None = None
    default: Scalar | list = None
    when: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shape(self) -> "Param":
        kind = self.kind
        if kind == "categorical":
            if not self.choices:
                raise ValueError("choices is empty; list at least one value")
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("needs low and high (a range) or choices (a set)")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) > high ({self.high}); swap them")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got low={self.low}")
        if self.log and self.step:
            raise ValueError("log and step cannot be combined")
        return self

    @property
    def kind(self) -> str:
        if self.type:
            return self.type
        if self.choices is not None:
            return "categorical"
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high)) and \
                (self.step is None or float(self.step).is_integer()):
            return "int"
        return "float"

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not in this distribution, or None."""
        if self.kind == "categorical":
            return None if value in self.choices else f"not one of {self.choices}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"not a number in [{self.low}, {self.high}]"
        return None if self.low <= value <= self.high else f"outside [{self.low}, {self.high}]"


Space = dict[str, Param]


class TrialLike(Protocol):
    def suggest_float(self, name: str, low: float, high: float, *, step=None, log=False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int, *, step=1, log=False) -> int: ...
    def suggest_categorical(self, name: str, choices: list) -> Any: ...


MISSING = object()


def get_path(d: dict, path: str, default: Any = MISSING) -> Any:
    node: Any = d
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            if default is MISSING:
                raise KeyError(path)
            return default
    return node


def _set_path(d: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    node: Any = d
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


def is_active(p: Param, values: dict[str, Any]) -> bool:
    for path, want in p.when.items():
        have = values.get(path, MISSING)
        if isinstance(want, list) and have not in want or not isinstance(want, list) and have != want:
            return False
    return True


def lookup(path: str, chosen: dict[str, Any], base: dict) -> Any:
    return chosen[path] if path in chosen else get_path(base, path, MISSING)


def sample_params(trial: TrialLike, space: Space, base: dict) -> dict[str, Any]:
    """Sample every active parameter (in file order; conditions see earlier choices and fixed values)."""
    chosen: dict[str, Any] = {}
    for path, p in space.items():
        if not is_active(p, {k: lookup(k, chosen, base) for k in p.when}):
            continue
        if p.kind == "categorical":
            chosen[path] = trial.suggest_categorical(path, p.choices)
        elif p.kind == "int":
            chosen[path] = trial.suggest_int(path, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            chosen[path] = trial.suggest_float(path, p.low, p.high, step=p.step, log=p.log)
    return chosen


def defaults(space: Space, base: dict) -> dict[str, Any]:
    """The default of every active parameter: its ``default``, else the fixed config's value at its path."""
    chosen: dict[str, Any] = {}
    for path, p in space.items():
        if not is_active(p, {k: lookup(k, chosen, base) for k in p.when}):
            continue
        chosen[path] = p.default if p.default is not None else get_path(base, path, None)
    return chosen


def apply_params(base: dict, params: dict[str, Any]) -> dict:
    out = copy.deepcopy(base)
    for path, value in params.items():
        _set_path(out, path, value)
    return out


def space_hash(space: Space) -> str:
    """Changes when a distribution does, not when a bound is written 0 instead of 0.0 (bounds once were always
    floats: keeping them so keeps the hashes of existing studies). A range that samples ints because both
    bounds are ints, which such a study sampled as floats, is a new space: say so."""
    canon = {}
    for k, v in space.items():
        c = v.model_dump(exclude={"default"})
        c.update({b: float(c[b]) for b in ("low", "high") if c[b] is not None})
        if v.type is None and v.kind == "int":
            c["int_bounds"] = True
        canon[k] = c
    return hashlib.sha256(json.dumps(canon, sort_keys=True, default=str).encode()).hexdigest()[:16]
