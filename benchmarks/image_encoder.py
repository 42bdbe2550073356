"""Image encoder benchmark: attribute accuracy on held-out items, and embed-job throughput.

Trains ``trainer.image_encoder`` on each catalogue given, reports per
attribute the held-out accuracy next to the majority-class rate, exports the
encoder and runs ``pipelines.embed_images`` over the whole catalogue.

    python benchmarks/image_encoder.py --generated_raw /tmp/i4demo/raw \\
        --generated_items 3000 --hm_dir ../shared/data/hm

``--generated_raw`` is a run's ``raw/`` folder (``shoprec generate`` or
``shoprec demo``); ``--generated_items N`` also generates a shop with N items
(photos only matter) for a steadier estimate than the demo's 300 items. H&M
data must never be committed, nor anything derived from it: write outputs
outside the repository (default: a temp dir).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:  # run as a script: make the repository importable
    sys.path.insert(0, REPO_ROOT)

import shoprec  # noqa: E402,F401  (selects Keras 2 before TensorFlow loads)

import numpy as np  # noqa: E402


def _generate_items(work_dir: str, items: int):
    """A generated shop with ``items`` items and few users; returns (raw folder, config)."""
    from pipelines import generate
    from shoprec.core import config as config_lib

    config = config_lib.load(None, run_dir=os.path.join(work_dir, f"gen{items}"))
    config = dataclasses.replace(config, generate=dataclasses.replace(
        config.generate, num_items=items, num_users=20))
    generate.run(config)
    return config.path("raw"), config.generate


def hidden_patterns(gen) -> np.ndarray:
    """The generator's per-item fill pattern, which only the photo shows.

    Redrawn from the generator's world stream (its first spawned seed), as
    ``pipelines.generate.run`` draws it; items.csv does not carry it.
    """
    from pipelines import generate

    world_seed = np.random.SeedSequence(gen.seed).spawn(4)[0]
    return generate._world(np.random.default_rng(world_seed), gen)["pattern"]


def probe(embeddings: np.ndarray, labels: np.ndarray, train: np.ndarray,
          held_out: np.ndarray, epochs: int = 300) -> dict:
    """Held-out accuracy of a softmax regression on the embeddings (a linear probe)."""
    import tensorflow as tf

    mean, std = embeddings[train].mean(0), embeddings[train].std(0) + 1e-6
    x = (embeddings - mean) / std
    k = int(labels.max()) + 1
    model = tf.keras.Sequential([tf.keras.layers.Dense(k)])
    model.compile(tf.keras.optimizers.Adam(0.05),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[train], labels[train], epochs=epochs, batch_size=len(train), verbose=0)
    predicted = model.predict(x[held_out], verbose=0).argmax(1)
    majority = np.bincount(labels[train], minlength=k).argmax()
    return {"accuracy": float(np.mean(predicted == labels[held_out])),
            "majority_rate": float(np.mean(labels[held_out] == majority)), "classes": k}


def _catalogues(args, work_dir: str):
    """(name, loader, embed-job kwargs, generator config or None) per catalogue."""
    from trainer import image_encoder as E

    from shoprec.core import config as config_lib

    shape = tuple(int(d) for d in args.generated_shape.split(","))
    # A raw folder from `shoprec generate/demo` was drawn with the demo config.
    raws = ([("generated (demo raw)", args.generated_raw, config_lib.load(None).generate)]
            if args.generated_raw else [])
    if args.generated_items:
        raws.append((f"generated ({args.generated_items} items)",
                     *_generate_items(work_dir, args.generated_items)))
    for name, raw, gen in raws:
        yield (name, lambda raw=raw: E.generated_catalogue(raw, shape),
               {"items": os.path.join(raw, "items.csv"), "images_root": raw}, gen)
    if args.hm_dir and os.path.isdir(args.hm_dir):
        hm_shape = tuple(int(d) for d in args.hm_shape.split(","))
        yield ("H&M", lambda: E.hm_catalogue(args.hm_dir, hm_shape, limit=args.hm_limit),
               {"items": os.path.join(args.hm_dir, "articles.csv"), "images_root": args.hm_dir,
                "id_column": "article_id", "image_path": E.HM_IMAGE_PATH}, None)
    elif args.hm_dir:
        print(f"skipping H&M: {args.hm_dir} not found")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generated_raw", default=None, help="a run's raw/ folder")
    parser.add_argument("--generated_items", type=int, default=0,
                        help="also generate a catalogue of this many items")
    parser.add_argument("--generated_shape", default="32,32,3")
    parser.add_argument("--hm_dir", default=os.path.join(REPO_ROOT, "..", "shared", "data", "hm"))
    parser.add_argument("--hm_shape", default="48,32,3", help="H&M photos are 85x128 (w x h)")
    parser.add_argument("--hm_limit", type=int, default=None, help="first N articles only")
    parser.add_argument("--epochs", type=int, default=None, help="override EncoderConfig.epochs")
    parser.add_argument("--min_steps", type=int, default=None,
                        help="override EncoderConfig.min_steps")
    parser.add_argument("--filters", default=None,
                        help="override EncoderConfig.filters, comma-separated (e.g. 16,32,64)")
    parser.add_argument("--seed", type=int, default=None,
                        help="override EncoderConfig.seed (the held-out split and training)")
    parser.add_argument("--no_embed", action="store_true", help="skip the embed job")
    parser.add_argument("--beam_args", default="", help="Beam flags for the embed job")
    parser.add_argument("--work_dir", default=None, help="keep exports here (default: temp)")
    parser.add_argument("--results", default=None, help="also write results as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from pipelines import embed_images
    from trainer import image_encoder as E

    overrides = {"epochs": args.epochs, "min_steps": args.min_steps, "seed": args.seed,
                 "filters": (tuple(int(f) for f in args.filters.split(","))
                             if args.filters else None)}
    config = dataclasses.replace(E.EncoderConfig(),
                                 **{k: v for k, v in overrides.items() if v is not None})
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="shoprec-encoder-")
    results = {}
    try:
        for name, load, job, gen in _catalogues(args, work_dir):
            started = time.perf_counter()
            cat = load()
            loaded_s = time.perf_counter() - started
            model, report = E.train_encoder(
                cat.images, cat.labels, config, {k: len(v) for k, v in cat.classes.items()})
            export_dir = E.export(model, os.path.join(work_dir, _slug(name), "encoder"),
                                  cat.classes, report)
            report.update(items=len(cat.ids), skipped=len(cat.skipped),
                          load_seconds=round(loaded_s, 1))
            print(f"\n{name}: {len(cat.ids)} items with photos ({len(cat.skipped)} skipped), "
                  f"images {list(cat.images.shape[1:])}, trained on {report['train_items']}, "
                  f"held out {report['held_out_items']}; {report['epochs']} epochs in "
                  f"{report['train_seconds']:.0f} s")
            print(f"  {'attribute':<20} {'classes':>7} {'accuracy':>8} {'majority':>8}")
            for head, h in report["heads"].items():
                print(f"  {head:<20} {h['classes']:>7} {h['accuracy']:>8.3f} "
                      f"{h['majority_rate']:>8.3f}")
            if gen is not None:
                # Pattern is not an attribute the encoder was trained on: does
                # its embedding carry it anyway? (The generator makes it matter.)
                pattern = hidden_patterns(gen)[[int(i[1:]) for i in cat.ids]]
                train, held_out = E.split_items(len(cat.ids), config.holdout_fraction,
                                                config.seed)
                report["pattern_probe"] = probe(E.embed(export_dir, cat.images), pattern,
                                                train, held_out)
                p = report["pattern_probe"]
                print(f"  {'pattern (hidden), probe':<24} {p['classes']:>3} "
                      f"{p['accuracy']:>8.3f} {p['majority_rate']:>8.3f}")
            if not args.no_embed:
                job_report = embed_images.run(
                    model_dir=export_dir, output_dir=os.path.join(work_dir, _slug(name), "emb"),
                    beam_args=args.beam_args.split(), **job)
                report["embed_job"] = {k: job_report[k] for k in ("seconds", "items_per_s")}
                report["embed_job"]["items"] = job_report["counts"].get("embed/items", 0)
                print(f"  embed job: {report['embed_job']['items']} items in "
                      f"{job_report['seconds']:.1f} s = {job_report['items_per_s']:.0f} items/s "
                      f"(read, decode + resize, embed, write)")
            results[name] = report
    finally:
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    if args.results:
        with open(args.results, "w") as f:
            json.dump(results, f, indent=2)
    return 0


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


if __name__ == "__main__":
    sys.exit(main())
