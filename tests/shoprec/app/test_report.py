"""shoprec report: the tiny run's page, rendered in a real headless Chromium.

The browser runs with ``--headless --no-sandbox --disable-gpu`` and no way
out: every host name resolves to nothing (``--host-resolver-rules``) and any
connection would go to a proxy on a closed loopback port, so nothing can
leave the machine. That alone would hide a request the page makes, so the
browser also writes its NetLog, and the test asserts that the page itself
(requests whose initiator is the file's opaque origin) asked for nothing;
Chromium's own background fetches (update checks and the like) have no page
initiator and are not the page's doing. A page with one image from a CDN is
the check's control: the same run must catch it.

Skipped only where Chromium is missing outside CI; in CI (``CI=true``) a
missing browser is a failure (``.ci/run`` installs Debian's ``chromium``).
"""

import html.parser
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from shoprec.app.report import page as report_page

BROWSERS = ("chromium", "chromium-browser")
# A closed port on the loopback interface: the proxy every connection would go to.
DEAD_PROXY = "http://127.0.0.1:9"


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail("CI: no chromium on PATH; .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium is not installed (Debian: apt-get install chromium)")


def _chromium(page: str, work, *flags) -> subprocess.CompletedProcess:
    """Runs headless Chromium on ``page`` with no network; its NetLog in ``work``."""
    command = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               f"--user-data-dir={work / 'profile'}",
               "--host-resolver-rules=MAP * ~NOTFOUND", f"--proxy-server={DEAD_PROXY}",
               f"--log-net-log={work / 'net.json'}", *flags, "file://" + os.path.abspath(page)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _page_requests(work) -> list:
    """URLs the page asked for: requests started with the file's (opaque) origin."""
    with open(work / "net.json") as f:
        # Chromium may leave its last polled data after the closing brace.
        log, _ = json.JSONDecoder().raw_decode(f.read())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return sorted({e["params"]["url"] for e in log["events"]
                   if e["type"] == start_job and "url" in e.get("params", {})
                   and str(e["params"].get("initiator", "")).startswith(("null", "file:"))})


class _Cells(html.parser.HTMLParser):
    """The text of every ``<td data-metric=...>`` of the DOM, and every src / href."""

    def __init__(self):
        super().__init__()
        self.cells, self.links, self.tags = {}, [], set()
        self._key = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        self.links += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag == "td" and "data-metric" in attrs:
            self._key = (attrs["data-task"], attrs["data-split"], attrs["data-metric"])
            self.cells[self._key] = ""

    def handle_data(self, data):
        if self._key is not None:
            self.cells[self._key] += data

    def handle_endtag(self, tag):
        if tag == "td":
            self._key = None


@pytest.fixture(scope="module")
def page(tiny_run):
    config, _ = tiny_run
    assert os.path.exists(config.layout.report_page), "the demo's last stage writes the page"
    return config, config.layout.report_page


def test_the_page_shows_the_metrics_file_auc_of_every_task(page, tmp_path):
    config, path = page
    done = _chromium(path, tmp_path, "--dump-dom")
    cells = _Cells()
    cells.feed(done.stdout)
    with open(config.layout.metrics_file) as f:
        metrics = json.load(f)
    expected = {(task, "eval"): values["auc"] for task, values in metrics["tasks"].items()}
    expected.update({(task, "test"): values["auc"]
                     for task, values in ((metrics.get("test") or {}).get("tasks") or {}).items()})
    shown = {(task, split): text for (task, split, metric), text in cells.cells.items()
             if metric == "auc"}
    assert set(shown) == set(expected)
    for key, auc in expected.items():
        assert shown[key] == f"{auc:.4f}", key
    # Every image is inline and every link stays in the page.
    assert cells.links and all(link.startswith(("data:image/png;base64,", "#"))
                               for link in cells.links)
    assert not cells.tags & {"script", "link", "iframe", "object", "embed"}


def test_the_page_is_drawn_and_asks_for_nothing(page, tmp_path):
    _, path = page
    shot = tmp_path / "shot.png"
    _chromium(path, tmp_path, "--hide-scrollbars", "--window-size=1280,2400",
              f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("L"), np.float64)
    assert pixels.shape == (2400, 1280)
    # A blank page is one colour; this one has text, tables and plots.
    assert pixels.std() > 20
    assert len(np.unique(pixels)) > 50
    assert (pixels < 128).mean() > 0.01
    assert _page_requests(tmp_path) == []


def test_the_request_check_catches_a_page_that_fetches(tmp_path):
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<html><body><img src="http://cdn.example.com/logo.png"></body></html>')
    _chromium(str(leaky), tmp_path, "--dump-dom")
    assert _page_requests(tmp_path) == ["http://cdn.example.com/logo.png"]


