"""Synthetic trainer tasks that more than one test module uses."""

import keras
import numpy as np
import tensorflow as tf

from models.common import input_pipeline, trainer

DIM, NOISE_STD = 10, 0.5


def least_squares_task(delta, n, seed=0, eval_examples=256,
                       early_optimum=None):
    """Loss 0.5 (w.x - y)^2 over `n` examples, x ~ N(0, I), y ~ N(0, s^2)
    (so w* = 0), the weights starting at `delta`; the data in the stream of
    passes of `input_pipeline` (any batch that divides `n`, any start).
    With `early_optimum` (a vector a), the steps that end in the first half
    of an epoch see the labels y + a.x instead (their optimum is a)."""
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(n, DIM)).astype(np.float32))
    y = tf.constant((NOISE_STD * rng.normal(size=n)).astype(np.float32))

    def train_dataset(context, batch_size, epoch, offset):
        batches = input_pipeline.replica_index_batches(
            n, batch_size, seed, epoch * n + offset, context)
        if early_optimum is None:
            return batches.map(lambda i: (tf.gather(x, i), tf.gather(y, i)))
        shift = tf.constant(np.reshape(early_optimum, (DIM, 1)), tf.float32)
        # One element per replica of this pipeline per step.
        local = context.num_replicas_in_sync // context.num_input_pipelines

        def early_labels(j, i):
            end = (offset + (j // local + 1) * batch_size - 1) % n + 1
            xs = tf.gather(x, i)
            return xs, tf.gather(y, i) + tf.where(
                end <= n // 2, (xs @ shift)[:, 0], 0.0)

        return batches.enumerate().map(early_labels)

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


def regularized_linear_task(x_all, y_all, w0, l2, train_dataset):
    """0.5 (w.x - y)^2 on the rows of `x_all`, `y_all`, the weights from
    `w0` with an L2 kernel regularizer `l2` (a `model.losses` term), the
    batches from `train_dataset`; evaluation counts the rows."""
    n = len(y_all)
    return trainer.Task(
        build_model=lambda: keras.Sequential([
            keras.Input((x_all.shape[1],)),
            keras.layers.Dense(1, use_bias=False, kernel_initializer=(
                keras.initializers.Constant(w0.reshape(-1, 1))),
                kernel_regularizer=keras.regularizers.L2(l2))]),
        per_example_loss=lambda labels, out: 0.5 * tf.square(
            out[:, 0] - labels),
        train_dataset=train_dataset,
        eval_dataset=lambda context: input_pipeline.padded_eval_batches(
            n, n, context).map(lambda i, m: (tf.gather(x_all, i),
                                             tf.gather(y_all, i), m)),
        eval_sums=lambda model, b: {"count": tf.reduce_sum(b[2])},
        eval_metrics=lambda sums: {"count": sums["count"]})
