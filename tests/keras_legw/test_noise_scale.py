"""Gradient noise scale: formulas, errors and recovery of a closed form."""

import math

import keras
import numpy as np
import pytest

import keras_legw
from tests.keras_legw.reference import (least_squares_noise_scale,
                                        measure_noise_scale_numpy)


@pytest.mark.parametrize("grad_sq, trace, b_small, b_big", [
    (1.0, 10.0, 8, 64), (0.02, 300.0, 1, 2), (5.0, 0.0, 32, 33),
    (0.5, 7.5, 100, 10000)])
def test_estimates_invert_the_expected_norms(grad_sq, trace, b_small, b_big):
    """E|G_B|^2 = |G|^2 + tr(Sigma) / B; the estimates undo exactly that."""
    small = grad_sq + trace / b_small
    big = grad_sq + trace / b_big
    got_grad_sq, got_trace = keras_legw.noise_scale_estimates(
        small, big, b_small, b_big)
    assert got_grad_sq == pytest.approx(grad_sq, rel=1e-9, abs=1e-12)
    assert got_trace == pytest.approx(trace, rel=1e-9, abs=1e-9)


def test_estimates_broadcast_over_arrays():
    small, big = np.array([2.0, 3.0]), np.array([1.0, 1.5])
    grad_sq, trace = keras_legw.noise_scale_estimates(small, big, 10, 40)
    np.testing.assert_allclose(grad_sq, (40 * big - 10 * small) / 30)
    np.testing.assert_allclose(trace, (small - big) / (1 / 10 - 1 / 40))


@pytest.mark.parametrize("b_small, b_big, message", [
    (8, 8, "^Arguments `small_batch_size` and `big_batch_size` must satisfy "
     "0 < small_batch_size < big_batch_size. Received: small_batch_size=8, "
     "big_batch_size=8$"),
    (16, 8, "must satisfy 0 < small_batch_size < big_batch_size. Received: "
     "small_batch_size=16, big_batch_size=8$"),
    (0, 8, "must satisfy 0 < small_batch_size"),
    (-1, 8, "^Argument `small_batch_size` must be a non-negative number. "
     "Received: small_batch_size=-1$"),
    (8, -1, "^Argument `big_batch_size` must be a non-negative number. "
     "Received: big_batch_size=-1$"),
    (8, float("nan"), "^Argument `big_batch_size` must be a non-negative"),
])
def test_batch_sizes_must_be_increasing_and_positive(b_small, b_big, message):
    with pytest.raises(ValueError, match=message):
        keras_legw.noise_scale_estimates(1.0, 0.5, b_small, b_big)


@pytest.mark.parametrize("decay", [1.0, -0.1, 2])
def test_decay_must_be_in_unit_interval(decay):
    with pytest.raises(ValueError, match="`decay`"):
        keras_legw.NoiseScaleEstimator(decay=decay)


def _ema_numpy(values, decay):
    """Bias-corrected exponential moving average of `values`, oldest first:
    sum_i (1 - d) d^(n-1-i) x_i / (1 - d^n)."""
    n = len(values)
    weights = (1 - decay) * decay ** np.arange(n - 1, -1, -1.0)
    return float(np.dot(weights, values) / (1 - decay ** n))


@pytest.mark.parametrize("decay", [0.0, 0.3, 0.9])
def test_ratio_of_bias_corrected_averages_against_numpy(decay):
    estimator = keras_legw.NoiseScaleEstimator(decay=decay)
    assert math.isnan(estimator.noise_scale)
    pairs = [(3.0, 1.0), (2.0, 1.8), (5.0, 1.5), (4.0, 1.2)]
    grad_sqs, traces = [], []
    for small, big in pairs:
        estimator.update(small, big, 4, 16)
        g, t = keras_legw.noise_scale_estimates(small, big, 4, 16)
        grad_sqs.append(g)
        traces.append(t)
        assert estimator.grad_sq_norm == pytest.approx(
            _ema_numpy(grad_sqs, decay), rel=1e-12)
        assert estimator.trace_covariance == pytest.approx(
            _ema_numpy(traces, decay), rel=1e-12)
    # The ratio of the averages, not the average of per-step ratios.
    assert estimator.noise_scale == pytest.approx(
        _ema_numpy(traces, decay) / _ema_numpy(grad_sqs, decay), rel=1e-12)
    assert estimator.num_updates == len(pairs)