def test_the_page_has_every_section_with_a_sentence_on_what_to_look_for(page):
    config, _ = page
    context = report_page.build(config)
    assert [s["id"] for s in context["sections"]] == [
        "data", "tasks", "training", "slices", "baselines", "gate", "ranking"]
    for section in context["sections"]:
        assert section["look_for"].endswith(".")
    with open(config.layout.recommend_metrics) as f:
        ranking = json.load(f)
    with open(config.layout.push_report) as f:
        push = json.load(f)
    gate = context["sections"][-2]["tables"][0]["rows"]
    assert [(r[0], r[1], r[5]) for r in gate] == [
        (task, f"{t['auc']:.4f}", "yes" if t["passed"] else "no")
        for task, t in push["verdict"]["tasks"].items()]
    rows = {r[0]: r for r in context["sections"][-1]["tables"][0]["rows"]}
    assert rows["model"][2] == f"{ranking['model']['ndcg']:.4f}"
    # The at-K curves end at the table's K.
    assert len(ranking["at_k"]["model"]) == ranking["k"]
    assert ranking["at_k"]["model"][-1] == ranking["model"]


def test_a_test_split_gets_its_own_cells_and_missing_files_their_absence():
    from shoprec.app.report import sections

    metrics = {
        "tasks": {"click": {"auc": 0.71234, "gauc": 0.7, "log_loss": 0.2, "calibration": 1.0,
                            "positive_rate": 0.1, "examples": 100},
                  "price": {"rmse": 1.5, "examples": 100}},
        "test": {"tasks": {"click": {"auc": 0.69876, "examples": 50}}},
        "training": {"architecture": "mmoe", "loss": [0.5, 0.4], "epochs_run": [0, 1],
                     "epochs": 2, "initial_epoch": 0, "early_stopping": None},
    }
    section = sections.tasks_section(metrics, None)
    auc = {(c["attrs"]["data-task"], c["attrs"]["data-split"]): c["text"]
           for row in section["tables"][0]["rows"] for c in row
           if isinstance(c, dict) and c["attrs"]["data-metric"] == "auc"}
    # A regression task has no AUC: its cell says so rather than leaving a gap.
    assert auc == {("click", "eval"): "0.7123", ("price", "eval"): "n/a",
                   ("click", "test"): "0.6988"}
    assert {len(row) for row in section["tables"][0]["rows"]} == {
        len(section["tables"][0]["header"])}
    assert section["images"] == []  # no diagnostics file, no curves
    baselines = sections.baselines_section(metrics, None, None)
    assert baselines["tables"][0]["rows"] == [
        ["click", "0.7123", "n/a", "n/a", "n/a", "0.7000", "n/a"]]
    html = report_page.render({"run_dir": "/r", "dataset": "<shop>", "architecture": "mmoe",
                               "sections": [section, sections.training_section(metrics)]})
    assert "&lt;shop&gt;" in html and "<shop>" not in html
    assert 'data-task="click" data-split="test">0.6988<' in html


def test_the_gate_section_shows_a_refused_verdict_over_the_last_published_one(tmp_path):
    from shoprec.core.layout import Layout
    from shoprec.io.outputs import write_report

    layout = Layout(str(tmp_path))
    assert report_page.gate_verdict(layout) is None
    write_report(layout.push_report, {"status": "blessed", "version": "v1"})
    assert report_page.gate_verdict(layout)["version"] == "v1"
    # A push that crashed half way leaves a staged report that is no verdict.
    staged = layout.staged("push").push_report
    write_report(staged, {"status": "failed"})
    assert report_page.gate_verdict(layout)["version"] == "v1"
    # Refused: not published, so the staged verdict is this run's latest.
    write_report(staged, {"status": "not_blessed", "version": None})
    assert report_page.gate_verdict(layout)["status"] == "not_blessed"


def test_class_and_thresholded_tasks_get_tables_of_their_own():
    from shoprec.app.report import sections

    metrics = {"tasks": {
        "click": {"auc": 0.7, "examples": 10},
        "interest": {"accuracy": 0.4, "top_3_accuracy": 0.8, "ndcg_at_3": 0.6, "macro_f1": 0.3,
                     "log_loss": 1.5, "examples": 6},
        "anomaly": {"auc": 0.99, "threshold": 0.5, "precision": 0.9, "recall": 0.8,
                    "examples": 10}},
        "baselines": {"anomaly": {"baseline": "anomaly_rule", "auc": 0.91, "precision": 1.0,
                                  "recall": 0.05, "examples": 10}}}
    tables = sections.tasks_section(metrics, None)["tables"]
    assert [t["id"] for t in tables] == ["task-metrics", "class-metrics", "threshold-metrics"]
    assert tables[1]["rows"] == [["interest", "eval", "0.4000", "0.8000", "0.6000", "0.3000",
                                  "1.5000", "6"]]
    assert tables[2]["rows"] == [
        ["anomaly", "model", "0.9900", "0.5000", "0.9000", "0.8000", "10"],
        ["anomaly", "anomaly_rule", "0.9100", "n/a", "1.0000", "0.0500", "10"]]
