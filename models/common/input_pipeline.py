"""Deterministic, resumable example order for in-memory datasets.

The training stream is an endless sequence of passes over the data, pass `p`
a permutation of the example indices seeded by `(seed, p)`. A run reads it
in order, `B` items per optimizer step (at a fixed batch, step `s` reads
items `[s * B, (s + 1) * B)`), so every pass is each example once whatever
the batch of each step, and a run that resumes at item `x` (the examples it
has seen) sees exactly the batches an uninterrupted run would. A global batch is split into equal per-replica
batches in replica order, and each input pipeline (one per worker) yields the
batches of its own replicas, so every strategy trains on the same global
batches.
"""

import tensorflow as tf

_MAX_PASSES = 1 << 40


def global_index_batches(num_examples, global_batch_size, seed,
                         start_example):
    """A dataset of int64 index vectors, one global batch per element,
    starting at item `start_example` of the stream."""
    first_pass, offset = divmod(int(start_example), int(num_examples))

    def one_pass(pass_index):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(num_examples, dtype=tf.int64),
            seed=tf.stack([tf.cast(seed, tf.int64), pass_index]))
        return tf.data.Dataset.from_tensor_slices(order)

    return (tf.data.Dataset.range(first_pass, _MAX_PASSES)
            .flat_map(one_pass)
            .skip(offset)
            .batch(global_batch_size, drop_remainder=True))


def replica_index_batches(num_examples, global_batch_size, seed,
                          start_example, input_context):
    """Per-replica index batches for this input pipeline: each global batch
    split into `num_replicas_in_sync` equal slices, this pipeline's slices in
    replica order."""
    replicas = input_context.num_replicas_in_sync
    per_replica = input_context.get_per_replica_batch_size(global_batch_size)
    local = replicas // input_context.num_input_pipelines
    first = input_context.input_pipeline_id * local
    return (global_index_batches(num_examples, global_batch_size, seed,
                                 start_example)
            .map(lambda idx: tf.reshape(idx, [replicas, per_replica])
                 [first:first + local])
            .unbatch())


def padded_eval_batches(num_examples, global_batch_size, input_context):
    """Per-replica (indices, mask) batches covering `num_examples` once,
    padded to whole global batches (static shapes for XLA / TPU); padding has
    mask 0 and index 0."""
    replicas = input_context.num_replicas_in_sync
    per_replica = input_context.get_per_replica_batch_size(global_batch_size)
    local = replicas // input_context.num_input_pipelines
    first = input_context.input_pipeline_id * local
    num_batches = -(-num_examples // global_batch_size)
    total = num_batches * global_batch_size
    index = tf.range(total, dtype=tf.int64)
    mask = tf.cast(index < num_examples, tf.float32)
    index = tf.where(index < num_examples, index, 0)
    shape = [num_batches, replicas, per_replica]
    index = tf.reshape(index, shape)[:, first:first + local]
    mask = tf.reshape(mask, shape)[:, first:first + local]
    return tf.data.Dataset.from_tensor_slices(
        (tf.reshape(index, [-1, per_replica]),
         tf.reshape(mask, [-1, per_replica])))


def stream_rows(ids, num_rows, num_steps):
    """The Zaremba et al. / TF PTB tutorial layout of a token stream: `ids`
    cut into `num_rows` rows read left to right, `num_steps` tokens at a
    time. Returns (rows [num_rows, length], steps per pass)."""
    length = len(ids) // num_rows
    steps = (length - 1) // num_steps
    if steps < 1:
        raise ValueError(
            f"{len(ids)} tokens are too few for {num_rows} rows of "
            f"{num_steps} + 1 tokens; use a smaller batch or --num_steps.")
    return ids[:num_rows * length].reshape(num_rows, length), steps


def sequence_batches(ids, global_rows, num_steps, start_step, input_context,
                     repeat=True):
    """Per-replica ((tokens, reset), targets) batches of a token stream.

    Global step `s` reads columns `[i T, (i + 1) T)` of every row, `i = s mod
    steps_per_pass`, targets shifted by one; replica `r` owns rows
    `[r b, (r + 1) b)` for the whole run, so a state carried from step to
    step on each replica continues its own rows. `reset` is 1 at the first
    step of each pass (where the reference zeroes the state), shape [b, 1].
    """
    rows, steps_per_pass = stream_rows(ids, global_rows, num_steps)
    replicas = input_context.num_replicas_in_sync
    per_replica = input_context.get_per_replica_batch_size(global_rows)
    local = replicas // input_context.num_input_pipelines
    first = input_context.input_pipeline_id * local
    mine = tf.constant(rows[first * per_replica:(first + local) * per_replica]
                       .reshape(local, per_replica, -1))

    def batches_of_step(step):
        i = step % steps_per_pass
        window = mine[:, :, i * num_steps:(i + 1) * num_steps + 1]
        reset = tf.fill([local, per_replica, 1],
                        tf.cast(tf.equal(i, 0), tf.float32))
        return tf.data.Dataset.from_tensor_slices(
            ((window[:, :, :-1], reset), window[:, :, 1:]))

    end = _MAX_PASSES if repeat else steps_per_pass
    return tf.data.Dataset.range(start_step, end).flat_map(batches_of_step)
