"""Image encoder heads compared: attributes only, behaviour only, and both.

On a generated shop, trains ``trainer.image_encoder`` three times on the same
item split (the encoder's seeded ``holdout_fraction``) and reports on the
held-out items: attribute accuracy (next to the majority rate), the behaviour
head's Pearson r and R^2 per target (train-window counts, ``pipelines.
behaviour_counts``), and how well the embedding separates the fill pattern,
which only the photo shows, no label names and the shop's clicks depend on
(a linear probe: held-out accuracy next to the majority rate). A ridge probe
from each embedding to the behaviour targets (fit on training teachers, R^2 on
held-out ones) asks the same of every head set: does the embedding carry
what shoppers do, whether or not a head was trained on it?

    python benchmarks/encoder_behaviour.py --generated_items 3000 \\
        --generated_users 6000 --shape 16,16,3

``--run_dir`` takes a run folder with ``raw/`` already generated with the
demo config's generator settings (``--config`` for others) instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # run as a script: make the repository importable
    sys.path.insert(0, REPO_ROOT)

import shoprec  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)

import numpy as np  # noqa: E402

from benchmarks.image_encoder import hidden_patterns, probe  # noqa: E402

MODES = ("attributes", "behaviour", "both")


def ridge_probe(embeddings: np.ndarray, targets, train: np.ndarray, held_out: np.ndarray,
                alpha: float = 1.0) -> dict:
    """Per target column, held-out R^2 of a ridge regression on the standardized embedding."""
    from trainer import behaviour as B

    fit = train[targets.weight[train] > 0]
    test = held_out[targets.weight[held_out] > 0]
    mean, std = embeddings[fit].mean(0), embeddings[fit].std(0) + 1e-6
    x = np.concatenate([(embeddings - mean) / std, np.ones((len(embeddings), 1))], axis=1)
    gram = x[fit].T @ x[fit] + alpha * np.eye(x.shape[1])
    coef = np.linalg.solve(gram, x[fit].T @ targets.values[fit])
    return B.regression_report(targets.values[test], x[test] @ coef, targets.columns)


def _shop(args, work_dir: str):
    """The run config of the shop to measure, generated here unless ``--run_dir`` is given."""
    from pipelines import generate
    from shoprec.core import config as config_lib

    if args.run_dir:
        return config_lib.load(args.config, run_dir=args.run_dir)
    config = config_lib.load(args.config, run_dir=os.path.join(work_dir, "shop"))
    config = dataclasses.replace(config, generate=dataclasses.replace(
        config.generate, num_items=args.generated_items, num_users=args.generated_users))
    generate.run(config)
    return config


def compare(config, shape, encoder_config, weight: float, min_events: int, smoothing: float,
            counts_dir: str) -> dict:
    """{mode: report} for the three head sets on ``config``'s shop."""
    from pipelines import behaviour_counts
    from trainer import behaviour as B
    from trainer import image_encoder as E

    raw = config.path("raw")
    cat = E.generated_catalogue(raw, shape)
    job = behaviour_counts.run(config.input_path(config.inputs.events), config.inputs.format,
                               config.data, config.eval_start_ts,
                               os.path.join(counts_dir, "item_counts"),
                               os.path.join(counts_dir, "dead_letter"))
    targets = B.targets(B.read_counts(job["outputs"]["counts"]), cat.ids, min_events, smoothing)
    pattern = hidden_patterns(config.generate)[[int(i[1:]) for i in cat.ids]]
    train, held_out = E.split_items(len(cat.ids), encoder_config.holdout_fraction,
                                    encoder_config.seed)
    num_classes = {k: len(v) for k, v in cat.classes.items()}
    results = {"items": int(len(cat.ids)), "teachers": int(targets.weight.sum()),
               "columns": targets.columns, "priors": targets.priors}
    for mode in MODES:
        labels = cat.labels if mode != "behaviour" else {}
        model, report = E.train_encoder(
            cat.images, labels, encoder_config,
            num_classes if mode != "behaviour" else {},
            behaviour=targets if mode != "attributes" else None, behaviour_weight=weight)
        embeddings = E.embedder(model).predict(cat.images, batch_size=256, verbose=0)
        report["pattern_probe"] = probe(embeddings, pattern, train, held_out)
        report["behaviour_probe"] = ridge_probe(embeddings, targets, train, held_out)
        results[mode] = report
        _print(mode, report)
    return results


def _print(mode: str, report: dict) -> None:
    parts = [f"{name} acc {h['accuracy']:.3f} (majority {h['majority_rate']:.3f})"
             for name, h in report["heads"].items()]
    for name, t in report.get("behaviour", {}).get("targets", {}).items():
        parts.append(f"{name} r {t['pearson']:.3f} R^2 {t['r2']:.3f}")
    for name, t in report["behaviour_probe"].items():
        parts.append(f"{name} ridge probe R^2 {t['r2']:.3f}")
    p = report["pattern_probe"]
    parts.append(f"pattern probe acc {p['accuracy']:.3f} (majority {p['majority_rate']:.3f})")
    print(f"{mode:<11} " + "; ".join(parts) + f"; {report['train_seconds']:.0f} s", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", default=None, help="a run folder with raw/ generated")
    parser.add_argument("--config", default=None, help="its config (default: the demo's)")
    parser.add_argument("--generated_items", type=int, default=3000)
    parser.add_argument("--generated_users", type=int, default=6000)
    parser.add_argument("--shape", default="16,16,3", help="photo size (the demo's: 16,16,3)")
    parser.add_argument("--weight", type=float, default=1.0, help="behaviour loss weight")
    parser.add_argument("--min_events", type=int, default=20)
    parser.add_argument("--smoothing", type=float, default=20.0)
    parser.add_argument("--min_steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work_dir", default=None, help="default: a temp dir")
    parser.add_argument("--results", default=None, help="also write results as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from trainer import image_encoder as E

    work_dir = args.work_dir or tempfile.mkdtemp(prefix="shoprec-behaviour-")
    config = _shop(args, work_dir)
    shape = tuple(int(d) for d in args.shape.split(","))
    encoder_config = dataclasses.replace(E.EncoderConfig(), min_steps=args.min_steps,
                                         seed=args.seed)
    results = compare(config, shape, encoder_config, args.weight, args.min_events,
                      args.smoothing, os.path.join(work_dir, "behaviour"))
    if args.results:
        with open(args.results, "w") as f:
            json.dump(results, f, indent=2, default=lambda v: np.asarray(v).tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main())
