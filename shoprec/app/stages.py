"""The stage table: every ``shoprec`` stage, what it runs, reads and writes.

The CLI makes one subcommand per stage from this table, ``shoprec demo`` runs
the stages marked ``in_demo`` in table order and ``shoprec run`` those of them
a production day needs (:func:`day_stages`), so the order is written once.
``reads`` names each stage's inputs: ``inputs.<key>`` (an input path of the
config), ``inputs`` (the events, items and users), ``embed.encoder`` (a given
image embedder) or an earlier stage's folder; the stage runner fingerprints
them with the whole config (``shoprec.app.runs``), so embed, whose encoder's
behaviour head counts the events before ``ingest.eval_start``, also reruns
when the events or that date change. Each stage's module is imported only when it
runs: ``shoprec --help`` loads no TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from shoprec.core.config import Config
from shoprec.core.recommend_config import recommend_settings

# run(config, beam_args, options) → the stage's report; options holds the
# stage's own flags (``strategy``, ``pairs``, ``force_bless``, ``bq_table``) when given.
Runner = Callable[[Config, Sequence[str], Mapping[str, Any]], Dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a run.

    Attributes:
        name: Subcommand name.
        help: One line for ``--help``.
        run: What it runs (see :data:`Runner`).
        reads: What it reads: the inputs or the run folders of earlier stages.
        writes: The run folder it owns (staged and published on each run).
        flags: Its own flags beside the common ones: ``sizes`` (the
            generator's), ``strategy``, ``pairs``, ``force_bless``, ``bq_table``.
        in_demo: Whether ``shoprec demo`` runs it.
        publishes: Whether its folder is staged and published with a
            manifest; ``generate`` writes the run's *inputs* (wherever
            ``inputs`` points), which a production run gets from the shop.
        beam: Whether it runs a Beam job (and so can be a Dataflow dry run).
    """

    name: str
    help: str
    run: Runner
    reads: Tuple[str, ...]
    writes: str
    flags: Tuple[str, ...]
    in_demo: bool
    publishes: bool = True
    beam: bool = False


def _generate(config, beam_args, options):
    from pipelines import generate

    return generate.run(config)


def _embed(config, beam_args, options):
    from shoprec.app import embed

    return embed.run(config, beam_args)


def _validate(config, beam_args, options):
    from pipelines import ingest

    return ingest.validate(config, beam_args)


def _ingest(config, beam_args, options):
    from pipelines import ingest

    return ingest.run(config, beam_args)


def _featurize(config, beam_args, options):
    from pipelines import featurize

    return featurize.run(config, beam_args)


def _train(config, beam_args, options):
    from trainer import train

    return train.run(config, strategy_name=options.get("strategy"))


def _push(config, beam_args, options):
    from trainer import gate

    return gate.run(config, force_bless=bool(options.get("force_bless")))


def _score(config, beam_args, options):
    from pipelines import score

    return score.run(config, beam_args, pairs=options.get("pairs"))


def _recommend(config, beam_args, options):
    from shoprec.app import recommend

    return recommend.run(config, beam_args, bq_table=options.get("bq_table"))


def _report(config, beam_args, options):
    from shoprec.app.report import page

    return page.run(config)


STAGES: Tuple[Stage, ...] = (
    Stage("generate", "write the synthetic shop (users, items, images, events, ground truth)",
          _generate, (), "raw/", ("sizes",), True, publishes=False),
    Stage("embed", "train the image encoder on the catalogue (or use embed.encoder); Beam: "
                   "embed every item's photo once, for ingest to join",
          _embed, ("inputs.items", "inputs.images_root", "inputs.events", "embed.encoder"),
          "embed/", (), True,
          beam=True),
    Stage("validate", "Beam: run ingest's checks and print the data report, writing no "
                      "examples",
          _validate, ("inputs", "embed/"), "validate/", (), False, beam=True),
    Stage("ingest", "Beam: validate, dedup, label, join and split events into raw examples",
          _ingest, ("inputs", "embed/"), "ingest/", (), True, beam=True),
    Stage("featurize", "Beam + tensorflow-transform: analyse train, transform every split",
          _featurize, ("ingest/",), "featurize/", (), True, beam=True),
    Stage("train", "TFRS multi-task training under a tf.distribute strategy; export",
          _train, ("featurize/",), "train/", ("strategy",), True),
    Stage("push", "model gate: judge the trained model against the published one on the eval "
                  "split; publish it as a new version when blessed",
          _push, ("ingest/", "train/", "models/CURRENT"), "push/", ("force_bless",), True),
    Stage("score", "Beam RunInference: score user x item pairs with the published model and "
                   "rank within user",
          _score, ("ingest/", "models/CURRENT"), "score/", ("pairs",), True, beam=True),
    Stage("recommend", "Beam: the top K of the whole catalogue for every user (retrieval, then "
                       "the multi-task ranker), judged against baselines",
          _recommend, ("ingest/", "models/CURRENT", "inputs.truth"), "recommend/", ("bq_table",),
          True, beam=True),
    Stage("report", "one self-contained HTML page of the run: data, per-task curves, "
                    "training, slices, baselines, the model gate, ranking",
          _report, ("ingest/", "embed/", "train/", "push/", "recommend/", "inputs.truth"),
          "report/", (), True),
)

BY_NAME: Dict[str, Stage] = {s.name: s for s in STAGES}


def demo_stages() -> Tuple[Stage, ...]:
    """The stages ``shoprec demo`` runs, in order."""
    return tuple(s for s in STAGES if s.in_demo)


def day_stages(config: Config) -> Tuple[Stage, ...]:
    """The stages ``shoprec run`` runs for one day, in order.

    The demo's stages but ``generate`` (a production day reads the shop's
    files); ``embed`` only when the registry has a photo embedding,
    ``score`` only when the ranker reads no candidate signals (it ranks the
    candidates ``recommend`` builds, not arbitrary pairs) and ``recommend``
    only with candidate sources (the towers', by default).
    """
    wanted = {"embed": config.registry.embedding_feature() is not None,
              "score": not config.registry.candidate_features(),
              "recommend": bool(recommend_settings(config).sources)}
    return tuple(s for s in demo_stages()
                 if s.name != "generate" and wanted.get(s.name, True))


def options_of(stage: Stage, values: Mapping[str, Optional[Any]]) -> Dict[str, Any]:
    """The stage's own flag values among ``values`` (unset ones left out)."""
    return {k: v for k, v in values.items() if k in stage.flags and v is not None}
