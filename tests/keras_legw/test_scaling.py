"""The scaling rules as plain functions, against the paper's formulas written
out by hand: their defaults are LEGW's rules, and the unit conversions are
each other's inverse (found by mutation testing: `steps_to_epochs` had no
test, and no test relied on the rules' defaults)."""

import pytest

import keras_legw


def test_the_rules_default_to_legw_sqrt_peak_and_linear_warmup():
    assert keras_legw.scale_learning_rate(0.1, 16.0) == pytest.approx(0.4)
    assert keras_legw.scale_warmup_epochs(0.2, 64.0) == pytest.approx(12.8)


@pytest.mark.parametrize("steps,num_examples,batch_size,epochs", [
    (469, 60000, 128, 469 * 128 / 60000),   # just past MNIST's first epoch
    (184, 60000, 8192, 184 * 8192 / 60000),  # 25.1 epochs at 8192
    (0, 1000, 10, 0.0),
])
def test_steps_to_epochs_is_examples_seen_over_the_epoch(
        steps, num_examples, batch_size, epochs):
    got = keras_legw.steps_to_epochs(steps, num_examples, batch_size)
    assert got == pytest.approx(epochs, rel=1e-12)
    back = keras_legw.epochs_to_steps(got, num_examples, batch_size)
    assert back == pytest.approx(steps, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("call,message", [
    (lambda: keras_legw.scaling.scale_learning_rate(0.1, 0),
     "Argument `k` must be a positive number. Received: k=0"),
    (lambda: keras_legw.scaling.scale_warmup_epochs(0.2, -2.0),
     "Argument `k` must be a positive number. Received: k=-2.0"),
    (lambda: keras_legw.scaling.scale_learning_rate(0.1, 4, "noise"),
     "Argument `noise_scale_ratio` is required with scaling='noise' and only "
     "allowed with it. Received: noise_scale_ratio=None with scaling='noise'"),
    (lambda: keras_legw.scaling.scale_learning_rate(0.1, 4, "noise", 0.0),
     "Argument `noise_scale_ratio` must be a positive number. Received: "
     "noise_scale_ratio=0.0"),
])
def test_scaling_errors_whole(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


def test_whole_steps_ignores_noise_below_a_millionth_of_a_step():
    """Rounded to 6 decimals before the ceiling: 4e-7 of a step is float
    noise (600 steps), 2e-6 is a real part of a step (601)."""
    assert keras_legw.scaling.whole_steps(600.0000004, 1, 1) == 600
    assert keras_legw.scaling.whole_steps(600.000002, 1, 1) == 601
