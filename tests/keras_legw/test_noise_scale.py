"""Gradient noise scale: formulas, errors and recovery of a closed form."""

import math

import numpy as np
import pytest

import keras_legw
from tests.keras_legw.reference import least_squares_noise_scale


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


@pytest.mark.parametrize("b_small, b_big", [(8, 8), (16, 8), (0, 8), (-1, 8)])
def test_batch_sizes_must_be_increasing_and_positive(b_small, b_big):
    with pytest.raises(ValueError, match="0 < small_batch_size < big_batch_size"
                       "|`small_batch_size` must be a non-negative"):
        keras_legw.noise_scale_estimates(1.0, 0.5, b_small, b_big)


@pytest.mark.parametrize("decay", [1.0, -0.1, 2])
def test_decay_must_be_in_unit_interval(decay):
    with pytest.raises(ValueError, match="`decay`"):
        keras_legw.NoiseScaleEstimator(decay=decay)


def test_ratio_of_averages_not_average_of_ratios():
    estimator = keras_legw.NoiseScaleEstimator(decay=0.5)
    assert math.isnan(estimator.noise_scale)
    pairs = [(3.0, 1.0), (2.0, 1.8), (5.0, 1.5)]
    grad_sqs, traces = [], []
    for small, big in pairs:
        estimator.update(small, big, 4, 16)
        g, t = keras_legw.noise_scale_estimates(small, big, 4, 16)
        grad_sqs.append(g)
        traces.append(t)
    weights = [0.5 ** 2 * 0.5, 0.5 * 0.5, 0.5]  # EMA weights, oldest first
    ema_g = sum(w * g for w, g in zip(weights, grad_sqs)) / sum(weights)
    ema_t = sum(w * t for w, t in zip(weights, traces)) / sum(weights)
    assert estimator.grad_sq_norm == pytest.approx(ema_g)
    assert estimator.trace_covariance == pytest.approx(ema_t)
    assert estimator.noise_scale == pytest.approx(ema_t / ema_g)
    assert estimator.num_updates == 3


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


def test_noise_scale_is_nan_while_averaged_gradient_norm_is_not_positive():
    estimator = keras_legw.NoiseScaleEstimator()
    estimator.update(5.0, 0.5, 4, 16)  # |G|^2 estimate (8 - 20) / 12 < 0
    assert estimator.grad_sq_norm < 0
    assert math.isnan(estimator.noise_scale)
