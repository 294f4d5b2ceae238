"""A study-file section picked by its ``name`` (``sampler:``, ``pruner:``): one line for each way it can be wrong."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from training.config import StrictModel, format_error
from training.registry import did_you_mean

__all__ = ["check_named", "registered_in"]


def registered_in(registry: dict[str, type[StrictModel]], kind: str):
    """A class decorator that registers a spec class under its ``name`` (the default of its Literal field); a
    name registered twice is an error."""
    def register(cls):
        name = cls.model_fields["name"].default
        if name in registry:
            raise ValueError(f"{kind} {name!r} is registered twice")
        registry[name] = cls
        return cls
    return register


def check_named(raw: Any, where: str, key: str, registry: dict[str, type[StrictModel]], default: str,
                kind: str) -> dict:
    """Validate ``raw`` against the model its name picks; returns it with the name filled in (pydantic's union
    needs the tag; a section without one means the default). Raises ValueError with one line for a
    non-mapping, an unknown name (the valid ones, a near miss), a key of another entry (naming which), or a bad
    value (training.config.format_error). Checked before pydantic's union, whose errors list every branch."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: {key} = {raw!r}: a mapping such as {{name: {default}}}")
    name = raw.get("name", default)
    if name not in registry:
        raise ValueError(f"{where}: {key}.name = {name!r} is not a {kind}{did_you_mean(str(name), list(registry))}; "
                         f"valid: {', '.join(registry)}")
    model = registry[name]
    own = set(model.model_fields)
    for k in raw:
        owners = [n for n, m in registry.items() if k in m.model_fields]
        if k not in own and owners:
            raise ValueError(f"{where}: {key}.{k} belongs to {kind} {' / '.join(owners)}, not {name!r}; "
                             f"{name} takes: {', '.join(sorted(own - {'name'})) or 'no keys'}")
    try:
        model.model_validate(raw)
    except ValidationError as err:
        raise ValueError(format_error(err, where, raw, prefix=tuple(key.split(".")), root=model)) from None
    return {**raw, "name": name}
