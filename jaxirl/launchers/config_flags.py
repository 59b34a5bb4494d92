"""Every setting of a launcher as a dotted flag: ``--config.irl.learning_rate=3e-5``.

A launcher's settings are one frozen, validated dataclass (``StudyConfig``,
``RLHFRunConfig``, ...). Each of its fields, at any depth, is a flag
``--config.<path>=<value>`` (ml_collections' ``config_flags``); ``--config_file`` starts
from a saved config (the ``run_config.json`` every launcher writes into its work
folder) instead of the preset; the launcher's short flags (``--seeds``, ``--lr``) are
aliases of fields. The config is resolved as preset (or ``--config_file``), then short
flags, then ``--config.*`` overrides, and rebuilt once, so that every dataclass's
``__post_init__`` validates the result; a short flag and an override of the same field
together are an error.

Why not ``config_flags.DEFINE_config_dataclass`` on the config itself: it assigns
overrides with ``setattr`` (frozen dataclasses refuse), reads field types from
``dataclasses.fields`` (strings under ``from __future__ import annotations``), cannot
set an ``int | None`` to None or parse a ``float | str``, and reads the command line
from ``sys.argv`` when the flag is defined. So the flag is defined, for each command
line just before absl parses it (:func:`prepare`), on a mutable mirror of the config
whose fields carry resolved types and parsers (enumerations from
:mod:`jaxirl.launchers.choices`); :func:`resolve` applies the values ml_collections
parsed to the frozen config.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from absl import flags
from ml_collections import config_flags

from jaxirl import runs
from jaxirl.errors import ConfigError, JaxIRLError
from jaxirl.launchers.choices import ENUMS, OptionalParser

FLAGS = flags.FLAGS
RUN_CONFIG_FILE = runs.RUN_CONFIG_FILE
_FLAG = "config"
# Keys a saved config may hold beside its fields (study_config.json records its preset).
_PROVENANCE_KEYS = ("preset",)
_SCALAR_PARSERS = {int: flags.IntegerParser(), float: flags.FloatParser(),
                   bool: flags.BooleanParser(), str: flags.ArgumentParser()}
_OVERRIDE = re.compile(rf"^--?(?:no)?{_FLAG}\.([^=]+)")


class OverrideError(ConfigError):
    """A bad setting whose message already names the flag the user typed."""

    names_flag = True


@dataclasses.dataclass(frozen=True)
class Alias:
    """A short flag that sets config fields, e.g. ``Alias("seeds", ("irl.num_seeds",))``.

    ``convert`` maps the flag's value to the fields' value (default: as is).
    """

    flag: str
    paths: tuple[str, ...]
    convert: Callable[[Any], Any] | None = None


@dataclasses.dataclass(frozen=True)
class ConfigSpec:
    """A launcher's config: its dataclass, an instance (for field types), short flags.

    ``templates`` maps the path of an ``X | None`` field to ``fn(parent) -> X``: what
    an override of one of its fields starts from while it is None (default: ``X()``).
    """

    cls: type
    example: Any
    aliases: tuple[Alias, ...] = ()
    templates: Mapping[str, Callable[[Any], Any]] = dataclasses.field(default_factory=dict)


_SPEC: list[ConfigSpec] = []
_DEPRECATED: dict[str, str] = {}


def define(spec: ConfigSpec) -> None:
    """Defines ``--config_file`` and ``--print_config`` for the launcher whose config is ``spec``."""
    _SPEC[:] = [spec]
    flags.DEFINE_string("config_file", None, f"A saved config (the {RUN_CONFIG_FILE} of a run) "
                        "to start from instead of the preset; short flags and --config.<field> "
                        "overrides apply on top.")
    flags.DEFINE_bool("print_config", False, "Print the resolved config as JSON and exit.")


def define_deprecated(old: str, new: str) -> None:
    """``--old`` still sets ``--new``, with a one-line deprecation warning."""
    flags.DEFINE_alias(old, new)
    _DEPRECATED[old] = new


# ------------------------------------------------------------------ types and the mirror


def _optional_inner(hint) -> Any:
    """X for ``X | None``, else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0]
    return None


def _dataclass_in(hint) -> type | None:
    """D for a field of type D or ``D | None`` (D a dataclass), else None."""
    hint = _optional_inner(hint) or hint
    return hint if dataclasses.is_dataclass(hint) and isinstance(hint, type) else None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return {f.name: typing.get_type_hints(cls)[f.name] for f in dataclasses.fields(cls)}