def test_first_update_is_unbiased():
    # Without the bias correction the first average would be (1 - d) times
    # the step's estimate.
    estimator = keras_legw.NoiseScaleEstimator(decay=0.99)
    estimator.update(3.0, 1.0, 4, 16)
    g, t = keras_legw.noise_scale_estimates(3.0, 1.0, 4, 16)
    assert estimator.grad_sq_norm == pytest.approx(g, rel=1e-12)
    assert estimator.trace_covariance == pytest.approx(t, rel=1e-12)


def test_recovers_least_squares_noise_scale_from_replica_gradients():
    rng = np.random.default_rng(0)
    dim, noise_std, replicas, per_replica = 10, 0.5, 8, 16
    delta = rng.normal(size=dim)
    expected = least_squares_noise_scale(dim, delta @ delta, noise_std)
    estimator = keras_legw.NoiseScaleEstimator(decay=0.999)
    for _ in range(4000):
        x = rng.normal(size=(replicas, per_replica, dim))
        residual = x @ delta - noise_std * rng.normal(size=(replicas, per_replica))
        grads = (residual[..., None] * x).mean(axis=1)   # per replica
        small = np.mean(np.sum(grads ** 2, axis=1))
        big = np.sum(grads.mean(axis=0) ** 2)
        estimator.update(small, big, per_replica, replicas * per_replica)
    assert estimator.noise_scale == pytest.approx(expected, rel=0.1)


def test_averaging_recovers_a_noise_scale_far_above_the_big_batch():
    # B_noise ~ 330 against a big batch of 64: one step's |G|^2 estimate has
    # a standard deviation of several |G|^2, so only the long average (0.999,
    # about 1000 steps) lands within 20%; weights swapped (d <-> 1 - d)
    # would keep about one step.
    rng = np.random.default_rng(1)
    dim, noise_std, replicas, per_replica = 8, 1.0, 4, 16
    delta = np.full(dim, 0.055)
    expected = least_squares_noise_scale(dim, delta @ delta, noise_std)
    assert 300 < expected < 360
    estimator = keras_legw.NoiseScaleEstimator(decay=0.999)
    for _ in range(6000):
        x = rng.normal(size=(replicas, per_replica, dim))
        residual = x @ delta - noise_std * rng.normal(size=(replicas, per_replica))
        grads = (residual[..., None] * x).mean(axis=1)
        estimator.update(np.mean(np.sum(grads ** 2, axis=1)),
                         np.sum(grads.mean(axis=0) ** 2),
                         per_replica, replicas * per_replica)
    assert estimator.noise_scale == pytest.approx(expected, rel=0.2)


def test_noise_scale_is_nan_while_averaged_gradient_norm_is_not_positive():
    estimator = keras_legw.NoiseScaleEstimator()
    estimator.update(5.0, 0.5, 4, 16)  # |G|^2 estimate (8 - 20) / 12 < 0
    assert estimator.grad_sq_norm < 0
    assert math.isnan(estimator.noise_scale)


def _least_squares_model(delta, dim):
    """Dense(1) without bias at w = w* + delta, w* = 1, MSE loss."""
    model = keras.Sequential([keras.Input((dim,)),
                              keras.layers.Dense(1, use_bias=False)])
    model.layers[0].kernel.assign((np.ones(dim) + delta)[:, None])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    return model


def test_measure_noise_scale_of_a_compiled_model_matches_the_closed_form():
    """Gaussian least squares with known noise: B_simple = ((d + 1)|delta|^2
    + d s^2) / |delta|^2 (the MSE's factor 2 cancels in the ratio); within
    15% with 400 draws of 1024 against 64."""
    rng = np.random.default_rng(0)
    dim, noise_std = 8, 0.5
    x = rng.normal(size=(20000, dim)).astype("float32")
    y = (x @ np.ones(dim) + noise_std * rng.normal(size=20000)
         ).astype("float32")[:, None]
    delta = np.full(dim, 0.2)
    expected = least_squares_noise_scale(dim, delta @ delta, noise_std)
    model = _least_squares_model(delta, dim)
    before = model.get_weights()
    result = keras_legw.measure_noise_scale(model, x, y, 64, 1024,
                                            num_estimates=400)
    assert result.noise_scale == pytest.approx(expected, rel=0.15)
    assert result.grad_sq_norm == pytest.approx(4 * delta @ delta, rel=0.15)
    np.testing.assert_array_equal(model.get_weights()[0], before[0])


def test_noise_scale_callback_logs_it_during_fit():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2048, 4)).astype("float32")
    y = (x @ np.ones(4) + rng.normal(size=2048)).astype("float32")[:, None]
    model = _least_squares_model(np.zeros(4), 4)
    callback = keras_legw.NoiseScaleCallback(x, y, 16, 256, every_n_steps=4,
                                             num_estimates=2)
    history = model.fit(x, y, batch_size=256, epochs=2, verbose=0,
                        callbacks=[callback])
    assert [step for step, _ in callback.history] == [4, 8, 12, 16]
    assert history.history["noise_scale"] == [
        callback.history[1][1].noise_scale, callback.history[3][1].noise_scale]


