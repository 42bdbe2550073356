"""Building a config's frozen sections from the YAML mappings that describe them.

One builder serves the run config, the model config a SavedModel carries and
the data set description: unknown keys are rejected with the known ones
listed, a value of the wrong type (text for a number, a number for text, a
list of the wrong length, ...) with the type its field is annotated with,
YAML lists become tuples, nested sections are built recursively, and
a field whose default is a tuple of sections (``model.tasks``), or whose
metadata names its section class (``{"sections": cls}``, for an empty
default), takes a non-empty list of them.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Callable, Dict, Mapping, Optional

# Re-exported: config modules and their tests import it from here.
from shoprec.core.errors import ConfigError  # noqa: F401


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


# How a message names each plain type a field can have.
_TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


@functools.lru_cache(maxsize=None)
def _hints(cls) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_error(value: Any, hint: Any) -> Optional[str]:
    """Why ``value`` does not fit the annotation ``hint``; None when it does.

    Plain types, ``Optional`` and tuples of them are checked; anything else
    (sections, enums, ``object``) is left to its own parser.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        return _type_error(value, rest[0]) if len(rest) == 1 else None
    if origin is tuple:
        if not isinstance(value, tuple):
            return f"expected a list, got {type(value).__name__} {value!r}"
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            return f"expected a list of {len(items)}, got {len(value)} items"
        return next((why for why in map(_type_error, value, items) if why), None)
    if hint not in _TYPE_NAMES:
        return None
    fits = isinstance(value, (int, float) if hint is float else hint) and (
        hint is bool or not isinstance(value, bool))
    return None if fits else f"expected {_TYPE_NAMES[hint]}, got {type(value).__name__} {value!r}"


def build(cls, data: Any, where: str,
          nested: Optional[Mapping[str, Callable[[Any, str], Any]]] = None, **given):
    """Builds dataclass ``cls`` from a mapping.

    Args:
        cls: The section's dataclass.
        data: The YAML mapping (None: every field takes its default).
        where: Where the mapping is, for messages (``file.yaml.model``).
        nested: Field name → ``parse(value, where)`` for fields that need
            their own parsing (e.g. a data set's features).
        **given: Fields already converted by the caller; they win over ``data``.

    Raises:
        ConfigError: not a mapping, an unknown key, a value of the wrong
            type, a list where none belongs, or a field the dataclass rejects.
    """
    nested = nested or {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    # Internal fields are set by code, never by a file.
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs: Dict[str, Any] = {}
    for name, value in data.items():
        here = f"{where}.{name}"
        default = _default(fields[name])
        if name in nested:
            value = nested[name](value, here)
        elif dataclasses.is_dataclass(default):
            value = build(type(default), value, here)
        elif fields[name].metadata.get("sections") or (
                isinstance(default, tuple) and default and dataclasses.is_dataclass(default[0])):
            section = fields[name].metadata.get("sections") or type(default[0])
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{here}: expected a non-empty list")
            value = tuple(build(section, v, f"{here}[{i}]") for i, v in enumerate(value))
        elif isinstance(default, tuple) and isinstance(value, dict):
            # A mapping for a tuple field: its (key, value) pairs, in file order.
            value = tuple((str(k), v) for k, v in value.items())
        elif isinstance(default, tuple) or isinstance(value, list):
            if not isinstance(value, list):
                raise ConfigError(f"{here}: expected a list")
            value = tuple(value)
        if name not in nested:
            why = _type_error(value, _hints(cls)[name])
            if why:
                raise ConfigError(f"{here}: {why}")
        kwargs[name] = value
    kwargs.update(given)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from err
