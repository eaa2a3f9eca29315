"""Config errors that say where: the origin of every key (an override, or a file and its line) and one message per
bad key, with the closest valid key for a misspelt one and the task type that reads a key this one does not.
nerflow.config.load_config uses it."""
from __future__ import annotations

import difflib
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError


def key_lines(text: str) -> dict[str, int]:
    """`{"train.epochs": 31, ...}`: the 1-based line of every key in a YAML mapping, nested ones dotted."""
    lines: dict[str, int] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = f"{prefix}{key_node.value}"
                lines[key] = key_node.start_mark.line + 1
                walk(value_node, key + ".")

    walk(yaml.compose(text), "")
    return lines


def describe(err: ValidationError, path: Path, origins: dict[str, str], root: type[BaseModel]) -> str:
    """One message for a config that does not validate: each bad key with where it was set (the override, or the
    file and line) and, for an unknown key, the closest valid one."""
    problems: dict[str, list[str]] = {}   # per key: a union type gives one error per member, said as one
    for e in err.errors():
        parts = _field_path(e["loc"], root)
        key = ".".join(parts)
        if e["type"] == "value_error":   # a rule across keys (a model validator): its message names them
            message = e["msg"].removeprefix("Value error, ")
            named = re.search(r"\b((?:data|train|tokenize|evaluate|promote|registry|model)\.[a-z_]+)", message)
            within = f"{key}." if key else ""
            where = named.group(1) if named else key
            where = where if where.startswith(within) or not key else key
            problems.setdefault(f"\0{where}", []).append(message)
        elif e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(parts[-1], _section_fields(parts[:-1], root), n=1, cutoff=0.6)
            hint = f" (did you mean {'.'.join([*parts[:-1], close[0]])!r}?)" if close else ""
            readers = [name for name, model in _other_task_types(root) if _has_key(model, parts)]
            if readers:
                task = root.model_fields["task"].default
                problems.setdefault(key, []).append(f"is not read by {task} (it is a {' and '.join(readers)} "
                                                    f"setting){hint}")
            else:
                problems.setdefault(key, []).append(f"does not exist{hint}")
        else:
            problems.setdefault(key, []).append(f"{e['msg'][0].lower()}{e['msg'][1:]} (got {e.get('input')!r})")
    return "; ".join(f"{_origin(key[1:], path, origins)}: {' and '.join(msgs)}" if key.startswith("\0")
                     else f"{_origin(key, path, origins)}: config key {key!r} {' or '.join(msgs)}"
                     if msgs[0].startswith(("does not", "is not read"))
                     else f"{_origin(key, path, origins)}: config key {key!r}: {' or '.join(msgs)}"
                     for key, msgs in problems.items())


def _origin(key: str, path: Path, origins: dict[str, str]) -> str:
    """Where a key was set: its override or file line; else the first key set under it; else its section's."""
    if key in origins:
        return origins[key]
    below = [where for k, where in origins.items() if k.startswith(key + ".")]
    if below:
        return below[0]
    parts = key.split(".")
    return next((origins[".".join(parts[:n])] for n in range(len(parts) - 1, 0, -1)
                 if ".".join(parts[:n]) in origins), str(path))


def _section_fields(section: list[str], root: type[BaseModel]) -> list[str]:
    """The valid keys of a config section, e.g. ["train"] -> ["epochs", "lr", ...]."""
    model: type[BaseModel] = root
    for part in section:
        field = model.model_fields.get(part)
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def _field_path(loc: tuple, root: type[BaseModel]) -> list[str]:
    """The config key of an error location, without pydantic's union-member tags ('constrained-float', ...)."""
    parts: list[str] = []
    model: type[BaseModel] | None = root
    for p in loc:
        if model is None or not isinstance(p, str):
            break
        parts.append(p)          # a field, or the unknown key of an extra_forbidden error
        field = model.model_fields.get(p)
        ann = field.annotation if field else None
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return parts


def _other_task_types(root: type[BaseModel]) -> list[tuple[str, type[BaseModel]]]:
    """(name, config class) of every task type but `root`'s: only asked when a key is wrong."""
    from nerflow import task_types

    return [(name, model) for name, model in task_types.config_types().items() if model is not root]


def _has_key(model: type[BaseModel], parts: list[str]) -> bool:
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if i == len(parts) - 1:
            return True
        ann = field.annotation
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return False
        model = ann
    return False


def _default(model: type[BaseModel], parts: list[str]):
    for part in parts[:-1]:
        model = model.model_fields[part].annotation
    field = model.model_fields[parts[-1]]
    return field.get_default(call_default_factory=True)


def drop_unread(raw: dict, root: type[BaseModel], path: Path, origins: dict[str, str], error: type[Exception]) -> dict:
    """A resolved config logged before each task type had its own config held every task's keys. Drop the keys
    `root`'s task does not read when they hold the default of the task type that reads them; a key holding anything
    else is an error naming it (this run's outcome may have depended on it). Keys no task type knows are left for
    validation to report."""
    import json

    others = _other_task_types(root)
    problems: list[str] = []

    def walk(node: dict, prefix: list[str]) -> dict:
        kept = {}
        for key, value in node.items():
            parts = [*prefix, key]
            if _has_key(root, parts):
                sub = _section_of(root, parts)
                kept[key] = walk(value, parts) if sub is not None and isinstance(value, dict) else value
                continue
            readers = [(name, model) for name, model in others if _has_key(model, parts)]
            if not readers:
                kept[key] = value
                continue
            default = _default(readers[0][1], parts)
            as_json = json.loads(json.dumps(default, default=str))
            if value != as_json:
                dotted = ".".join(parts)
                problems.append(f"{_origin(dotted, path, origins)}: config key {dotted!r} = {value!r} is a "
                                f"{readers[0][0]} setting that {root.model_fields['task'].default} does not read, "
                                f"and not its default ({as_json!r}): remove it to rerun with this config")
        return kept

    cleaned = walk(raw, [])
    if problems:
        raise error("; ".join(problems))
    return cleaned


def _section_of(model: type[BaseModel], parts: list[str]) -> type[BaseModel] | None:
    for part in parts:
        field = model.model_fields.get(part)
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model