def test_noise_scale_callback_measures_with_successive_seeds():
    """At a learning rate of 0 the weights never move, so the callback's
    i-th measurement (at steps 3, 6, 9 of 8-step epochs) is
    `measure_noise_scale` at those weights with seed `seed + i`; batch logs
    carry it at those steps only, and an epoch that ends before the first
    measurement logs none."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2048, 4)).astype("float32")
    y = (x @ np.ones(4) + rng.normal(size=2048)).astype("float32")[:, None]
    model = _least_squares_model(np.full(4, 0.3), 4)
    model.compile(keras.optimizers.SGD(0.0), "mse")
    callback = keras_legw.NoiseScaleCallback(x, y, 16, 256, every_n_steps=9,
                                             num_estimates=2, seed=5)
    seen = []
    logger = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs:
                                            seen.append(logs.get("noise_scale")))
    history = model.fit(x, y, batch_size=256, epochs=2, verbose=0,
                        callbacks=[callback, logger])
    expected = [keras_legw.measure_noise_scale(
        model, x, y, 16, 256, num_estimates=2, seed=5 + i).noise_scale
        for i in range(1)]
    assert [step for step, _ in callback.history] == [9]
    assert callback.history[0][1].noise_scale == pytest.approx(expected[0])
    assert seen == [None] * 8 + [expected[0]] + [None] * 7
    assert history.history["noise_scale"] == [expected[0]]  # epoch 2 only
    callback = keras_legw.NoiseScaleCallback(x, y, 16, 256, every_n_steps=3,
                                             num_estimates=2, seed=5)
    model.fit(x, y, batch_size=256, epochs=1, verbose=0, callbacks=[callback])
    assert [r.noise_scale for _, r in callback.history] == pytest.approx([
        keras_legw.measure_noise_scale(model, x, y, 16, 256, num_estimates=2,
                                       seed=5 + i).noise_scale
        for i in range(2)])
    assert callback.history[0][1].noise_scale != pytest.approx(
        callback.history[1][1].noise_scale)


def test_noise_scale_result_is_the_ratio_only_for_a_positive_gradient():
    """B_simple = tr(Sigma) / |G|^2 for any |G|^2 > 0 (here 0.5: below 1);
    NaN when the unbiased |G|^2 estimate is 0 or negative."""
    assert keras_legw.NoiseScaleResult(0.5, 2.0).noise_scale == 4.0
    assert math.isnan(keras_legw.NoiseScaleResult(0.0, 2.0).noise_scale)
    assert math.isnan(keras_legw.NoiseScaleResult(-0.5, 2.0).noise_scale)


def test_gradients_are_taken_in_inference_mode_with_the_models_own_loss():
    """The model runs with training=False and its `compute_loss` gets the
    inputs and training=False, as `evaluate` would: dropout, batch-norm
    updates and training-only losses stay out of the measurement (twice
    for the check that the loss is the batch's mean, then twice for the
    one draw)."""
    seen = []

    class Spy(keras.layers.Layer):
        def call(self, inputs, training=None):
            seen.append(("layer", training))
            return inputs

    class SpyModel(keras.Sequential):
        def compute_loss(self, x=None, y=None, y_pred=None,
                         sample_weight=None, training=True):
            seen.append(("loss", x is not None, training))
            return super().compute_loss(x=x, y=y, y_pred=y_pred,
                                        training=training)

    model = SpyModel([keras.Input((2,)), Spy(),
                      keras.layers.Dense(1, use_bias=False)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = np.ones((8, 2), "float32"), np.zeros((8, 1), "float32")
    seen.clear()  # the symbolic call that built the model
    keras_legw.measure_noise_scale(model, x, y, 2, 4, num_estimates=1)
    assert seen == [("layer", False), ("loss", True, False)] * 4


def test_batches_at_their_limits_and_the_defaults():
    """A big batch of all the examples is allowed; a small batch equal to the
    big one is refused when the callback is made, not at its first
    measurement; the defaults are 10 estimates from seed 0."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 2)).astype("float32")
    y = rng.normal(size=(64, 1)).astype("float32")
    model = _least_squares_model(np.zeros(2), 2)
    whole = keras_legw.measure_noise_scale(model, x, y, 8, 64)
    explicit = keras_legw.measure_noise_scale(model, x, y, 8, 64,
                                              num_estimates=10, seed=0)
    assert whole.noise_scale == explicit.noise_scale
    for other in (dict(num_estimates=11), dict(seed=1)):
        assert keras_legw.measure_noise_scale(
            model, x, y, 8, 64, **other).noise_scale != whole.noise_scale
    callback = keras_legw.NoiseScaleCallback(x, y, 8, 64, every_n_steps=1)
    assert (callback.num_estimates, callback.seed) == (10, 0)
    with pytest.raises(ValueError, match="^Argument `small_batch_size` must "
                       "be smaller than `big_batch_size`. Received: "
                       "small_batch_size=64, big_batch_size=64$"):
        keras_legw.NoiseScaleCallback(x, y, 64, 64, every_n_steps=1)


