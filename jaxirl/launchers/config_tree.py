"""Nested settings applied to frozen dataclasses: the value side of the launchers' configs.

A *node* maps field names to values or to nested nodes (``{"irl": {"epochs": 3}}``);
:func:`rebuild` applies one to a frozen dataclass by rebuilding every dataclass it
touches once, so each ``__post_init__`` validates the final values (not the steps in
between), and :func:`coerce` checks a value against the field's type (from absl's
parsers or from JSON: lists become tuples, dicts dataclasses, ints floats). A failure
is an :class:`Invalid` naming the dotted path of the field or group at fault.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from jaxirl.errors import JaxIRLError

SCALARS = (int, float, bool, str)


def optional_inner(hint) -> Any:
    """X for ``X | None``, else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0]
    return None


def dataclass_in(hint) -> type | None:
    """D for a field of type D or ``D | None`` (D a dataclass), else None."""
    hint = optional_inner(hint) or hint
    return hint if dataclasses.is_dataclass(hint) and isinstance(hint, type) else None


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved type (annotations may be strings)."""
    return {f.name: typing.get_type_hints(cls)[f.name] for f in dataclasses.fields(cls)}


def type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


class _BuildDefault:
    """ml_collections' ``--config.<group>=build``: the group's defaults."""


BUILD = _BuildDefault()


class Invalid(Exception):
    """A value that does not fit its field, or a dataclass that refused its values."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def coerce(value: Any, hint, path: str) -> Any:
    """``value`` (parsed by absl, or read from JSON) as a value of type ``hint``."""
    inner = optional_inner(hint)
    if inner is not None:
        return None if value is None else coerce(value, inner, path)
    group = dataclass_in(hint)
    if group is not None:
        if isinstance(value, group):
            return value
        if not isinstance(value, Mapping):
            raise Invalid(path, f"expected a {group.__name__} (a JSON object), got {value!r}")
        return rebuild(None, group, dict(value), path, {})
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise Invalid(path, f"expected a tuple, got {value!r}")
        kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(kinds) != len(value):
            raise Invalid(path, f"expected {len(kinds)} values, got {len(value)}")
        return tuple(coerce(v, k, f"{path}[{i}]")
                     for i, (v, k) in enumerate(zip(value, kinds, strict=True)))
    if origin in (typing.Union, types.UnionType):  # float | str
        for option in args:
            try:
                return coerce(value, option, path)
            except Invalid:
                pass
        raise Invalid(path, f"expected a {type_name(hint)}, got {value!r}")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is float and number:
        return float(value)
    if hint is int and number and float(value).is_integer():
        return int(value)
    if hint in (bool, str) and isinstance(value, hint):
        return value
    if hint in SCALARS:
        article = "an" if hint is int else "a"
        raise Invalid(path, f"expected {article} {hint.__name__}, got {value!r}")
    return value


def _replace(obj: Any, changes: dict, path: str) -> Any:
    if not changes:
        return obj
    try:
        return dataclasses.replace(obj, **changes)
    except (JaxIRLError, ValueError, TypeError) as e:
        raise Invalid(path, str(e)) from None


def rebuild(obj: Any, cls: type, node: dict, prefix: str,
            templates: Mapping[str, Callable[[Any], Any]]) -> Any:
    """``obj`` (a ``cls``; None: from defaults) with the settings of ``node`` (field ->
    value, or -> a nested node), each dataclass rebuilt (and so validated) once."""
    hints = field_types(cls)
    for name in node:
        if name not in hints:
            raise Invalid(_join(prefix, name), f"{cls.__name__} has no setting '{name}'")
    groups = {n: v for n, v in node.items() if isinstance(v, dict) or v is BUILD}
    leaves = {n: coerce(v, hints[n], _join(prefix, n)) for n, v in node.items()
              if n not in groups}
    if obj is None:
        nested = {n: _group(None, n, sub, hints[n], prefix, templates) for n, sub in groups.items()}
        try:
            return cls(**leaves, **nested)
        except (JaxIRLError, ValueError, TypeError) as e:
            raise Invalid(prefix, str(e)) from None
    obj = _replace(obj, leaves, prefix)
    return _replace(obj, {n: _group(obj, n, sub, hints[n], prefix, templates)
                          for n, sub in groups.items()}, prefix)


_KEEP = object()


def _group(parent: Any, name: str, sub: Any, hint, prefix: str,
           templates: Mapping[str, Callable[[Any], Any]]) -> Any:
    """The new value of the dataclass field ``name`` of ``parent`` (None: being built)."""
    path, group = _join(prefix, name), dataclass_in(hint)
    if group is None:
        raise Invalid(path, f"'{path}' is a {type_name(hint)}, not a group of settings")
    children = {k: v for k, v in sub.items() if k != ""} if isinstance(sub, dict) else {}
    start = sub.get("", _KEEP) if isinstance(sub, dict) else sub
    if start is None and not children:
        return None
    current = getattr(parent, name) if start is _KEEP and parent is not None else None
    if current is None and parent is not None and path in templates:
        current = templates[path](parent)
    return rebuild(current, group, children, path, templates)


def put(tree: dict, path: str, value: Any) -> None:
    """Sets the dotted ``path`` of a node to ``value`` (a group's own value goes under "")."""
    *parents, last = path.split(".")
    node = tree
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {} if part not in node else {"": node[part]}
        node = node[part]
    if isinstance(node.get(last), dict):
        node[last][""] = value
    else:
        node[last] = value


__all__ = ["BUILD", "Invalid", "SCALARS", "coerce", "dataclass_in", "field_types",
           "optional_inner", "put", "rebuild", "type_name"]
