"""The data report of an ingest (or ``shoprec validate``) run, and the quality gate.

Everything in the report comes from the job's Beam counters, so it costs no
extra pass over the data and reads the same on every runner:

* per input: rows read, valid, dead letters per reason, bad fraction;
* the clean log: users, items, events per funnel type, collapsed units,
  robotic users;
* per split: examples, sampled negatives, positives and rate per label, and
  the distribution of history lengths.

:func:`check_quality` fails the run when an input's bad fraction is over the
data set's threshold, naming the input and its reasons.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

from shoprec.core.errors import InputEmptyError, QualityGateError

INPUTS = ("events", "items", "users", "embeddings")


class DataQualityError(QualityGateError):
    """An input's dead-letter fraction is over its threshold; the message says which.

    Attributes:
        report: The data report of the failed run (or None).
    """


def _prefixed(counts: Mapping[str, int], prefix: str) -> Dict[str, int]:
    return {k[len(prefix):]: v for k, v in counts.items() if k.startswith(prefix)}


def _quantile(histogram: Dict[int, int], q: float) -> int:
    total = sum(histogram.values())
    seen = 0
    for length in sorted(histogram):
        seen += histogram[length]
        if seen >= q * total:
            return length
    return 0


def history_summary(histogram: Dict[int, int]) -> Dict[str, Any]:
    total = sum(histogram.values())
    if not total:
        return {}
    mean = sum(k * v for k, v in histogram.items()) / total
    return {"mean": round(mean, 3), "p50": _quantile(histogram, 0.5),
            "p90": _quantile(histogram, 0.9), "max": max(histogram),
            "empty": histogram.get(0, 0),
            "histogram": {str(k): histogram[k] for k in sorted(histogram)}}


def inputs_section(counts: Mapping[str, int], names: Sequence[str] = INPUTS
                   ) -> Dict[str, Any]:
    """Per input that was read or dead-lettered: rows read, valid, dead letters, bad fraction."""
    inputs = {}
    for name in names:
        read = counts.get(f"rows_read/{name}", 0)
        dead = dict(sorted(_prefixed(counts, f"dead_letter/{name}/").items()))
        if not read and not dead:
            continue
        total = sum(dead.values())
        inputs[name] = {"rows_read": read, "rows_valid": counts.get(f"rows_valid/{name}", 0),
                        "dead_letters": dead,
                        "bad_fraction": round(total / read, 6) if read else None}
    return inputs


def build(counts: Mapping[str, int], splits: Sequence[str], labels: Sequence[str],
          dataset_name: str) -> Dict[str, Any]:
    """The structured report from a run's counters (see the module docstring)."""
    inputs = inputs_section(counts)
    events = {"users": counts.get("clean/users", 0), "items": counts.get("clean/items", 0),
              "by_type": _prefixed(counts, "clean/events/"),
              "units_collapsed": counts.get("units_collapsed/events", 0),
              "robot_users": counts.get("anomaly/robot_users", 0)}
    per_split = {}
    for split in splits:
        n = counts.get(f"examples/{split}", 0)
        positives = {label: counts.get(f"positives/{split}/{label}", 0) for label in labels}
        lengths = {int(k): v for k, v in _prefixed(counts, f"history_length/{split}/").items()}
        per_split[split] = {
            "examples": n, "sampled": counts.get(f"sampled/{split}", 0),
            "positives": positives,
            "label_rates": {k: round(v / n, 6) if n else None for k, v in positives.items()},
            "history_length": history_summary(lengths)}
    return {"dataset": dataset_name, "inputs": inputs, "events": events, "splits": per_split}


