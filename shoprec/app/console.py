"""What the console shows: library noise off unless ``--verbose``; one line per stage.

:func:`configure` is the one place the console is set up, called by the CLI
before any stage imports TensorFlow or Beam. By default it hides

- TensorFlow's (and XLA's) C++ log lines (``I0000 00:00:... cudart_stub.cc:31]
  Could not find cuda drivers``, ``cuInit`` errors, oneDNN notices).
  ``TF_CPP_MIN_LOG_LEVEL`` no longer silences the ones written while
  TensorFlow loads (absl logs everything to stderr before
  ``absl::InitializeLog``; tensorflow/tensorflow#100442), so the process's
  stderr goes through a filter that drops lines in absl's or TensorFlow's log
  format and passes everything else (Python tracebacks, warnings, fatal
  ``F`` lines) through unchanged;
- warnings of the tensorflow, absl and apache_beam Python loggers;
- Beam's "Resource module is not available" (RunInference logs it on every
  batch when torch is absent, though ``resource`` is there: it only means no
  memory figure in Beam's metrics).

With ``--verbose`` nothing is hidden. :func:`stage_line` is the one-line
summary each stage prints when it ends: its counts and rows per second.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
from typing import Any, Mapping, Optional

# absl's format (``I0000 00:00:1796190724.547330    7221 port.cc:153] ...``), TensorFlow's
# older one (``2025-09-17 14:44:05.157831: I external/...cc:32] ...``), absl's
# notice before its first line, and cpu_feature_guard's second line. Fatal
# (``F``) lines are kept: they explain a crash.
NATIVE_LOG = re.compile(
    rb"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]\s]+:\d+\] "
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] [^\]\s]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|To enable the following instructions: .*rebuild TensorFlow with the appropriate "
    rb"compiler flags)")
NOISY_LOGGERS = ("tensorflow", "absl", "apache_beam")
BEAM_RESOURCE_WARNING = "Resource module is not available"


class _DropBeamResourceWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(BEAM_RESOURCE_WARNING)


class NativeLogFilter:
    """Routes file descriptor 2 through a thread that drops :data:`NATIVE_LOG` lines.

    Args:
        fd: The descriptor to filter (2: the process's stderr, which C++
            libraries write to directly).
    """

    def __init__(self, fd: int = 2):
        self._fd = fd
        self._target = os.dup(fd)
        read, write = os.pipe()
        os.dup2(write, fd)
        os.close(write)
        self._read = read
        self.dropped = 0
        self._thread = threading.Thread(target=self._pump, name="shoprec-stderr", daemon=True)
        self._thread.start()
        # Python prints an uncaught exception's traceback before atexit runs,
        # so stop() still copies it out.
        atexit.register(self.stop)

    def _pump(self) -> None:
        pending = b""
        while True:
            chunk = os.read(self._read, 65536)
            if not chunk:
                break
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            kept = [line for line in lines if not NATIVE_LOG.match(line)]
            self.dropped += len(lines) - len(kept)
            if kept:
                os.write(self._target, b"\n".join(kept) + b"\n")
        if pending and not NATIVE_LOG.match(pending):
            os.write(self._target, pending)
        os.close(self._read)

    def stop(self) -> None:
        """Puts the descriptor back and copies out what is still in the pipe."""
        if self._target is None:
            return
        sys.stderr.flush()
        # Replacing the pipe's last write end ends the pump at the pipe's end.
        os.dup2(self._target, self._fd)
        self._thread.join(timeout=5)
        os.close(self._target)
        self._target = None
        atexit.unregister(self.stop)


_filter: Optional[NativeLogFilter] = None


def configure(verbose: bool, native_filter: bool = True) -> None:
    """Sets up the console for this process; call it before TensorFlow or Beam load.

    Args:
        verbose: Show everything the libraries log (the native filter is not
            installed and no logger is quietened).
        native_filter: Install :class:`NativeLogFilter` on stderr; only a
            process that is the ``shoprec`` command does (the CLI), not a
            program or test calling it, whose stderr is its own.
    """
    global _filter
    if verbose:
        return
    # Honoured by the native logging that starts after TensorFlow has loaded.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    root = logging.getLogger()
    if not any(isinstance(f, _DropBeamResourceWarning) for f in root.filters):
        root.addFilter(_DropBeamResourceWarning())
    if native_filter and _filter is None:
        sys.stderr.flush()
        _filter = NativeLogFilter(2)


def _rate(count: float, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds > 0 else "n/a"


def stage_line(stage: str, report: Mapping[str, Any], seconds: float) -> str:
    """One line: what the stage read and wrote, and how fast (from its report)."""
    counts = report.get("counts", {}) if isinstance(report, Mapping) else {}
    dead = sum(v for k, v in counts.items() if k.startswith("dead_letter/"))
    if stage == "generate":
        body = (f"{report.get('users')} users, {report.get('items')} items, "
                f"{report.get('impressions')} impressions")
    elif stage == "embed":
        items = counts.get("rows_read/items", 0)
        train = (report.get("encoder") or {}).get("train_seconds")
        trained = f"encoder trained in {train:.1f}s, " if train is not None else ""
        body = (f"{items} items read, {counts.get('embed/embedded', 0)} photos embedded, "
                f"{dead} dead letters; {trained}embed job "
                f"{_rate(items, report.get('job_seconds', seconds))} rows")
    elif stage in ("ingest", "validate"):
        read = sum(v for k, v in counts.items() if k.startswith("rows_read/"))
        splits = ", ".join(f"{k.split('/', 1)[1]} {v}" for k, v in sorted(counts.items())
                           if k.startswith("examples/"))
        body = f"{read} rows read, {dead} dead letters; examples {splits or 'none'}"
        body += f"; {_rate(read, seconds)} rows"
    elif stage == "featurize":
        rows = report.get("rows", {})
        total = sum(rows.values())
        body = ", ".join(f"{k} {v}" for k, v in rows.items()) + f" rows; {_rate(total, seconds)}"
    elif stage == "train":
        t = report.get("training", {})
        aucs = ", ".join(f"{name} {m['auc']:.4f}" for name, m in report.get("tasks", {}).items()
                         if m.get("auc") is not None)
        body = (f"{t.get('steps')} steps over {len(t.get('epochs_run') or [])} epoch(s), "
                f"{t.get('examples_per_second', 0):,.0f} examples/s; eval AUC {aucs}")
    elif stage == "push":
        aucs = ", ".join(f"{name} {t['auc']:.4f}" for name, t in
                         (report.get("verdict") or {}).get("tasks", {}).items()
                         if t.get("auc") is not None)
        body = (f"{report.get('status')}, version {report.get('version') or 'none'}; "
                f"gate AUC {aucs or 'n/a'}")
    elif stage == "score":
        rows = counts.get("score/rows", 0)
        body = f"{rows} pairs scored, {dead} dead letters; {_rate(rows, seconds)} rows"
    elif stage == "recommend":
        users = counts.get("recommend/users", 0)
        body = (f"{users} users, top {report.get('settings', {}).get('k', '?')} each; "
                f"{_rate(users, seconds)} users")
    elif stage == "report":
        body = f"{report.get('sections', 0)} sections, {report.get('images', 0)} plots"
    else:
        body = ", ".join(f"{k} {v}" for k, v in counts.items())
    return f"[{stage}] {body} in {seconds:.1f}s"
