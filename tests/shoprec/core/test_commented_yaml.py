"""A config mapping as commented YAML: block sections, flow lines, notes, and a round trip."""

import yaml

from shoprec.core.commented_yaml import render

CONFIG = {"run_dir": "runs/x",
          "dataset": {"labels": "funnel",
                      "events": {"columns": {"ts": {"type": "timestamp", "format": "%Y-%m-%d"}},
                                 "time_range": ["2020-01-01", "2020-02-01"]},
                      "features": [{"name": "user_id", "kind": "id"},
                                   {"name": "price", "kind": "numeric", "log": True}]},
          "ingest": {"eval_start": "2020-01-20", "test_start": None}}
NOTES = {"dataset.labels": "views, then carts", "dataset.features.price": "heavy-tailed",
         "dataset.events.columns.ts": "100% parse", "ingest": "the split"}


def test_sections_flow_lines_and_notes():
    assert render(CONFIG, NOTES, ["made by hand", ""]) == """\
# made by hand
#
run_dir: runs/x

dataset:
  labels: funnel  # views, then carts
  events:
    columns:
      ts: {type: timestamp, format: '%Y-%m-%d'}  # 100% parse
    time_range: ['2020-01-01', '2020-02-01']
  features:
    - {name: user_id, kind: id}
    # heavy-tailed
    - {name: price, kind: numeric, log: true}

# the split
ingest:
  eval_start: '2020-01-20'
  test_start: null
"""


def test_the_text_loads_back_as_the_mapping():
    assert yaml.safe_load(render(CONFIG, NOTES, [])) == CONFIG