@functools.cache
def _marker(name: str, parser: flags.ArgumentParser) -> type:
    """A class standing for a field type that ``parser`` parses (ml_collections looks parsers
    up by type)."""
    marker = type(name, (), {})
    config_flags.register_flag_parser_for_type(marker, parser)
    return marker


def _mirror_type(key: str, hint) -> Any:
    if key in ENUMS:
        return _marker(key, ENUMS[key])
    group = _dataclass_in(hint)
    if group is not None:
        mirror = _mirror_class(group)
        return mirror | None if _optional_inner(hint) else mirror
    inner = _optional_inner(hint)
    if inner in _SCALAR_PARSERS:
        return _marker(f"{inner.__name__} | None", OptionalParser(_SCALAR_PARSERS[inner]))
    if hint in _SCALAR_PARSERS:
        return hint
    if typing.get_origin(hint) is tuple and not any(map(dataclasses.is_dataclass,
                                                        typing.get_args(hint))):
        return tuple
    return object  # not settable from the command line (see _check_path)


@functools.cache
def _mirror_class(cls: type) -> type:
    return dataclasses.make_dataclass(f"{cls.__name__}Flags", [
        (name, _mirror_type(f"{cls.__name__}.{name}", hint), dataclasses.field(default=None))
        for name, hint in _hints(cls).items()])


def _to_mirror(value: Any, cls: type) -> Any:
    if value is None:
        try:
            value = cls()
        except (TypeError, JaxIRLError):
            return None
    kwargs = {}
    for name, hint in _hints(cls).items():
        group, sub = _dataclass_in(hint), getattr(value, name)
        kwargs[name] = _to_mirror(sub, group) if group is not None else sub
    return _mirror_class(cls)(**kwargs)


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _check_path(cls: type, path: str) -> None:
    """ConfigError unless ``path`` names a field settable from the command line."""
    owner, where = cls, "the config"
    parts = path.split(".")
    for i, part in enumerate(parts):
        hints = _hints(owner)
        if part not in hints:
            raise ConfigError(f"--{_FLAG}.{path}: {where} ({owner.__name__}) has no setting "
                              f"'{part}'; its settings: {', '.join(hints)}")
        hint, where = hints[part], ".".join(parts[:i + 1])
        group = _dataclass_in(hint)
        if i < len(parts) - 1 and group is None:
            raise ConfigError(f"--{_FLAG}.{path}: '{where}' is a {_type_name(hint)}, not a "
                              "group of settings")
        if i == len(parts) - 1 and group is None and \
                _mirror_type(f"{owner.__name__}.{part}", hint) is object:
            raise ConfigError(f"--{_FLAG}.{path}: a {_type_name(hint)} cannot be set on the "
                              "command line; set it in a --config_file")
        owner = group


# ------------------------------------------------------------------ parsing


def override_paths(argv: list[str]) -> list[str]:
    """The fields ``--config.<field>`` arguments of ``argv`` set (absl's ``--`` ends flags)."""
    out = []
    for arg in argv[1:]:
        if arg == "--":
            break
        match = _OVERRIDE.match(arg)
        if match:
            out.append(match[1])
    return out


def _refuse_whole_config(value):
    raise ValueError(f"set single fields with --{_FLAG}.<field>=<value>, or load a saved "
                     "config with --config_file=PATH")


def prepare(argv: list[str]) -> None:
    """(Re)defines ``--config`` and its ``--config.<field>`` flags for this command line.

    Called by :func:`jaxirl.cli.parse_flags` before absl parses ``argv``, so that each
    command line (one per process, or many in one test process) gets its own.
    """
    if not _SPEC:
        return
    for name in [n for n in FLAGS if n == _FLAG or n.startswith(_FLAG + ".")]:
        delattr(FLAGS, name)
    for path in override_paths(argv):
        _check_path(_SPEC[0].cls, path)
    try:
        config_flags.DEFINE_config_dataclass(
            _FLAG, _to_mirror(_SPEC[0].example, _SPEC[0].cls),
            "Any setting, by its dotted field name: --config.<field>=<value> (see run_config.json).",
            sys_argv=argv, parse_fn=_refuse_whole_config)
    except (flags.Error, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"--{_FLAG}: {e}") from None


