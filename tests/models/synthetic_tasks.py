"""Synthetic trainer tasks that more than one test module uses."""

import keras
import numpy as np
import tensorflow as tf

from models.common import input_pipeline, trainer

DIM, NOISE_STD = 10, 0.5


def least_squares_task(delta, n, seed=0, eval_examples=256):
    """Loss 0.5 (w.x - y)^2 over `n` examples, x ~ N(0, I), y ~ N(0, s^2)
    (so w* = 0), the weights starting at `delta`; the data in the stream of
    passes of `input_pipeline` (any batch, any start)."""
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(n, DIM)).astype(np.float32))
    y = tf.constant((NOISE_STD * rng.normal(size=n)).astype(np.float32))

    def train_dataset(context, batch_size, epoch, offset):
        return input_pipeline.replica_index_batches(
            n, batch_size, seed, epoch * n + offset, context).map(
                lambda i: (tf.gather(x, i), tf.gather(y, i)))

    def eval_dataset(context):
        return input_pipeline.padded_eval_batches(
            eval_examples, eval_examples, context).map(
                lambda i, m: (tf.gather(x, i), tf.gather(y, i), m))

    return trainer.Task(
        build_model=lambda: keras.Sequential([
            keras.Input((DIM,)),
            keras.layers.Dense(1, use_bias=False, kernel_initializer=(
                keras.initializers.Constant(delta.reshape(DIM, 1))))]),
        per_example_loss=lambda labels, out: 0.5 * tf.square(
            out[:, 0] - labels),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        eval_sums=lambda model, b: {"count": tf.reduce_sum(b[2])},
        eval_metrics=lambda sums: {"count": sums["count"]})
