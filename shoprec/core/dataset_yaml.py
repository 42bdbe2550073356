"""A config's ``dataset:`` section → a checked :class:`DatasetConfig`.

Each part given replaces that part of the generated shop's description whole,
so ``dataset: {quality: ...}`` tunes the demo and a real data set gives every
part it has.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Tuple

from shoprec.core import generated_shop
from shoprec.core import registry as F
from shoprec.core.dataset import (AnomalySpec, CandidatesSpec, ColumnSpec, DatasetConfig,
                                  EventsSpec, HistorySpec, NegativesSpec, QualitySpec,
                                  TableSpec, check)
from shoprec.core.sections import ConfigError, build


def _columns(data: Any, where: str) -> Tuple[ColumnSpec, ...]:
    """``{column: {type: ..., ...}}`` (``{column: type}`` for short) → ColumnSpecs."""
    if data is None:
        return ()
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of column name to spec")
    out = []
    for name, spec in data.items():
        spec = {"type": spec} if isinstance(spec, str) else dict(spec or {})
        if "values" in spec:
            spec["values"] = [str(v) for v in spec["values"]]
        out.append(build(ColumnSpec, spec, f"{where}.{name}", name=str(name)))
    return tuple(out)


def _event_types(data: Any, where: str) -> Tuple[Tuple[str, str], ...]:
    if not isinstance(data or {}, dict):
        raise ConfigError(f"{where}: expected a mapping raw value -> funnel stage")
    return tuple((str(k), str(v)) for k, v in (data or {}).items())


def _features(data: Any, where: str) -> Tuple[F.Feature, ...]:
    features = []
    for i, spec in enumerate(data or []):
        try:
            features.append(F.feature_from_dict(spec))
        except (TypeError, ValueError, KeyError) as err:
            raise ConfigError(f"{where}[{i}]: {err}") from err
    return tuple(features)


def _by_reason(data: Any, where: str) -> Tuple[Tuple[str, float], ...]:
    if not isinstance(data or {}, dict):
        raise ConfigError(f"{where}: expected a mapping reason -> fraction")
    return tuple((str(k), float(v)) for k, v in (data or {}).items())


_PARTS = {
    "events": lambda v, where: build(EventsSpec, v, where, nested={
        "columns": _columns, "event_types": _event_types}),
    "items": lambda v, where: build(TableSpec, v, where, nested={"columns": _columns}),
    "users": lambda v, where: build(TableSpec, v, where, nested={"columns": _columns}),
    "features": _features,
    "history": lambda v, where: build(HistorySpec, v, where),
    "negatives": lambda v, where: build(NegativesSpec, v, where),
    "candidates": lambda v, where: build(CandidatesSpec, v, where),
    "anomaly": lambda v, where: build(AnomalySpec, v, where),
    "quality": lambda v, where: build(QualitySpec, v, where, nested={
        "max_bad_fraction_by_reason": _by_reason}),
}


def from_dict(data: Any, where: str = "dataset") -> DatasetConfig:
    """Parses a config's ``dataset:`` section and checks it.

    Raises:
        ConfigError: unknown keys or malformed values.
        ValueError: parts that do not fit together (:func:`shoprec.core.dataset.check`).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    fields = {f.name for f in dataclasses.fields(DatasetConfig)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    parts: Dict[str, Any] = {
        name: _PARTS[name](value, f"{where}.{name}") if name in _PARTS else value
        for name, value in data.items()}
    dataset = dataclasses.replace(generated_shop.dataset(generated_shop.REGISTRY), **parts)
    check(dataset, where)
    return dataset
