"""AttachOne: the key's one value handed to each of its many, read from paged groups too."""

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from pipelines import keyed


def test_each_value_gets_its_keys_one_value_from_a_paged_group():
    """On the runner's state-backed iterables (Dataflow pages a large group so): a hot
    key's 3,000 values each get its one value, wherever in the group it lies; a key
    without one gets None; a key with no values yields nothing."""
    table = [("hot", "H"), ("cold", "C"), ("idle", "I")]
    many = [("hot", k) for k in range(3000)] + [("cold", -1), ("nobody", -2)]
    with beam.Pipeline(runner=FnApiRunner(use_state_iterables=True)) as p:
        out = (p | "Many" >> beam.Create(many)
               | keyed.AttachOne(p | "Table" >> beam.Create(table)))
        assert_that(out, equal_to([(k, "H") for k in range(3000)] + [(-1, "C"), (-2, None)]))
