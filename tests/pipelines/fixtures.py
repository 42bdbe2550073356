"""Files the ingest tests need from earlier stages, written as those stages write them."""

import os

import tensorflow as tf

from pipelines import examples
from shoprec.io.outputs import write_success


def write_embeddings(prefix, rows):
    """An embed-stage table: one gzip shard of (item_id, embedding, has_image) rows.

    ``prefix`` is ``<run>/embed/items/embeddings``; the embed stage's success
    marker is written in ``<run>/embed``, as a finished embed stage leaves it.
    """
    tf.io.gfile.makedirs(os.path.dirname(prefix))
    write_success(os.path.dirname(os.path.dirname(prefix)), "embed")
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(prefix + "-00000-of-00001.tfrecord.gz", options) as writer:
        for item_id, vector, has_image in rows:
            writer.write(examples.encode_embedding(
                {"item_id": item_id, "embedding": vector, "has_image": has_image}))
