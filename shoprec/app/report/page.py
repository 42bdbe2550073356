"""The report page: read the run's files, build the sections, render, write."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import jinja2

from shoprec.app.report import sections as sections_lib
from shoprec.core.config import Config
from shoprec.core.errors import StageOrderError
from shoprec.core.layout import Layout
from shoprec.io import files
from shoprec.io.outputs import clear, read_report, require_success, write_success, write_text

TEMPLATE = "page.html.j2"


def oracle_auc(config: Config) -> Optional[Dict[str, float]]:
    """Per task, the AUC of the generator's true probabilities on the eval window.

    None for a data set other than the generated shop, which alone has the truth file.
    """
    if config.data.name != "generated" or not config.inputs.truth:
        return None
    from pipelines import generate
    from trainer import metrics

    truth = generate.read_truth(config.input_path(config.inputs.truth), config.eval_start_ts)
    return {task: metrics.auc(labels, p) for task, (labels, p) in truth.items()}


def gate_verdict(layout: Layout) -> Optional[Dict[str, Any]]:
    """The model gate's latest verdict in this run folder, or None.

    A refused model's push is not published, so its verdict stays in the
    staging folder (a push that publishes leaves none there): that one is
    this run's latest, and the page shows why the model was refused.
    """
    refused = read_report(layout.staged("push").push_report)
    if refused is not None and refused.get("status") == "not_blessed":
        return refused
    return read_report(layout.push_report)


def build(config: Config) -> Dict[str, Any]:
    """The page's context: the run folder, and every section the run's files allow.

    Raises:
        StageOrderError: ``train`` has not finished (the page is about a model).
    """
    layout = config.layout
    require_success(layout.train_dir, "train")
    metrics = read_report(layout.metrics_file)
    if metrics is None:
        raise StageOrderError(f"no readable {layout.metrics_file}; run `shoprec train` again")
    diagnostics = read_report(layout.diagnostics_file)
    sections = [
        sections_lib.data_section(read_report(layout.ingest_report),
                                  read_report(layout.embed_report)),
        sections_lib.tasks_section(metrics, diagnostics),
        sections_lib.training_section(metrics),
        sections_lib.slices_section(metrics, diagnostics),
        sections_lib.baselines_section(metrics, diagnostics, oracle_auc(config)),
    ]
    push = gate_verdict(layout)
    if push is not None:
        sections.append(sections_lib.gate_section(push))
    ranking = read_report(layout.recommend_metrics)
    if ranking is not None:
        sections.append(sections_lib.ranking_section(ranking))
    run_dir = os.path.abspath(config.run_dir) if files.is_local(config.run_dir) else config.run_dir
    return {"run_dir": run_dir, "dataset": config.data.name,
            "architecture": metrics["training"].get("architecture"), "sections": sections}


def render(context: Dict[str, Any]) -> str:
    """The HTML page of :func:`build`'s context."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(os.path.dirname(os.path.abspath(__file__))),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True)
    return environment.get_template(TEMPLATE).render(**context)


def run(config: Config) -> Dict[str, Any]:
    """Writes ``report/index.html``; returns the stage's report (page path, counts)."""
    layout = config.layout
    context = build(config)
    clear(layout.report_dir)
    write_text(layout.report_page, render(context), "text/html")
    write_success(layout.report_dir, "report")
    return {"page": layout.report_page, "sections": len(context["sections"]),
            "images": sum(len(s["images"]) for s in context["sections"])}
