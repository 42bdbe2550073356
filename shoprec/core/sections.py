"""Building a config's frozen sections from the YAML mappings that describe them.

One builder serves the run config, the model config a SavedModel carries and
the data set description: unknown keys are rejected with the known ones
listed, YAML lists become tuples, nested sections are built recursively, and
a field whose default is a tuple of sections (``model.tasks``), or whose
metadata names its section class (``{"sections": cls}``, for an empty
default), takes a non-empty list of them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional

# Re-exported: config modules and their tests import it from here.
from shoprec.core.errors import ConfigError  # noqa: F401


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


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
        ConfigError: not a mapping, an unknown key, a list where none belongs,
            or a field the dataclass rejects.
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
        kwargs[name] = value
    kwargs.update(given)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from err