def problems(report: Mapping[str, Any], max_bad_fraction: float,
             by_reason: Mapping[str, float]) -> List[str]:
    """One message per input (or reason with its own limit) over its threshold."""
    out = []
    for name, stats in report["inputs"].items():
        read = stats["rows_read"]
        if not read:
            continue
        rest = {}
        for reason, n in stats["dead_letters"].items():
            if reason in by_reason:
                if n / read > by_reason[reason]:
                    out.append(f"input {name!r}: {n / read:.2%} of {read} rows are {reason} "
                               f"dead letters (max {by_reason[reason]:.2%} for {reason})")
            else:
                rest[reason] = n
        total = sum(rest.values())
        if total / read > max_bad_fraction:
            reasons = ", ".join(f"{r}={n}" for r, n in sorted(rest.items(), key=lambda kv: -kv[1]))
            out.append(f"input {name!r}: {total / read:.2%} of {read} rows are dead letters "
                       f"(max {max_bad_fraction:.2%}): {reasons}")
    return out


def too_few_rows(counts: Mapping[str, int], inputs: Mapping[str, str], splits: Sequence[str],
                 min_rows: int) -> List[str]:
    """One message per input, then per split, with fewer than ``min_rows`` rows.

    Args:
        counts: The run's counters (``rows_read/<input>``, ``examples/<split>``).
        inputs: {input name: the file or glob it was read from}.
        splits: Splits the run writes.
        min_rows: ``dataset.quality.min_rows``.
    """
    out = [f"input {name!r} has {counts.get(f'rows_read/{name}', 0)} data rows "
           f"(dataset.quality.min_rows is {min_rows}) in {path}"
           for name, path in inputs.items() if counts.get(f"rows_read/{name}", 0) < min_rows]
    out += [f"split {split!r} has {counts.get(f'examples/{split}', 0)} examples "
            f"(dataset.quality.min_rows is {min_rows}): check the ingest split dates against "
            f"the events' time range"
            for split in splits if counts.get(f"examples/{split}", 0) < min_rows]
    return out


def check_rows(empty: Sequence[str], report: Mapping[str, Any]) -> None:
    """Raises InputEmptyError when :func:`too_few_rows` found anything."""
    if empty:
        raise InputEmptyError("; ".join(empty), report)


def check_quality(report: Mapping[str, Any], max_bad_fraction: float,
                  by_reason: Mapping[str, float], stage: str = "ingest") -> None:
    """Raises DataQualityError naming every input and reason over its threshold."""
    found = problems(report, max_bad_fraction, by_reason)
    if found:
        raise DataQualityError(f"{stage} failed the data-quality threshold: " + "; ".join(found)
                               + f"; see {report.get('outputs', {}).get('report', 'its report')}",
                               report)


def render(report: Mapping[str, Any]) -> str:
    """The report as text, for the console."""
    lines = [f"data report: {report.get('dataset', '')} ({report.get('status', 'ok')})"]
    lines.append("inputs")
    for name, stats in report["inputs"].items():
        fraction = stats["bad_fraction"]
        lines.append(f"  {name:<10} read {stats['rows_read']:>9}  valid {stats['rows_valid']:>9}  "
                     f"bad {'-' if fraction is None else f'{fraction:.3%}'}")
        for reason, n in stats["dead_letters"].items():
            lines.append(f"             dead letter {reason:<24} {n:>9}")
    events = report["events"]
    lines.append(f"clean log: {events['users']} users, {events['items']} items, events "
                 + ", ".join(f"{k}={v}" for k, v in sorted(events["by_type"].items()))
                 + f"; units collapsed {events['units_collapsed']}, "
                   f"robot users {events['robot_users']}")
    lines.append("splits")
    for split, stats in report["splits"].items():
        rates = ", ".join(f"{k} {v:.4f}" if v is not None else f"{k} -"
                          for k, v in stats["label_rates"].items())
        lines.append(f"  {split:<6} examples {stats['examples']:>8}  sampled {stats['sampled']:>8}"
                     f"  label rates: {rates}")
        hist = stats["history_length"]
        if hist:
            lines.append(f"         history length mean {hist['mean']}, p50 {hist['p50']}, "
                         f"p90 {hist['p90']}, max {hist['max']}, empty {hist['empty']}")
    for problem in report.get("problems", []):
        lines.append(f"FAILED: {problem}")
    return "\n".join(lines)