# ------------------------------------------------------------------ applying values


class _BuildDefault:
    """ml_collections' ``--config.<group>=build``: the group's defaults."""


_BUILD = _BuildDefault()


class _Invalid(Exception):
    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _coerce(value: Any, hint, path: str) -> Any:
    """``value`` (parsed by absl, or read from JSON) as a value of type ``hint``."""
    inner = _optional_inner(hint)
    if inner is not None:
        return None if value is None else _coerce(value, inner, path)
    group = _dataclass_in(hint)
    if group is not None:
        if isinstance(value, group):
            return value
        if not isinstance(value, Mapping):
            raise _Invalid(path, f"expected a {group.__name__} (a JSON object), got {value!r}")
        return _rebuild(None, group, dict(value), path, {})
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Invalid(path, f"expected a tuple, got {value!r}")
        kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(kinds) != len(value):
            raise _Invalid(path, f"expected {len(kinds)} values, got {len(value)}")
        return tuple(_coerce(v, k, f"{path}[{i}]") for i, (v, k) in enumerate(zip(value, kinds, strict=True)))
    if origin in (typing.Union, types.UnionType):  # float | str
        for option in args:
            try:
                return _coerce(value, option, path)
            except _Invalid:
                pass
        raise _Invalid(path, f"expected a {_type_name(hint)}, got {value!r}")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is float and number:
        return float(value)
    if hint is int and number and float(value).is_integer():
        return int(value)
    if hint in (bool, str) and isinstance(value, hint):
        return value
    if hint in _SCALAR_PARSERS:
        raise _Invalid(path, f"expected a {hint.__name__}, got {value!r}")
    return value


def _replace(obj: Any, changes: dict, path: str) -> Any:
    if not changes:
        return obj
    try:
        return dataclasses.replace(obj, **changes)
    except (JaxIRLError, ValueError, TypeError) as e:
        raise _Invalid(path, str(e)) from None


def _rebuild(obj: Any, cls: type, node: dict, prefix: str,
             templates: Mapping[str, Callable[[Any], Any]]) -> Any:
    """``obj`` (a ``cls``; None: from defaults) with the settings of ``node`` (field ->
    value, or -> a nested node), each dataclass rebuilt (and so validated) once."""
    hints = _hints(cls)
    for name in node:
        if name not in hints:
            raise _Invalid(_join(prefix, name), f"{cls.__name__} has no setting '{name}'")
    groups = {n: v for n, v in node.items() if isinstance(v, dict) or v is _BUILD}
    leaves = {n: _coerce(v, hints[n], _join(prefix, n)) for n, v in node.items()
              if n not in groups}
    if obj is None:
        nested = {n: _group(None, n, sub, hints[n], prefix, templates) for n, sub in groups.items()}
        try:
            return cls(**leaves, **nested)
        except (JaxIRLError, ValueError, TypeError) as e:
            raise _Invalid(prefix, str(e)) from None
    obj = _replace(obj, leaves, prefix)
    return _replace(obj, {n: _group(obj, n, sub, hints[n], prefix, templates)
                          for n, sub in groups.items()}, prefix)


_KEEP = object()


def _group(parent: Any, name: str, sub: Any, hint, prefix: str,
           templates: Mapping[str, Callable[[Any], Any]]) -> Any:
    """The new value of the dataclass field ``name`` of ``parent`` (None: being built)."""
    path, group = _join(prefix, name), _dataclass_in(hint)
    if group is None:
        raise _Invalid(path, f"'{path}' is a {_type_name(hint)}, not a group of settings")
    children = {k: v for k, v in sub.items() if k != ""} if isinstance(sub, dict) else {}
    start = sub.get("", _KEEP) if isinstance(sub, dict) else sub
    if start is None and not children:
        return None
    current = getattr(parent, name) if start is _KEEP and parent is not None else None
    if current is None and parent is not None and path in templates:
        current = templates[path](parent)
    return _rebuild(current, group, children, path, templates)


def _put(tree: dict, path: str, value: Any) -> None:
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


