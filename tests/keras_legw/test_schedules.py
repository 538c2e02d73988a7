"""LEGW against a NumPy transcription, Keras' own schedules and closed forms."""

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_legw
from tests.conftest import two_cpu_mirrored_strategy
from tests.keras_legw.reference import (AUTOWARMUP_ON_A_BACKEND,
                                        check_autowarmup_on_a_backend,
                                        legw_numpy)

MNIST = dict(base_learning_rate=0.1, base_warmup_epochs=0.2,
             num_examples=60000, total_epochs=25)

CASES = [
    # (base_batch_size, batch_size, extra arguments)
    (128, 128, dict(decay="polynomial")),
    (128, 8192, dict(decay="polynomial")),
    (128, 2048, dict(decay="polynomial", power=1.0, end_learning_rate=0.01)),
    (128, 8192, dict(decay="cosine", end_learning_rate=0.001)),
    (128, 512, dict(decay="constant", scaling="linear")),
    (256, 1024, dict(decay="constant", warmup_scaling="none")),
    (128, 8192, dict(decay="exponential", decay_rate=0.5, decay_epochs=2.0,
                     end_learning_rate=0.003)),
    (64, 32, dict(decay="polynomial", scaling="none")),
    (128, 8192, dict(decay="cosine", base_warmup_epochs=0.0)),
]


def _kwargs(base_batch_size, batch_size, extra):
    return dict(MNIST, base_batch_size=base_batch_size, batch_size=batch_size,
                **extra)


def _probe_steps(schedule):
    """Steps inside the warmup, at its end, in the decay and past the end."""
    w, total = schedule.warmup_steps, schedule.total_steps
    return np.array(sorted({0, 1, w // 3, max(w - 1, 0), w, w + 1,
                            (w + total) // 2, total - 1, total, total + 7,
                            3 * total}))


@pytest.mark.parametrize("base_batch_size,batch_size,extra", CASES)
def test_matches_numpy_reference(base_batch_size, batch_size, extra):
    kwargs = _kwargs(base_batch_size, batch_size, extra)
    schedule = keras_legw.LEGW(**kwargs)
    steps = _probe_steps(schedule)
    got = np.array([float(schedule(s)) for s in steps])
    want = legw_numpy(steps, **kwargs)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("base_batch_size,batch_size,extra", CASES)
def test_attributes(base_batch_size, batch_size, extra):
    kwargs = _kwargs(base_batch_size, batch_size, extra)
    schedule = keras_legw.LEGW(**kwargs)
    k = batch_size / base_batch_size
    factor = {"sqrt": math.sqrt(k), "linear": k, "none": 1.0}[
        extra.get("scaling", "sqrt")]
    warmup = kwargs["base_warmup_epochs"] * (
        k if extra.get("warmup_scaling", "linear") == "linear" else 1.0)
    assert schedule.scale_factor == pytest.approx(k)
    assert schedule.peak_learning_rate == pytest.approx(0.1 * factor)
    assert schedule.warmup_epochs == pytest.approx(warmup)
    assert schedule.warmup_steps == math.ceil(warmup * 60000 / batch_size - 1e-9)
    assert schedule.total_steps == math.ceil(25 * 60000 / batch_size - 1e-9)
    for name in ("peak_learning_rate", "warmup_epochs", "warmup_steps",
                 "total_steps"):
        with pytest.raises(AttributeError):
            setattr(schedule, name, 1.0)


def test_warmup_steps_do_not_depend_on_batch():
    """LEGW's rule: warmup epochs grow with k, so warmup steps stay fixed."""
    steps = {keras_legw.LEGW(**_kwargs(128, b, {})).warmup_steps
             for b in (128, 256, 512, 1024, 2048, 4096, 8192)}
    assert steps == {94}  # ceil(0.2 * 60000 / 128) = ceil(93.75)


