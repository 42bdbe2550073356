"""End to end on a tiny generated shop: every stage for real, then the outputs."""

import csv
import dataclasses
import glob
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from shoprec.app import cli
from shoprec.core import config as config_lib
from shoprec.core import recommend_config
from shoprec.core.errors import ModelNotBlessedError, StageOrderError
from shoprec.io import models
from shoprec.core.model_config import TaskConfig

from pipelines import score
from pipelines.examples import encode, read_table


def _pairs(config):
    rows = set()
    for path in glob.glob(config.layout.eval_pairs + "*"):
        with open(path) as f:
            header = next(f).strip()
            assert header == "user_id,item_id"
            rows.update(tuple(line.strip().split(",")) for line in f if line.strip())
    return rows


def test_demo_runs_every_stage_and_scores_every_pair(tiny_run):
    tiny_run, out = tiny_run
    for task in ("click", "conversion"):
        assert any(line.startswith(task) for line in out.splitlines()), out
    assert "oracle AUC" in out

    pairs = _pairs(tiny_run)
    assert pairs, "ingest wrote no eval pairs"
    files = glob.glob(tiny_run.layout.scores + "*.parquet")
    assert files, "no scores written"
    scores = [r for f in files for r in pq.read_table(f).to_pylist()]
    scored_pairs = [(r["user_id"], r["item_id"]) for r in scores]
    # Exactly one row per input pair: no pair lost, none duplicated.
    assert len(scored_pairs) == len(set(scored_pairs)) == len(pairs)
    assert set(scored_pairs) == pairs
    for task in ("p_click", "p_conversion"):
        values = np.array([r[task] for r in scores])
        assert np.all((values > 0) & (values < 1)), task
    # Ranks are 1..n within each user, ordered by p_click.
    by_user = {}
    for r in scores:
        by_user.setdefault(r["user_id"], []).append(r)
    for rows in by_user.values():
        rows.sort(key=lambda r: r["rank"])
        assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
        assert all(a["p_click"] >= b["p_click"] for a, b in zip(rows, rows[1:]))


def test_events_carry_the_item_embedding_and_no_pixels(tiny_run):
    tiny_run, out = tiny_run
    registry, layout = tiny_run.registry, tiny_run.layout
    width = registry.embedding_feature().width
    items = {r["item_id"]: r for f in glob.glob(layout.item_embeddings + "-*.parquet")
             for r in pq.read_table(f).to_pylist()}
    # One embedding per catalogue item. Of the 24 photos the seeded generator
    # broke four (missing i00001, empty i00004, random bytes i00010, truncated
    # i00021): exactly those have no image and a zero vector.
    assert len(items) == 24
    assert sorted(i for i, r in items.items() if r["has_image"] == 0) == [
        "i00001", "i00004", "i00010", "i00021"]
    assert all(len(r["embedding"]) == width for r in items.values())
    assert "image encoder, held-out items: category accuracy" in out
    keys = set(registry.example_names()) | {registry.timestamp_key, registry.sampled_key}
    records = tf.data.TFRecordDataset(glob.glob(layout.examples("train") + "-*"),
                                      compression_type="GZIP")
    seen = 0
    for record in records.take(50):
        seen += 1
        example = tf.train.Example.FromString(record.numpy()).features.feature
        assert set(example) == keys
        item = items[example["item_id"].bytes_list.value[0].decode()]
        np.testing.assert_allclose(example["item_image_embedding"].float_list.value,
                                   item["embedding"], rtol=1e-6)
        assert example["item_has_image"].int64_list.value[0] == item["has_image"]
        # Ids and categories are the only strings: no photo bytes travel with events.
        assert all(len(v) < 64 for f in example.values() for v in f.bytes_list.value)
    # The train split has hundreds of examples: the checks above ran on 50.
    assert seen == 50


def test_transformed_shards_have_their_schema_beside_them(tiny_run):
    tiny_run, _ = tiny_run
    layout = tiny_run.layout
    beside = os.path.join(os.path.dirname(layout.transformed("train")), "schema.pbtxt")
    with open(beside) as f, open(os.path.join(layout.transform_dir, "transformed_metadata",
                                              "schema.pbtxt")) as g:
        assert f.read() == g.read()


