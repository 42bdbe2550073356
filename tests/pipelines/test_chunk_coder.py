"""The score job's batch elements are sized by their arrays, not pickled, and still encode whole."""

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.ml.inference.base import PredictionResult

from pipelines.chunk_coder import ChunkCoder, estimated_bytes
from pipelines.pair_columns import ColumnChunk
from pipelines.pair_join import BuildRawExamples, ExampleChunk, pairs_table
from shoprec.core import generated_shop


def _chunk():
    columns = {"user_age": np.array([30.0, 41.0, 30.0], np.float32),   # 12 bytes
               "item_id": np.array(["i1", "i22", "i333"], dtype=object),  # 3 x mean length 3
               "hist__lengths": np.array([2, 0, 1], np.int64)}          # 24 bytes
    return ColumnChunk(pa.array(["u1", "u2", "u1"]), pa.array(["i1", "i22", "i333"]), columns)


def test_a_chunk_is_sized_by_its_arrays_and_encodes_whole():
    chunk = _chunk()
    ids = chunk.user_ids.nbytes + chunk.item_ids.nbytes
    # Strings by the mean length of the first values (all three: 3 x 3).
    assert estimated_bytes(chunk) == ids + 12 + 3 * (2 + 3 + 4) // 3 + 24
    result = PredictionResult([chunk], {"p_click": np.zeros((3, 1), np.float32)})
    assert estimated_bytes(result) == estimated_bytes(chunk) + 12
    coder = ChunkCoder()
    assert coder.estimate_size(result) == estimated_bytes(result)
    back = coder.decode(coder.encode(result))
    assert back.example[0].user_ids.equals(chunk.user_ids)
    assert {k: v.tolist() for k, v in back.example[0].columns.items()} == {
        k: v.tolist() for k, v in chunk.columns.items()}


def test_the_joins_chunks_get_the_coder():
    registry = generated_shop.REGISTRY
    for columns, chunk_type in ((True, ColumnChunk), (False, ExampleChunk)):
        p = beam.Pipeline()
        pairs = p | "Pairs" >> beam.Create([pairs_table([("u1", "i1")])])
        joined = pairs | BuildRawExamples(p | "Users" >> beam.Create([]),
                                          p | "Items" >> beam.Create([]), registry,
                                          columns=columns)
        assert joined.examples.element_type is chunk_type
        assert isinstance(beam.coders.registry.get_coder(chunk_type), ChunkCoder)
        # BatchElements' lists of chunks: each chunk sized by the coder.
        batches = joined.examples | beam.BatchElements(max_batch_size=2)
        coder = beam.coders.registry.get_coder(batches.element_type)
        assert isinstance(coder, beam.coders.ListCoder)
        assert isinstance(coder.value_coder(), ChunkCoder)
    # The scored batches, as the score job declares RunInference's output.
    assert isinstance(beam.coders.registry.get_coder(PredictionResult), ChunkCoder)