def test_peak_is_reached_at_end_of_warmup():
    schedule = keras_legw.LEGW(**_kwargs(100, 400, {}))  # 0.8 epochs = 120 steps
    assert schedule.warmup_steps == 120
    assert float(schedule(120)) == pytest.approx(0.2, rel=1e-6)
    assert float(schedule(60)) == pytest.approx(0.1, rel=1e-6)


def test_polynomial_equals_keras_polynomial_decay_without_warmup():
    """k = 1 and no warmup: LEGW is Keras' PolynomialDecay over total_steps."""
    kwargs = dict(MNIST, base_batch_size=100, batch_size=100,
                  base_warmup_epochs=0.0, power=1.5, end_learning_rate=0.002)
    schedule = keras_legw.LEGW(**kwargs)
    keras_schedule = keras.optimizers.schedules.PolynomialDecay(
        0.1, decay_steps=schedule.total_steps, end_learning_rate=0.002,
        power=1.5)
    for step in (0, 1, 777, 7500, 14999, 15000, 20000):
        assert float(schedule(step)) == pytest.approx(
            float(keras_schedule(step)), rel=1e-5)


def test_cosine_equals_keras_cosine_decay_with_warmup():
    """Keras' CosineDecay warms up linearly in steps, then decays to alpha*P."""
    schedule = keras_legw.LEGW(
        **dict(MNIST, base_batch_size=100, batch_size=400, decay="cosine",
               end_learning_rate=0.02))  # W = 0.8 epochs = 120 steps
    keras_schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=schedule.total_steps - schedule.warmup_steps,
        alpha=0.02 / 0.2, warmup_target=0.2,
        warmup_steps=schedule.warmup_steps)
    for step in (0, 1, 60, 119, 120, 121, 1000, 3749, 3750):
        assert float(schedule(step)) == pytest.approx(
            float(keras_schedule(step)), rel=1e-5, abs=1e-7)


def test_config_round_trip():
    kwargs = _kwargs(128, 4096, CASES[7][2])
    schedule = keras_legw.LEGW(**kwargs, name="mine")
    config = schedule.get_config()
    assert {k: config[k] for k in kwargs} == kwargs
    assert config["name"] == "mine"
    restored = keras_legw.LEGW.from_config(config)
    steps = _probe_steps(schedule)
    np.testing.assert_array_equal([float(restored(s)) for s in steps],
                                  [float(schedule(s)) for s in steps])
    serialized = keras.optimizers.schedules.serialize(schedule)
    assert keras.optimizers.schedules.deserialize(serialized).get_config() == config