def test_scoring_dead_letters_unknown_items_and_scores_unknown_users(tiny_run, tmp_path):
    tiny_run, _ = tiny_run
    pairs_file = tmp_path / "pairs.csv"
    known_item = sorted(_pairs(tiny_run))[0][1]
    pairs_file.write_text(
        f"user_id,item_id\nnobody,{known_item}\nnobody,not-an-item\nonly-one-field\n")
    report = score.run(tiny_run, pairs=str(pairs_file))
    counts = report["counts"]
    assert counts["score/rows"] == 1
    assert counts["dead_letter/pairs/unknown_item"] == 1
    assert counts["dead_letter/pairs/bad_pair"] == 1
    (row,) = pq.read_table(glob.glob(tiny_run.layout.scores + "*.parquet")).to_pylist()
    assert (row["user_id"], row["item_id"], row["rank"]) == ("nobody", known_item, 1)


def test_scoring_a_multiclass_task_writes_probabilities_class_and_name(tiny_run, tmp_path):
    tiny_run, _ = tiny_run
    # The tiny run's data, retrained in a private run folder with a third,
    # multiclass task: the item's own category, which is also a model input.
    run_dir = tmp_path / "multiclass"
    run_dir.mkdir()
    for stage in ("raw", "ingest", "featurize"):
        os.symlink(os.path.join(tiny_run.run_dir, stage), run_dir / stage)
    tasks = tiny_run.model.tasks + (TaskConfig("category", "item_category", type="multiclass"),)
    config = dataclasses.replace(
        tiny_run, run_dir=str(run_dir), model=dataclasses.replace(tiny_run.model, tasks=tasks),
        training=dataclasses.replace(tiny_run.training, epochs=4, learning_rate=0.01))
    from trainer import gate, train

    trained = train.run(config, strategy_name="default")
    # This run folder's first model: the gate is not what this test is about.
    gate.run(config, force_bless=True)
    score.run(config)

    table = pq.read_table(glob.glob(config.layout.scores + "*.parquet"))
    assert table.schema.field("p_category").type == pa.list_(pa.float32())
    assert table.schema.field("category_class").type == pa.int32()
    assert table.schema.field("category_class_name").type == pa.string()
    assert table.schema.field("p_click").type == pa.float32()
    scores = table.to_pylist()
    assert {(r["user_id"], r["item_id"]) for r in scores} == _pairs(tiny_run)
    vocabulary = score.class_names(config)["category"]
    oov = config.registry.by_name["item_category"].oov_buckets
    with open(os.path.join(tiny_run.run_dir, "raw", "items.csv")) as f:
        category_of = {r["item_id"]: r["category"] for r in csv.DictReader(f)}
    # The vocabulary is train's: the categories of the items shown before the
    # eval start (an item launched later is in items.csv, not in train).
    shown = {row["item_id"] for row in read_table(
        tiny_run.layout.examples_pattern("train"), tiny_run.registry)}
    assert set(vocabulary) == {category_of[i] for i in shown}
    for r in scores:
        p = np.array(r["p_category"])
        assert p.shape == (len(vocabulary) + oov,)
        assert p.sum() == pytest.approx(1.0, abs=1e-5)
        assert r["category_class"] == int(np.argmax(p))
        assert r["category_class_name"] == vocabulary[r["category_class"]]
    # Index and name point at the class training's labels meant: the predicted
    # name is the item's own category about as often as eval accuracy says
    # (eval counts impressions, the scores distinct pairs); a name taken from
    # the wrong index would agree about once in len(vocabulary) = 8.
    agreement = np.mean([r["category_class_name"] == category_of[r["item_id"]] for r in scores])
    accuracy = trained["tasks"]["category"]["accuracy"]
    assert accuracy > 0.8 and agreement == pytest.approx(accuracy, abs=0.1)


