"""Reading a training config: the YAML file, its validation into :class:`RunConfig` (one-line errors), and the
resolved config as plain data (what a run folder's config.yaml holds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import ConfigError
from ._messages import format_error
from ._schema import RunConfig

__all__ = ["read_yaml", "parse_config", "load_config", "dump_config"]


class _DuplicateKey(Exception):
    pass


class _UniqueKeys(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key written twice in one mapping is an error: the later one would
    silently replace the earlier (two `optimizer:` blocks, one of them forgotten)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be set again, on purpose
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise _DuplicateKey(f"line {key_node.start_mark.line + 1}: key '{key}' is already set on line "
                                    f"{seen[key]}; keep one of them")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p} is a folder; pass a YAML file")
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file; pass an existing YAML path")
    try:
        raw = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeys)
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start} is {e.object[e.start:e.start + 1]!r}); save the "
                          "file as UTF-8") from None
    except _DuplicateKey as e:
        raise ConfigError(f"{p}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}:{where} is not valid YAML ({getattr(e, 'problem', e)}); fix the syntax") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping of keys, got {type(raw).__name__}")
    return raw


def parse_config(data: dict[str, Any], where: str = "config", prefix: tuple[str, ...] = ()) -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_error(err, where, data, prefix)) from None


def load_config(path: str | Path) -> RunConfig:
    return parse_config(read_yaml(path), str(path))


def dump_config(cfg: RunConfig) -> dict[str, Any]:
    return cfg.model_dump(mode="json")