def test_keras_file_loads_after_plain_import(tmp_path):
    """A .keras file with SGD(LEGW) loads in a fresh process after only
    `import keras_legw`, with the same rate at the same step."""
    schedule = keras_legw.LEGW(**_kwargs(128, 8192, {}))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(learning_rate=schedule), "mse")
    model.fit(np.ones((16, 4)), np.ones((16, 1)), batch_size=8, epochs=3,
              verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    expected = float(schedule(model.optimizer.iterations))
    script = textwrap.dedent(f"""
        import keras, keras_legw
        model = keras.saving.load_model({str(path)!r})
        optimizer = model.optimizer
        assert type(optimizer.learning_rate).__name__ != "LEGW"
        schedule = optimizer._learning_rate
        assert isinstance(schedule, keras_legw.LEGW), type(schedule)
        print(int(optimizer.iterations), repr(float(schedule(optimizer.iterations))))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True,
                         text=True, check=True).stdout.split()
    assert int(out[-2]) == 6
    assert float(out[-1]) == expected


def test_xla_matches_eager():
    schedule = keras_legw.LEGW(**_kwargs(128, 2048, CASES[3][2]))
    compiled = tf.function(schedule, jit_compile=True)
    for step in _probe_steps(schedule):
        eager = float(schedule(tf.constant(step, tf.int64)))
        assert float(compiled(tf.constant(step, tf.int64))) == pytest.approx(
            eager, rel=1e-6, abs=1e-9)


def test_mirrored_strategy_two_replicas_trains_with_schedule():
    """Under MirroredStrategy the optimizer's step drives the schedule: after
    n steps both replicas' weights moved by the same LEGW-scaled amount."""
    strategy = two_cpu_mirrored_strategy()
    assert strategy.num_replicas_in_sync == 2
    schedule = keras_legw.LEGW(base_learning_rate=0.1, base_batch_size=2,
                               batch_size=8, base_warmup_epochs=0.5,
                               num_examples=64, total_epochs=4,
                               decay="constant")
    with strategy.scope():
        model = keras.Sequential([keras.Input((1,)),
                                  keras.layers.Dense(1, use_bias=False,
                                                     kernel_initializer="zeros")])
        model.compile(keras.optimizers.SGD(learning_rate=schedule), "mse")
    # Loss mean((w*x - y)^2) with x = 1, y = 0 -> gradient 2w; w starts at 0
    # and the target is 1, so d/dw = 2(w - 1).
    x = np.ones((64, 1), np.float32)
    model.fit(x, x, batch_size=8, epochs=1, shuffle=False, verbose=0)
    w = 0.0
    for step in range(8):
        w -= float(legw_numpy(step, base_learning_rate=0.1, base_batch_size=2,
                              batch_size=8, base_warmup_epochs=0.5,
                              num_examples=64, total_epochs=4,
                              decay="constant")) * 2 * (w - 1)
    assert int(model.optimizer.iterations.numpy()) == 8
    assert float(model.get_weights()[0][0, 0]) == pytest.approx(w, rel=1e-5)


BAD_ARGUMENTS = [
    (dict(base_learning_rate=0.0), "base_learning_rate"),
    (dict(base_learning_rate=-0.1), "base_learning_rate"),
    (dict(base_batch_size=0), "base_batch_size"),
    (dict(batch_size=-8), "batch_size"),
    (dict(num_examples=0), "num_examples"),
    (dict(total_epochs=0), "total_epochs"),
    (dict(base_warmup_epochs=-1.0), "base_warmup_epochs"),
    (dict(base_warmup_epochs=0.5), "base_warmup_epochs"),  # 0.5 * 64 >= 25
    (dict(decay="linear"), "decay"),
    (dict(scaling="square"), "scaling"),
    (dict(warmup_scaling="sqrt"), "warmup_scaling"),
    (dict(power=0.0), "power"),
    (dict(end_learning_rate=-1.0), "end_learning_rate"),
    (dict(end_learning_rate=5.0), "end_learning_rate"),  # above the peak 0.8
    (dict(decay="constant", end_learning_rate=0.1), "end_learning_rate"),
    (dict(decay="exponential"), "decay_rate"),
    (dict(decay="exponential", decay_rate=1.5, decay_epochs=1), "decay_rate"),
    (dict(decay="exponential", decay_rate=0.5, decay_epochs=0), "decay_epochs"),
    (dict(decay_rate=0.5), "decay_rate"),
    (dict(decay="piecewise"), "decay"),  # removed: a plain Keras schedule
    (dict(base_learning_rate=float("nan")), "base_learning_rate"),
    (dict(batch_size="8192"), "batch_size"),
    (dict(scaling="noise"), "noise_scale"),
    (dict(scaling="noise", noise_scale=0.0), "noise_scale"),
    (dict(scaling="noise", noise_scale=-5.0), "noise_scale"),
    (dict(noise_scale=1000.0), "noise_scale"),  # with scaling="sqrt"
]


@pytest.mark.parametrize("overrides,argument", BAD_ARGUMENTS)
def test_bad_arguments_raise_value_error_naming_them(overrides, argument):
    kwargs = dict(_kwargs(128, 8192, {}), **overrides)
    with pytest.raises(ValueError, match=f"`{argument}`") as info:
        keras_legw.LEGW(**kwargs)
    assert "Received:" in str(info.value)
    assert f"{argument}=" in str(info.value)


@pytest.mark.skipif(os.environ.get("LEGW_SKIP_TORCH") == "1",
                    reason="LEGW_SKIP_TORCH=1 (make test TORCH=)")
def test_schedule_lars_and_autowarmup_run_on_the_pytorch_backend():
    """Written in keras.ops only: the same values on Keras' torch backend,
    LARS and AutoWarmup train there in fit (a fresh process, since the
    backend is fixed at import)."""
    assert importlib.util.find_spec("torch"), (
        "PyTorch is not installed, so the torch-backend test cannot run: "
        "`make test` installs its CPU build; set LEGW_SKIP_TORCH=1 (or run "
        "`make test TORCH=`) to skip it on purpose.")
    kwargs = _kwargs(128, 8192, CASES[3][2])
    script = textwrap.dedent(f"""
        import json, keras, numpy as np, keras_legw
        assert keras.backend.backend() == "torch"
        schedule = keras_legw.LEGW(**{kwargs!r})
        steps = {_probe_steps(keras_legw.LEGW(**kwargs)).tolist()!r}
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile(keras_legw.LARS(schedule, weight_decay=1e-4,
                                      exclude_from_weight_decay=["bias"]),
                      "mse")
        model.fit(np.ones((8, 3)), np.ones((8, 2)), epochs=2, verbose=0)
        rates = [float(schedule(s)) for s in steps]
    """) + AUTOWARMUP_ON_A_BACKEND + "\nprint(json.dumps([rates, auto]))\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True,
                            text=True, env=dict(os.environ,
                                                KERAS_BACKEND="torch"))
    assert result.returncode == 0, result.stderr[-2000:]
    got, auto = json.loads(result.stdout.strip().splitlines()[-1])
    want = legw_numpy(_probe_steps(keras_legw.LEGW(**kwargs)), **kwargs)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)
    check_autowarmup_on_a_backend(auto)