def test_a_worse_model_is_not_blessed_and_scoring_keeps_the_published_one(tiny_run, tmp_path,
                                                                         capsys):
    tiny_run, out = tiny_run
    from trainer import train

    demo_version = models.current_version(tiny_run.layout)
    assert f"{tiny_run.layout.version_dir(demo_version)} (blessed" in out
    # The tiny run's data in a private run folder and models folder.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for stage in ("raw", "ingest", "featurize"):
        os.symlink(os.path.join(tiny_run.run_dir, stage), run_dir / stage)
    gate_yaml = tmp_path / "gate.yaml"
    gate_yaml.write_text("gate:\n  min_auc: 0.0\n  max_auc_drop: 0.02\n")
    config = dataclasses.replace(
        tiny_run, run_dir=str(run_dir), gate=config_lib.load(str(gate_yaml)).gate,
        training=dataclasses.replace(tiny_run.training, epochs=4, learning_rate=0.01))
    layout = config.layout
    with pytest.raises(StageOrderError, match="no published model"):
        score.run(config)

    # A good model first: no baseline, so only min_auc applies; published.
    train.run(config, strategy_name="default")
    from trainer import gate

    first = gate.run(config)
    assert first["status"] == "blessed" and first["baseline_version"] is None
    good = first["version"]
    assert models.current_version(layout) == good
    assert sorted(os.listdir(layout.version_dir(good))) == [
        "_SUCCESS", "checkpoint", "metrics.json", "model", "transform", "verdict.json"]
    # The gate's figures for the new model are train's own eval metrics (same
    # examples, same metric code; raw examples through the exported model).
    with open(layout.published_metrics(good)) as f:
        trained = json.load(f)
    for task in ("click", "conversion"):
        assert first["candidate"][task]["auc"] == pytest.approx(
            trained["tasks"][task]["auc"], abs=1e-6)

    # A deliberately worse model: one step at a vanishing learning rate.
    worse = dataclasses.replace(config, training=dataclasses.replace(
        config.training, epochs=1, steps_per_epoch=1, learning_rate=1e-9))
    train.run(worse, strategy_name="default")
    code = cli.main(["push", "--config", str(gate_yaml), "--run_dir", str(run_dir)])
    err = capsys.readouterr().err
    assert code == ModelNotBlessedError.exit_code == 7
    assert err.startswith("shoprec push: the model gate did not bless the new model")
    assert f"version {good} stays current" in err and "Traceback" not in err
    # Refused, the stage is not published: its verdict stays in its staging folder.
    refused = layout.staged("push")
    with open(refused.push_report) as f:
        verdict = json.load(f)
    assert verdict["status"] == "not_blessed" and verdict["version"] is None
    assert verdict["baseline_version"] == good
    # The baseline's figures are the published model's own, on the same examples.
    for task in ("click", "conversion"):
        judged = verdict["verdict"]["tasks"][task]
        assert judged["baseline_auc"] == pytest.approx(first["candidate"][task]["auc"], abs=1e-9)
        assert judged["drop"] == pytest.approx(judged["baseline_auc"] - judged["auc"], abs=1e-12)
        assert judged["passed"] == (judged["drop"] <= 0.02)
    assert not verdict["verdict"]["blessed"]
    assert not os.path.exists(os.path.join(refused.push_dir, "_SUCCESS"))
    # Nothing was published: the good model is still current, and scoring uses it.
    assert models.current_version(layout) == good
    assert sorted(os.listdir(layout.models_root)) == sorted(["CURRENT", good])
    scored = score.run(config)
    assert scored["model_version"] == good
    assert scored["model_dir"] == layout.published_model(good)

    # Forced: published anyway, and the verdict says so.
    forced = gate.run(worse, force_bless=True)
    assert forced["status"] == "forced" and models.current_version(layout) == forced["version"]
    assert forced["version"] > good


def test_cli_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for stage in ("generate", "embed", "validate", "ingest", "featurize", "train", "push",
                  "score", "recommend", "report", "demo"):
        assert stage in out


