"""The exclusion rule's pairs: positives of the label in the window before the cut-off."""

from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import examples
from pipelines.exclusions import ReadExclusions
from shoprec.core import generated_shop

R = generated_shop.REGISTRY
DAY = 86400


def _write(path, rows):
    import tensorflow as tf

    # Only the four fields the rule reads (the timestamp is example metadata).
    names = [R.user_key, R.item_key, "conversion"]
    with tf.io.TFRecordWriter(str(path), tf.io.TFRecordOptions(compression_type="GZIP")) as w:
        for user, item, ts, conversion in rows:
            w.write(examples.encode({R.user_key: user, R.item_key: item, "conversion": conversion,
                                     R.timestamp_key: ts}, names, R))


def test_positives_in_the_window_before_the_cut_off(tmp_path):
    cut = 100 * DAY
    _write(tmp_path / "train.tfrecord.gz", [
        ("u1", "i1", cut - 1, 1),              # in the window
        ("u1", "i2", cut - 2 * DAY - 1, 1),    # before the 2-day window
        ("u2", "i1", cut - DAY, 0),            # not a conversion
        ("u2", "i3", cut - 2 * DAY, 1),        # the window's first second
        ("u3", "i4", cut, 1),                  # at the cut-off: not before it
    ])
    with TestPipeline() as p:
        pairs = p | ReadExclusions([str(tmp_path / "*.tfrecord.gz")], R, "conversion",
                                   2 * DAY, cut)
        assert_that(pairs, equal_to([("u1", "i1"), ("u2", "i3")]))