@pytest.mark.parametrize("noise_scale", [50.0, 2000.0, 1e6])
@pytest.mark.parametrize("batch_size", [128, 512, 2048, 8192])
def test_noise_scaling_is_mccandlish_optimal_step_ratio(noise_scale,
                                                        batch_size):
    # McCandlish et al.: eps(B) = eps_max / (1 + B_noise / B); tuned at B0,
    # peak(B) = peak(B0) * eps(B) / eps(B0), written here from that form.
    def eps(b):
        return 1.0 / (1.0 + noise_scale / b)

    schedule = keras_legw.LEGW(**dict(MNIST, base_batch_size=128,
                                      batch_size=batch_size, scaling="noise",
                                      noise_scale=noise_scale,
                                      decay="constant"))
    expected = MNIST["base_learning_rate"] * eps(batch_size) / eps(128)
    assert schedule.peak_learning_rate == pytest.approx(expected, rel=1e-12)
    # The warmup is LEGW's whatever the peak rule.
    assert schedule.warmup_epochs == pytest.approx(0.2 * batch_size / 128)
    # Held after the warmup (constant decay), through the Keras call.
    rate = float(schedule(schedule.warmup_steps))
    assert rate == pytest.approx(expected, rel=1e-3)


def test_noise_scaling_limits_are_linear_and_constant():
    # Far below B_noise the rule is Goyal's linear one; far above, the rate
    # stops growing (it tends to eta0 * (1 + B_noise / B0)).
    k = 4.0
    linear = keras_legw.scale_learning_rate(0.1, k, "noise",
                                            noise_scale_ratio=1e9)
    assert linear == pytest.approx(0.1 * k, rel=1e-6)
    flat = keras_legw.scale_learning_rate(0.1, 1e9, "noise",
                                          noise_scale_ratio=2.0)
    assert flat == pytest.approx(0.1 * 3.0, rel=1e-6)