def test_a_backend_without_gradients_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "numpy")
    model = _least_squares_model(np.zeros(2), 2)
    with pytest.raises(ValueError, match=r"^measure_noise_scale runs on the "
                       r"TensorFlow, JAX and PyTorch backends; this is "
                       r"numpy.$"):
        keras_legw.measure_noise_scale(model, np.ones((8, 2)),
                                       np.ones((8, 1)), 2, 4)


def test_measure_noise_scale_matches_a_numpy_transcription():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(96, 3)).astype("float32")
    y = (x @ np.array([1.0, -1.0, 2.0]) + rng.normal(size=96)).astype(
        "float32")[:, None]
    model = _least_squares_model(np.array([0.2, -0.4, 0.1]), 3)
    w = model.layers[0].kernel.numpy()
    for small, big in ((4, 32), (16, 96)):
        got = keras_legw.measure_noise_scale(model, x, y, small, big,
                                             num_estimates=3, seed=7)
        grad_sq, trace = measure_noise_scale_numpy(x, y, w, small, big, 3, 7)
        assert got.grad_sq_norm == pytest.approx(grad_sq, rel=1e-4)
        assert got.trace_covariance == pytest.approx(trace, rel=1e-4)
        assert got.noise_scale == pytest.approx(trace / grad_sq, rel=2e-4)


def test_uncompiled_models_and_unmatched_data_are_refused():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    x, y = np.ones((8, 2), "float32"), np.ones((8, 1), "float32")
    for not_compiled in (model, object()):
        with pytest.raises(ValueError, match=r"^Argument `model` must be "
                           r"compiled with its loss \(model.compile\(loss="
                           r"...\)\) before measuring.$"):
            keras_legw.measure_noise_scale(not_compiled, x, y, 2, 4)
    with pytest.raises(ValueError, match="^Arguments `x` and `y` must hold "
                       "the same number of examples. Received: 8 and 7$"):
        keras_legw.measure_noise_scale(_least_squares_model(np.zeros(2), 2),
                                       x, y[:7], 2, 4)


@pytest.mark.parametrize("small,big,num,argument", [
    (64, 64, 10, "small_batch_size"),
    (0, 64, 10, "small_batch_size"),
    (8, 5000, 10, "big_batch_size"),  # more than the 100 examples
    (8, 0, 10, "big_batch_size"),
    (8, 64, 0, "num_estimates"),
])
def test_measure_noise_scale_bad_arguments(small, big, num, argument):
    model = _least_squares_model(np.zeros(2), 2)
    x, y = np.ones((100, 2), "float32"), np.ones((100, 1), "float32")
    with pytest.raises(ValueError, match=f"`{argument}`"):
        keras_legw.measure_noise_scale(model, x, y, small, big,
                                       num_estimates=num)
    with pytest.raises(ValueError, match="`every_n_steps`"):
        keras_legw.NoiseScaleCallback(x, y, 8, 64, every_n_steps=0)


@pytest.mark.parametrize("reduction, kind", [(None, "per example"),
                                             ("sum", "summed")])
def test_a_loss_that_is_not_the_batchs_mean_is_one_clear_error(reduction,
                                                               kind):
    """Its gradient norms grow with the batch (tr(Sigma) comes out < 0)."""
    model = _least_squares_model(np.zeros(2), 2)
    model.compile(keras.optimizers.SGD(0.1),
                  keras.losses.MeanSquaredError(reduction=reduction))
    with pytest.raises(ValueError, match=r"^measure_noise_scale needs the "
                       r"model's compiled loss to be the mean over the batch"
                       rf".*\({kind}\?\). Compile with a loss whose "
                       r"reduction is 'sum_over_batch_size'"):
        keras_legw.measure_noise_scale(model, np.ones((8, 2)),
                                       np.zeros((8, 1)), 2, 4)
