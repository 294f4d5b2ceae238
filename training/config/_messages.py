"""A pydantic validation error as one line: the file, the key (with its valid keys and a near miss for an unknown
one), the value and what is wrong. Used for training configs and study files alike."""

from __future__ import annotations

import re
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from ..registry import did_you_mean
from ._schema import DATA_SOURCES, RunConfig

__all__ = ["format_error"]


def _field_model(ann: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds, and whether it is held by key: ``Model`` itself, or a ``dict[str, Model]``'s
    values (a study's search_space)."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, False
    args = get_args(ann)
    if get_origin(ann) is dict and len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel):
        return args[1], True
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    if len(models) == 1 and all(a is type(None) or a in models for a in args):  # Model | None
        return models[0], False
    return None, False


def _tagged_member(field: FieldInfo, node: Any) -> type[BaseModel] | None | bool:
    """For a discriminated union (``data``: its ``source``), the member model the section's tag picks (the first
    when it has none, as the schema defaults it); None for an unknown tag; False for any other field."""
    disc = field.discriminator
    if not isinstance(disc, str):
        return False
    members = get_args(field.annotation)
    tags = {get_args(m.model_fields[disc].annotation)[0]: m for m in members}
    tag = node.get(disc) if isinstance(node, dict) else None
    return members[0] if tag is None else tags.get(tag)


def _model_at(loc: tuple[Any, ...], data: Any, root: type[BaseModel]) -> type[BaseModel] | None:
    """The pydantic model that holds the key at ``loc`` (to list its valid keys)."""
    model: Any = root
    node = data
    keyed = False  # the next part is a key of a dict[str, Model] field, not a field name
    for part in loc[:-1]:
        if keyed:
            keyed = False
            node = node.get(part, {}) if isinstance(node, dict) else {}
            continue
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        node = node.get(part, {}) if isinstance(node, dict) else {}
        ann = model.model_fields[part].annotation
        tagged = _tagged_member(model.model_fields[part], node)
        if tagged is not False:
            model = tagged
        else:
            model, keyed = _field_model(ann)
    return model


_BRANCH = re.compile(r"^(literal\[.*\]|bool|int|float|str|none|list\[.*\]|tuple\[.*\]|function-.*|lax-or-strict\[.*\]|"
                     r"json-or-python\[.*\]|is-instance\[.*\]|union\[.*\]|nullable\[.*\]|constrained-.*|path)$")


def _clean_loc(loc: tuple) -> tuple:
    """Drop pydantic's internal parts: the data-source tag and the branch names of union-typed keys."""
    out = []
    for i, p in enumerate(loc):
        if i > 0 and loc[i - 1] == "data" and p in DATA_SOURCES:
            continue
        if isinstance(p, str) and _BRANCH.match(p):
            continue
        out.append(p)
    return tuple(out)


def _value_at(data: Any, loc: tuple) -> Any:
    node = data
    for p in loc:
        if isinstance(node, dict) and p in node:
            node = node[p]
        elif isinstance(node, list) and isinstance(p, int) and p < len(node):
            node = node[p]
        else:
            return None
    return node


def format_error(err: ValidationError, where: str, data: Any, prefix: tuple[str, ...] = (),
                 root: type[BaseModel] = RunConfig) -> str:
    """One line for what ``root.model_validate(data)`` raised: ``where`` (the file), the dotted key (under
    ``prefix``), the value and what is allowed; an unknown key gets the valid ones and a near miss."""
    errors = err.errors()
    # a misspelt required key fails twice, as missing and as unknown: the unknown one says what to fix
    unknown = any(x["type"] == "extra_forbidden" for x in errors)
    errors.sort(key=lambda x: unknown and x["type"] == "missing")
    e = errors[0]
    loc = _clean_loc(e["loc"])
    # a union-typed key fails once per allowed form (list forms at an item): gather them all
    same = [x for x in errors if _clean_loc(x["loc"])[:len(loc)] == loc]
    others = len({_clean_loc(x["loc"])[:len(loc)] for x in errors}) - 1
    key = ".".join(str(p) for p in prefix + loc) or "(top level)"
    more = f" (+{others} more)" if others else ""
    if e["type"] == "extra_forbidden":
        model = _model_at(loc, data, root)
        valid = sorted(model.model_fields) if model else []
        name = str(loc[-1])
        hint = did_you_mean(name, valid) + (f"; valid keys: {', '.join(valid)}" if valid else "")
        return f"{where}: unknown key '{key}'{hint}{more}"
    if e["type"] == "missing" and loc and isinstance(loc[-1], int):  # a list/tuple with too few values
        parent = ".".join(str(p) for p in prefix + loc[:-1])
        return f"{where}: {parent} = {_value_at(data, loc[:-1])!r}: too few values (item {loc[-1]} is missing){more}"
    if e["type"] == "missing":
        model = _model_at(loc, data, root)
        field = model.model_fields.get(str(loc[-1])) if model and loc else None
        what = f" ({field.description})" if field is not None and field.description else ""
        return f"{where}: missing required key '{key}'{what}; add it{more}"
    if e["type"] == "union_tag_invalid":
        return (f"{where}: {key}.source = {e['input'].get('source')!r} is not a data source; "
                f"valid: {', '.join(DATA_SOURCES)}{more}")
    msgs = list(dict.fromkeys(
        (f"a list, but item {_clean_loc(x['loc'])[len(loc)]}: " if len(_clean_loc(x["loc"])) > len(loc) else "")
        + re.sub(r"a valid dictionary or instance of \w+", "a mapping (key: value)",
                 x["msg"].removeprefix("Value error, ")) for x in same))
    msg = " or ".join(msgs) if len(msgs) <= 4 else "; ".join(msgs[:4])
    value = _value_at(data, loc) if loc else e.get("input")
    if isinstance(value, dict):  # a whole section (or file) failed a cross-field check: its message names the keys
        return f"{where}: {msg}{more}" if key == "(top level)" else f"{where}: {key}: {msg}{more}"
    return f"{where}: {key} = {value!r}: {msg}{more}"
