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
import typing
from collections.abc import Callable, Mapping
from typing import Any

from absl import flags
from ml_collections import config_flags

from jaxirl import runs
from jaxirl.errors import ConfigError, JaxIRLError
from jaxirl.launchers import config_tree
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
    """Defines ``--config_file`` and ``--print_config``; ``spec`` is the launcher's config."""
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
    group = config_tree.dataclass_in(hint)
    if group is not None:
        mirror = _mirror_class(group)
        return mirror | None if config_tree.optional_inner(hint) else mirror
    inner = config_tree.optional_inner(hint)
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
        for name, hint in config_tree.field_types(cls).items()])


def _to_mirror(value: Any, cls: type) -> Any:
    if value is None:
        try:
            value = cls()
        except (TypeError, JaxIRLError):
            return None
    kwargs = {}
    for name, hint in config_tree.field_types(cls).items():
        group, sub = config_tree.dataclass_in(hint), getattr(value, name)
        kwargs[name] = _to_mirror(sub, group) if group is not None else sub
    return _mirror_class(cls)(**kwargs)


def _check_path(cls: type, path: str) -> None:
    """ConfigError unless ``path`` names a field settable from the command line."""
    owner, where = cls, "the config"
    parts = path.split(".")
    for i, part in enumerate(parts):
        hints = config_tree.field_types(owner)
        if part not in hints:
            raise ConfigError(f"--{_FLAG}.{path}: {where} ({owner.__name__}) has no setting "
                              f"'{part}'; its settings: {', '.join(hints)}")
        hint, where = hints[part], ".".join(parts[:i + 1])
        group = config_tree.dataclass_in(hint)
        if i < len(parts) - 1 and group is None:
            raise ConfigError(f"--{_FLAG}.{path}: '{where}' is a "
                              f"{config_tree.type_name(hint)}, not a group of settings")
        if i == len(parts) - 1 and group is None and \
                _mirror_type(f"{owner.__name__}.{part}", hint) is object:
            raise ConfigError(f"--{_FLAG}.{path}: a {config_tree.type_name(hint)} cannot be set "
                              "on the command line; set it in a --config_file")
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
            "Any setting by its dotted name: --config.<field>=<value> (see run_config.json). "
            "The default shown below lists the fields, some with their dataclass defaults "
            "rather than the preset's values; --print_config shows what will run.",
            sys_argv=argv, parse_fn=_refuse_whole_config)
    except (flags.Error, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"--{_FLAG}: {e}") from None


def _sources_of(error: config_tree.Invalid, sources: dict[str, str]) -> ConfigError:
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
        return config_tree.rebuild(base, spec.cls, blob, "", spec.templates)
    except config_tree.Invalid as e:
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
                config_tree.put(tree, path, value)
                sources[path] = f"--{alias.flag}"
    overrides = FLAGS[_FLAG].override_values if _FLAG in FLAGS else {}
    short = dict(sources)
    for path, value in overrides.items():
        for other, source in short.items():
            if other == path or other.startswith(path + ".") or path.startswith(other + "."):
                raise ConfigError(f"{source} and --{_FLAG}.{path} both set '{other}'; pass one "
                                  "of them")
        config_tree.put(tree, path,
                        config_tree.BUILD if dataclasses.is_dataclass(value) else value)
        sources[path] = f"--{_FLAG}.{path}={_value_text(value)}"
    try:
        return config_tree.rebuild(base, spec.cls, tree, "", spec.templates)
    except config_tree.Invalid as e:
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