def test_cli_rejects_a_bad_config(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  epochz: 3\n")
    assert cli.main(["train", "--config", str(bad)]) == 2
    assert "epochz" in capsys.readouterr().err


def test_recommend_writes_k_items_for_every_user_and_retrieval_is_exact(tiny_run):
    config, out = tiny_run
    rec, registry, layout = recommend_config.recommend_settings(config), config.registry, config.layout
    assert f"ranking @{rec.k} on the eval window" in out and "candidate recall" in out
    with open(config.input_path(config.inputs.users)) as f:
        user_ids = sorted(r["user_id"] for r in csv.DictReader(f))
    rows = pq.read_table(glob.glob(layout.recommendations + "-*.parquet")).to_pylist()
    by_user = {}
    for r in rows:
        by_user.setdefault(r["user_id"], []).append(r)
    # Every user in the users table, K distinct items each, ranks 1..K.
    assert sorted(by_user) == user_ids
    for user_rows in by_user.values():
        user_rows.sort(key=lambda r: r["rank"])
        assert [r["rank"] for r in user_rows] == list(range(1, rec.k + 1))
        assert len({r["item_id"] for r in user_rows}) == rec.k
        assert [r["score"] for r in user_rows] == sorted((r["score"] for r in user_rows),
                                                         reverse=True)
    # No item the user bought in the 30 days before the eval start (the clean log).
    bought = {}
    eval_ts = config.split_starts[0]
    for e in pq.read_table(glob.glob(layout.events_log_pattern)).to_pylist():
        if (e["event_type"] == "purchase"
                and eval_ts - rec.exclude_days * 86400 <= e["timestamp"] < eval_ts):
            bought.setdefault(e["user_id"], set()).add(e["item_id"])
    assert bought, "the tiny shop has no recent purchase: the exclusion is not exercised"
    candidates = pq.read_table(glob.glob(layout.candidates_table + "-*.parquet")).to_pylist()
    for user, items in bought.items():
        assert not items & {r["item_id"] for r in by_user[user]}, user
        assert not items & {r["item_id"] for r in candidates if r["user_id"] == user}, user

    # The towers' candidates are the exact top N of a NumPy brute force over the
    # exported towers' embeddings (no history features: user row only), and every
    # recommended item's retrieval score is its dot product, whatever its source.
    signatures = tf.saved_model.load(layout.model_dir).signatures
    items = sorted(read_table(layout.items_table + "*", registry), key=lambda r: r["item_id"])
    item_ids = [r["item_id"] for r in items]
    item_vectors = signatures["item_embedding"](examples=tf.constant(
        [encode(r, registry.candidate_names(), registry) for r in items]))["embedding"].numpy()
    users = {r["user_id"]: r for r in read_table(layout.users_table + "*", registry)}
    user_vectors = signatures["user_embedding"](examples=tf.constant(
        [encode(users[u], registry.query_names(), registry) for u in user_ids]))["embedding"]
    scores = user_vectors.numpy() @ item_vectors.T
    towers = {}
    for r in candidates:
        if "two_tower" in r["sources"].split(","):
            towers.setdefault(r["user_id"], set()).add(r["item_id"])
    for user, row in zip(user_ids, scores):
        allowed = [i for i in range(len(item_ids)) if item_ids[i] not in bought.get(user, set())]
        top = {item_ids[i] for i in sorted(allowed, key=lambda i: (-row[i], i))[:rec.tower_quota]}
        assert towers[user] == top, user
        for r in by_user[user]:
            assert r["retrieval_score"] == pytest.approx(
                row[item_ids.index(r["item_id"])], abs=1e-5)
    metrics = json.load(open(layout.recommend_metrics))
    assert set(metrics) >= {"model", "popularity", "own_history", "own_interactions",
                            "own_co_occurrence", "popular_new", "oracle", "candidate_recall",
                            "related", "cold_start"}
    assert set(metrics["candidate_recall"]) == {s.name for s in rec.sources} | {"union"}
    # The union holds each source's list: its recall is at least each one's.
    union = metrics["candidate_recall"]["union"]["recall"]
    assert all(r["recall"] <= union for r in metrics["candidate_recall"].values())
    related = pq.read_table(glob.glob(layout.related_items + "-*.parquet")).to_pylist()
    assert {r["item_id"] for r in related} == set(item_ids)
    assert all(r["item_id"] != r["related_item_id"] for r in related)


def test_recommend_with_a_faiss_index_finds_the_exact_lists(tiny_run, tmp_path):
    from shoprec.app import recommend

    config, _ = tiny_run
    columns = ["user_id", "rank", "item_id", "score", "retrieval_score"]

    def rows(layout):
        table = pq.read_table(glob.glob(layout.recommendations + "-*.parquet"), columns=columns)
        return sorted(tuple(r.values()) for r in table.to_pylist())

    exact = rows(config.layout)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in os.listdir(config.run_dir):
        if name != "recommend":
            os.symlink(os.path.join(config.run_dir, name), run_dir / name)
    ann = dataclasses.replace(config, run_dir=str(run_dir), recommend=dataclasses.replace(
        config.recommend, index="faiss", faiss=recommend_config.FaissConfig(recall_sample=1.0)))
    report = recommend.run(ann)
    # 24 items and HNSW's M = 32 (64 links a node on the bottom layer): every
    # item links to every other, so the graph search is exhaustive and exact.
    assert report["index"]["recall_users"] == report["users"] > 0
    assert report["index"]["recall_at_n"] == 1.0
    assert json.load(open(ann.layout.recommend_metrics))["index"] == report["index"]
    got = rows(ann.layout)
    assert [r[:3] for r in got] == [r[:3] for r in exact]
    # faiss and the blocked product sum in different orders: float32 rounding.
    np.testing.assert_allclose([r[3:] for r in got], [r[3:] for r in exact], rtol=1e-5,
                               atol=1e-6)


def test_recommend_refuses_a_catalogue_over_its_limit(tiny_run):
    from pipelines import recommend
    from shoprec.core.errors import ConfigError

    config, _ = tiny_run
    small = dataclasses.replace(config, recommend=dataclasses.replace(
        config.recommend, max_catalogue_items=5))
    # The tiny shop's 24 items are all valid: ingest's item table holds them all.
    with pytest.raises(ConfigError, match=r"catalogue has 24 items .*recommend\."
                                          r"max_catalogue_items is 5"):
        recommend.run(small)