def test_noise_scale_round_trips_through_config():
    schedule = keras_legw.LEGW(**dict(MNIST, base_batch_size=128,
                                      batch_size=2048, scaling="noise",
                                      noise_scale=1500.0))
    config = schedule.get_config()
    assert config["noise_scale"] == 1500.0
    clone = keras_legw.LEGW.from_config(config)
    assert clone.peak_learning_rate == schedule.peak_learning_rate


@pytest.mark.parametrize("epochs,num_examples,batch_size,want", [
    (1, 60000, 128, 469),     # 468.75 rounds up
    (3, 100, 1, 300),
    (0.1 * 3, 1000, 100, 3),  # 3.0000000000000004 is float noise: 3, not 4
    (0.1 * 7, 1000, 100, 7),  # 7.000000000000001: 7, not 8
    (1, 101, 100, 2),
])
def test_whole_steps_round_up_once_ignoring_float_noise(epochs, num_examples,
                                                        batch_size, want):
    assert keras_legw.whole_steps(epochs, num_examples, batch_size) == want
    schedule = keras_legw.LEGW(0.1, batch_size, batch_size, 0.0, num_examples,
                               epochs)
    assert schedule.total_steps == want


def test_an_end_rate_equal_to_the_peak_is_a_flat_decay():
    """end_learning_rate may equal the scaled peak (0.1 * sqrt(4) = 0.2):
    the rate then stays at the peak after the warmup."""
    schedule = keras_legw.LEGW(**_kwargs(128, 512, dict(
        decay="polynomial", end_learning_rate=0.2)))
    after = np.arange(schedule.warmup_steps, schedule.total_steps + 2, 97)
    np.testing.assert_allclose([float(schedule(s)) for s in after], 0.2,
                               rtol=1e-6)


WHOLE_MESSAGES = [
    (dict(base_warmup_epochs=25.0, batch_size=128),
     "Argument `base_warmup_epochs` must give a warmup shorter than "
     "`total_epochs`; with warmup_scaling='linear' and k=1 the warmup is 25 "
     "epochs. Use a smaller `base_warmup_epochs`, more `total_epochs` or a "
     "smaller `batch_size`. Received: base_warmup_epochs=25.0, "
     "total_epochs=25"),
    (dict(scaling="noise"),
     "Argument `noise_scale` is required with scaling='noise' and only "
     "allowed with it. Received: noise_scale=None with scaling='noise'"),
    (dict(end_learning_rate=5.0),
     "Argument `end_learning_rate` must not exceed the peak learning rate "
     "0.8. Received: end_learning_rate=5.0"),
    (dict(decay="constant", end_learning_rate=0.1),
     "Argument `end_learning_rate` is not used by decay='constant'; leave it "
     "at 0. Received: end_learning_rate=0.1"),
    (dict(decay="exponential", decay_rate=0.0, decay_epochs=1),
     "Argument `decay_rate` must be a positive number. Received: "
     "decay_rate=0.0"),
    (dict(decay="exponential", decay_rate=1.5, decay_epochs=1),
     "Argument `decay_rate` must be in (0, 1]. Received: decay_rate=1.5"),
]


@pytest.mark.parametrize("overrides,message", WHOLE_MESSAGES)
def test_error_messages_whole(overrides, message):
    """The whole message: what was wrong, what to do, what was received
    (a warmup equal to the budget is refused too)."""
    kwargs = dict(_kwargs(128, 8192, {}), **overrides)
    with pytest.raises(ValueError) as info:
        keras_legw.LEGW(**kwargs)
    assert str(info.value) == message


def test_limits_that_are_allowed_and_the_default_name():
    """A decay rate of exactly 1 (no decay) is allowed; the name is LEGW."""
    schedule = keras_legw.LEGW(**_kwargs(128, 512, dict(
        decay="exponential", decay_rate=1.0, decay_epochs=1.0)))
    assert float(schedule(schedule.total_steps)) == pytest.approx(0.2)
    assert schedule.name == "LEGW" and schedule.get_config()["name"] == "LEGW"