def _sources_of(error: _Invalid, sources: dict[str, str]) -> ConfigError:
    """The error, naming the flags that set the settings it is about."""
    under = {p: s for p, s in sources.items()
             if not error.path or p == error.path or p.startswith(error.path + ".")}
    under = under or {p: s for p, s in sources.items() if error.path.startswith(p + ".")}
    named = {p: s for p, s in under.items() if p.rsplit(".", 1)[-1] in str(error)} or under
    if not any(s.startswith(f"--{_FLAG}.") for s in named.values()):
        # Short flags only: the launcher turns the library's names into them (cli.translate).
        return ConfigError(str(error))
    return OverrideError(f"{', '.join(dict.fromkeys(named.values()))}: {error}")


def _value_text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def load_file(path: str | pathlib.Path, base: Any, spec: ConfigSpec | None = None) -> Any:
    """``base`` with every setting of the saved config at ``path`` (a run_config.json)."""
    spec = spec or _SPEC[0]
    try:
        blob = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"--config_file '{path}': cannot read it ({e.strerror or e})") from None
    except ValueError as e:
        raise ConfigError(f"--config_file '{path}' is not a JSON config: {e}") from None
    if not isinstance(blob, dict):
        raise ConfigError(f"--config_file '{path}' holds a {type(blob).__name__}, not a config")
    for key in _PROVENANCE_KEYS:
        blob.pop(key, None)
    try:
        return _rebuild(base, spec.cls, blob, "", spec.templates)
    except _Invalid as e:
        raise ConfigError(f"--config_file '{path}': {e.path or 'config'}: {e}") from None


def _check_deprecated() -> None:
    for old, new in _DEPRECATED.items():
        if old in FLAGS and FLAGS[old].present:
            if FLAGS[new].present > FLAGS[old].present:
                raise ConfigError(f"--{old} and --{new} are one flag (--{old} is its deprecated "
                                  f"name); pass --{new} only")
            print(f"warning: --{old} is deprecated; use --{new}", file=sys.stderr)


def resolve(base: Any) -> Any:
    """The launcher's config: ``base`` (its preset) or ``--config_file``, then the short
    flags given, then the ``--config.*`` overrides, validated.

    Raises:
      ConfigError: a bad value, a short flag and an override of the same setting, or a
        bad config file; the message names the flags (or the file).
    """
    spec = _SPEC[0]
    _check_deprecated()
    if FLAGS.config_file:
        if "preset" in FLAGS and FLAGS["preset"].present:
            raise ConfigError("pass --preset or --config_file, not both (a saved config holds "
                              "every setting)")
        base = load_file(FLAGS.config_file, base, spec)
    tree: dict = {}
    sources: dict[str, str] = {}
    for alias in spec.aliases:
        if FLAGS[alias.flag].present:
            value = FLAGS[alias.flag].value
            value = alias.convert(value) if alias.convert is not None else value
            for path in alias.paths:
                _put(tree, path, value)
                sources[path] = f"--{alias.flag}"
    overrides = FLAGS[_FLAG].override_values if _FLAG in FLAGS else {}
    for path, value in overrides.items():
        for other, source in sources.items():
            if other == path or other.startswith(path + ".") or path.startswith(other + "."):
                raise ConfigError(f"{source} and --{_FLAG}.{path} both set '{other}'; pass one "
                                  "of them")
        _put(tree, path, _BUILD if dataclasses.is_dataclass(value) else value)
        sources[path] = f"--{_FLAG}.{path}={_value_text(value)}"
    try:
        return _rebuild(base, spec.cls, tree, "", spec.templates)
    except _Invalid as e:
        raise _sources_of(e, sources) from None


def given(path: str) -> bool:
    """Whether the command line (a short flag or an override) or a --config_file set ``path``."""
    if FLAGS.config_file:
        return True
    spec = _SPEC[0]
    overrides = FLAGS[_FLAG].override_values if _FLAG in FLAGS else {}
    return path in overrides or any(FLAGS[a.flag].present and path in a.paths
                                    for a in spec.aliases)


def to_json(config: Any) -> str:
    return json.dumps(dataclasses.asdict(config), indent=2, default=str) + "\n"


def printed(config: Any) -> bool:
    """With ``--print_config``, prints ``config`` as JSON and returns True (run nothing)."""
    if not FLAGS.print_config:
        return False
    print(to_json(config), end="")
    return True


__all__ = ["Alias", "ConfigSpec", "OverrideError", "RUN_CONFIG_FILE", "define",
           "define_deprecated", "given", "load_file", "override_paths", "prepare", "printed",
           "resolve", "to_json"]
