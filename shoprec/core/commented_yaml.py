"""A config mapping → YAML text with a comment on the keys that have one.

``shoprec init`` writes each guess beside its evidence. The top two levels
are block mappings; deeper mappings of plain values, lists of plain values
and each entry of a list of mappings (the features) are one flow line, so a
feature reads as it does in the hand-written configs. ``yaml.safe_load`` of
the text gives the mapping back.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Sequence

import yaml


def flow(value: Any) -> str:
    """One value as a single YAML flow line."""
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"),
                          sort_keys=False, allow_unicode=True).strip()
    return text[:-3].strip() if text.endswith("\n...") or text.endswith("...") else text


def _plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_plain(v) and not isinstance(v, (dict, list)) for v in value.values())
    if isinstance(value, list):
        return all(not isinstance(v, (dict, list)) for v in value)
    return True


def _comment(lines: List[str], pad: str, note: str) -> None:
    lines.append(f"{pad}# {note}")


def _emit(mapping: Mapping[str, Any], path: str, depth: int, notes: Mapping[str, str],
          lines: List[str]) -> None:
    pad = "  " * depth
    for key, value in mapping.items():
        dotted = f"{path}.{key}" if path else str(key)
        note = notes.get(dotted)
        if isinstance(value, dict) and value and (depth < 1 or not _plain(value)):
            if note:
                _comment(lines, pad, note)
            lines.append(f"{pad}{flow(key)}:")
            _emit(value, dotted, depth + 1, notes, lines)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            if note:
                _comment(lines, pad, note)
            lines.append(f"{pad}{flow(key)}:")
            for entry in value:
                entry_note = notes.get(f"{dotted}.{entry.get('name')}")
                if entry_note:
                    _comment(lines, pad + "  ", entry_note)
                lines.append(f"{pad}  - {flow(entry)}")
        else:
            line = f"{pad}{flow(key)}: {flow(value)}"
            lines.append(f"{line}  # {note}" if note else line)


def render(config: Mapping[str, Any], notes: Mapping[str, str], header: Sequence[str]) -> str:
    """The YAML text of ``config``.

    Args:
        config: Plain data: mappings, lists, strings, numbers, booleans, None.
        notes: {dotted key: one-line comment}; a list entry with a ``name``
            is ``<list key>.<name>``. A note on a section goes above it, on a
            value beside it.
        header: Comment lines at the top.
    """
    lines = [f"# {line}" if line else "#" for line in header]
    for key, value in config.items():
        if isinstance(value, dict):
            lines.append("")  # a blank line before each section
        _emit({key: value}, "", 0, notes, lines)
    return "\n".join(lines) + "\n"
