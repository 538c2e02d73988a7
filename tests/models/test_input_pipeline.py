"""The resumable example order and its split over replicas."""

import numpy as np
import tensorflow as tf

from models.common import input_pipeline


def _batches(dataset, n):
    return [b.numpy() for b in dataset.take(n)]


def test_each_pass_is_a_permutation_and_passes_differ():
    batches = _batches(input_pipeline.global_index_batches(12, 4, 7, 0), 6)
    first, second = np.concatenate(batches[:3]), np.concatenate(batches[3:])
    assert sorted(first) == list(range(12)) == sorted(second)
    assert first.tolist() != second.tolist()


def test_resume_at_any_step_sees_the_same_batches():
    full = _batches(input_pipeline.global_index_batches(10, 4, 3, 0), 9)
    for start in (1, 2, 5, 7):  # 10 is not a multiple of 4: passes straddle
        resumed = _batches(
            input_pipeline.global_index_batches(10, 4, 3, 4 * start),
            9 - start)
        np.testing.assert_array_equal(np.stack(resumed), np.stack(full[start:]))


def test_replica_batches_split_the_global_batch_in_order():
    context = tf.distribute.InputContext(num_input_pipelines=2,
                                         input_pipeline_id=1,
                                         num_replicas_in_sync=4)
    glob = _batches(input_pipeline.global_index_batches(32, 8, 0, 0), 2)
    local = _batches(
        input_pipeline.replica_index_batches(32, 8, 0, 0, context), 4)
    # Pipeline 1 of 2 owns replicas 2 and 3: the second half of each batch.
    np.testing.assert_array_equal(local[0], glob[0][4:6])
    np.testing.assert_array_equal(local[1], glob[0][6:8])
    np.testing.assert_array_equal(local[2], glob[1][4:6])


def test_padded_eval_covers_every_example_once():
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(2, pipeline, 4)
        for index, mask in input_pipeline.padded_eval_batches(11, 8, context):
            assert index.shape == (2,)
            seen += index.numpy()[mask.numpy() == 1].tolist()
    assert sorted(seen) == list(range(11))
