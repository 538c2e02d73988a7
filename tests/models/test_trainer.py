"""The trainer on small synthetic tasks: NaN handling and the noise scale."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.common import checkpoints, preemption, trainer
from models.common import flags as common_flags
from models.common.data import DataError
from tests.conftest import two_cpu_mirrored_strategy
from tests.models.synthetic_tasks import (DIM, NOISE_STD, least_squares_task,
                                         regularized_linear_task)
from tests.keras_legw.reference import least_squares_noise_scale


def test_non_finite_loss_stops_with_clear_message(tmp_path):
    """A loss that turns NaN stops training with a message; the checkpoint of
    the epoch before stays the latest."""

    def batches(context, batch_size=4, epoch=0, offset=0):
        # Labels 0 in the first epoch (steps 0-3), then 1: log(1 - 2y) = NaN.
        start_step = (epoch * 16 + offset) // 4
        return tf.data.Dataset.range(start_step, 1000).map(
            lambda i: (tf.ones([4, 1]),
                       tf.fill([4, 1], tf.cast(i >= 4, tf.float32))))

    task = trainer.Task(
        build_model=lambda: keras.Sequential([keras.Input((1,)),
                                              keras.layers.Dense(1)]),
        per_example_loss=lambda y, out: (tf.math.log(1.0 - 2.0 * y[:, 0])
                                         + 0.0 * out[:, 0]),
        train_dataset=batches,
        eval_dataset=lambda context: batches(context).take(1).map(
            lambda x, y: (x, y[:, 0], tf.ones([4]))),
        eval_sums=trainer.accuracy_eval,
        eval_metrics=lambda sums: {"accuracy": sums["correct"] / sums["count"]})
    with pytest.raises(trainer.NonFiniteLossError,
                       match=r"training loss became nan in steps 4-8.*"
                             r"ckpt-4.*--base_learning_rate"):
        trainer.train(task, strategy=tf.distribute.get_strategy(),
                      make_optimizer=lambda: keras.optimizers.SGD(0.1),
                      global_batch_size=4, num_examples=16, total_steps=12,
                      model_dir=str(tmp_path), verbose=0)


NUM_EXAMPLES = 100_000


def _least_squares_task(delta, seed=0):
    """The weights frozen at `delta` (the optimizer's rate is negligible)."""
    return least_squares_task(delta, NUM_EXAMPLES, seed)


@pytest.mark.parametrize("strategy_name,clipnorm", [
    ("mirrored", None), ("one_replica", None), ("mirrored", 1e-3)])
def test_noise_scale_recovers_least_squares_closed_form(tmp_path,
                                                        strategy_name,
                                                        clipnorm):
    """Two replicas (per-replica vs all-reduced gradients) or one replica
    (two half batches): B_simple within 10% of the closed form. Measured
    before clipping: a clipping norm far below the gradient's changes
    nothing."""
    delta = np.random.default_rng(1).normal(size=DIM).astype(np.float32)
    expected = least_squares_noise_scale(DIM, float(delta @ delta), NOISE_STD)
    strategy = (two_cpu_mirrored_strategy()
        if strategy_name == "mirrored" else tf.distribute.get_strategy())
    results, model = trainer.train(
        _least_squares_task(delta), strategy=strategy,
        make_optimizer=lambda: keras.optimizers.SGD(1e-12),
        global_batch_size=128, num_examples=NUM_EXAMPLES, total_steps=1500,
        model_dir=str(tmp_path), steps_per_loop=500, noise_scale=True,
        noise_scale_decay=0.998, global_clipnorm=clipnorm, verbose=0)
    np.testing.assert_allclose(model.get_weights()[0][:, 0], delta, rtol=1e-5)
    assert results["noise_scale"] == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize("strategy_name", ["default", "mirrored"])
def test_xla_compiled_step_matches_the_plain_one(tmp_path, strategy_name):
    """--jit_compile compiles the forward and backward pass with XLA (the
    optimizer update and its all-reduce stay outside): same weights."""
    delta = np.random.default_rng(2).normal(size=DIM).astype(np.float32)
    weights = []
    for jit_compile in (True, False):
        strategy = (two_cpu_mirrored_strategy()
            if strategy_name == "mirrored" else tf.distribute.get_strategy())
        _, model = trainer.train(
            _least_squares_task(delta), strategy=strategy,
            make_optimizer=lambda: keras.optimizers.SGD(0.05),
            global_batch_size=128, num_examples=NUM_EXAMPLES, total_steps=20,
            model_dir=str(tmp_path / f"{jit_compile}"), steps_per_loop=10,
            jit_compile=jit_compile, verbose=0)
        weights.append(model.get_weights()[0])
    assert not np.allclose(weights[0][:, 0], delta)  # it trained
    np.testing.assert_allclose(weights[0], weights[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("noise_scale", [False, True])
def test_clipping_takes_the_norm_of_the_gradient_as_applied(tmp_path,
                                                            noise_scale):
    """Row 0 of an embedding looked up twice, each lookup's gradient
    [1.5, 2]: the applied gradient is their sum [3, 4], norm 5, so clipping
    to 1 and one SGD step at rate 1 moves the row by -[0.6, 0.8].
    (tf.clip_by_global_norm takes the norm of the two lookups' values,
    3.54, and would move it by -[0.85, 1.13].) With the noise scale on one
    replica each lookup is a half batch of its own, and the two halves'
    gradients (IndexedSlices) add up to the same step."""
    def batches(context, *start):
        return tf.data.Dataset.from_tensors(
            (tf.zeros([2, 1], tf.int32), tf.zeros([2]))).repeat()

    task = trainer.Task(
        build_model=lambda: keras.Sequential([
            keras.Input((1,), dtype="int32"),
            keras.layers.Embedding(4, 2, embeddings_initializer="zeros"),
            keras.layers.Flatten()]),
        per_example_loss=lambda y, out: tf.reduce_sum(
            out * tf.constant([3.0, 4.0]), axis=-1) + 0.0 * y,
        train_dataset=batches,
        eval_dataset=lambda context: batches(context).take(1).map(
            lambda x, y: (x, y, tf.ones([2]))),
        eval_sums=lambda model, b: {"count": tf.reduce_sum(b[2])},
        eval_metrics=lambda sums: {"count": sums["count"]})
    _, model = trainer.train(
        task, strategy=tf.distribute.get_strategy(),
        make_optimizer=lambda: keras.optimizers.SGD(1.0),
        global_batch_size=2, num_examples=2, total_steps=1,
        model_dir=str(tmp_path), global_clipnorm=1.0,
        noise_scale=noise_scale, verbose=0)
    np.testing.assert_allclose(model.get_weights()[0][0], [-0.6, -0.8],
                               rtol=1e-6)
    np.testing.assert_array_equal(model.get_weights()[0][1:], 0.0)


@pytest.mark.parametrize("strategy_name,pieces", [
    ("one_replica", 1), ("one_replica", 4), ("mirrored", 1), ("mirrored", 2)])
def test_micro_batches_add_the_regularization_once(tmp_path, strategy_name,
                                                   pieces):
    """A kernel regularizer (model.losses) with gradient accumulation: one
    SGD step equals the NumPy update of the whole batch's mean loss plus the
    regularization term once, w1 = w0 - lr (X^T (X w0 - y) / B + 2 l w0),
    whatever the micro-batches and replicas (a term added in every
    micro-batch would count it `pieces` times)."""
    rng = np.random.default_rng(5)
    x_all = rng.normal(size=(8, 3)).astype(np.float32)
    y_all = rng.normal(size=8).astype(np.float32)
    w0 = np.array([0.5, -1.0, 2.0], np.float32)
    l2, rate = 0.3, 0.1

    def batches(context, *start):
        # One input pipeline hands its batches to the replicas in turn: the
        # k-th replica gets the k-th share of the 8 rows.
        per = context.get_per_replica_batch_size(8)
        return tf.data.Dataset.from_tensor_slices(
            (x_all.reshape(-1, per, 3), y_all.reshape(-1, per))).repeat()

    task = regularized_linear_task(x_all, y_all, w0, l2, batches)
    strategy = (two_cpu_mirrored_strategy() if strategy_name == "mirrored"
                else tf.distribute.get_strategy())
    _, model = trainer.train(
        task, strategy=strategy, make_optimizer=lambda: keras.optimizers.SGD(
            rate), global_batch_size=8, num_examples=8, total_steps=1,
        model_dir=str(tmp_path), gradient_accumulation_steps=pieces,
        verbose=0)
    x, y, w = (a.astype(np.float64) for a in (x_all, y_all, w0))
    want = w - rate * (x.T @ (x @ w - y) / 8 + 2 * l2 * w)
    np.testing.assert_allclose(model.get_weights()[0][:, 0], want,
                               rtol=1e-5)


@pytest.mark.parametrize("error, status", [
    (ValueError("bad"), 2), (DataError("missing"), 2),
    (trainer.NonFiniteLossError("nan"), 3),
    (checkpoints.CheckpointWriteError("full"), 1),
    (preemption.Preempted(15, 4, "ckpt-4"), 143)])
def test_each_error_ends_a_script_with_its_status_and_one_line(
        error, status, capsys):
    def fail():
        raise error

    with pytest.raises(SystemExit) as stop:
        common_flags.exit_on_error(fail)
    assert stop.value.code == status == common_flags.exit_status(error)
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(KeyError):           # not a run's error: raised
        common_flags.exit_on_error(lambda: {}["x"])
