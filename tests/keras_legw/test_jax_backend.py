"""The library on Keras' JAX backend (a fresh process: the backend is fixed
at import): LEGW's values against the NumPy transcription, LEGW and LARS
inside `model.fit`, and AutoWarmup driving the rate of a JAX `fit`."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

import keras_legw
from tests.keras_legw.reference import legw_numpy

KWARGS = dict(base_learning_rate=0.1, base_batch_size=128, batch_size=8192,
              base_warmup_epochs=0.2, num_examples=60000, total_epochs=25,
              decay="cosine", end_learning_rate=0.001)


def _run_on_jax(body):
    script = textwrap.dedent("""
        import json, keras, numpy as np, keras_legw
        assert keras.backend.backend() == "jax", keras.backend.backend()
        out = {}
    """) + textwrap.dedent(body) + "\nprint('OUT' + json.dumps(out))\n"
    result = subprocess.run([sys.executable, "-c", script], text=True,
                            capture_output=True,
                            env=dict(os.environ, KERAS_BACKEND="jax"))
    assert result.returncode == 0, result.stderr[-3000:]
    line = [l for l in result.stdout.splitlines() if l.startswith("OUT")][-1]
    return json.loads(line[3:])


def test_legw_lars_and_autowarmup_on_jax():
    steps = [0, 1, 47, 94, 95, 150, 184, 200]
    out = _run_on_jax(f"""
        schedule = keras_legw.LEGW(**{KWARGS!r})
        out["rates"] = [float(schedule(s)) for s in {steps!r}]

        # LEGW + LARS in fit: the optimizer ends at the schedule's value.
        keras.utils.set_random_seed(0)
        x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        fit_schedule = keras_legw.LEGW(0.1, 8, 16, 0.5, 64, 3)
        model.compile(keras_legw.LARS(fit_schedule, weight_decay=1e-4,
                                      exclude_from_weight_decay=["bias"]),
                      "mse")
        model.fit(x, x[:, :2], batch_size=16, epochs=3, verbose=0)
        out["lars_steps"] = int(model.optimizer.iterations)
        out["lars_rate"] = float(model.optimizer.learning_rate)
        out["lars_want"] = float(fit_schedule(int(model.optimizer.iterations)))

        # AutoWarmup: least squares whose SGD diverges above a rate of ~1.
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(512, 4)).astype("float32")
        y = (x @ np.array([1.0, -2.0, 0.5, 3.0])
             + 0.1 * rng.normal(size=512)).astype("float32")[:, None]
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.1), "mse")
        warmup = keras_legw.AutoWarmup(640, min_learning_rate=1e-4,
                                       max_learning_rate=100.0,
                                       check_every_steps=8)
        history = model.fit(x, y, batch_size=32, epochs=40, verbose=0,
                            callbacks=[warmup])
        out["switch"] = warmup.warmup_steps
        out["peak"] = warmup.peak_learning_rate
        out["final_rate"] = float(model.optimizer.learning_rate)
        out["first_loss"] = history.history["loss"][0]
        out["last_loss"] = history.history["loss"][-1]
        custom = keras_legw.AutoWarmupSchedule(100, max_learning_rate=0.1)
        custom.build()
        out["custom"] = [float(custom(t)) for t in (0, 25, 50, 75, 100)]
    """)
    want = legw_numpy(np.array(steps), **KWARGS)
    np.testing.assert_allclose(out["rates"], want, rtol=2e-5, atol=1e-7)
    assert out["lars_steps"] == 12
    assert out["lars_rate"] == out["lars_want"]
    # The warmup ended before its cap (320) near the divergence point, the
    # rate it set reached the JAX train step (the loss fell from ~15 to the
    # noise floor), and it ends at 0.
    assert out["switch"] < 320 and out["peak"] < 2.0
    assert out["final_rate"] == 0.0
    assert out["last_loss"] < 0.02 < out["first_loss"]
    # The schedule form: 1e-5 * 1e4 ** (t / 50) to the cap, then a cosine.
    np.testing.assert_allclose(out["custom"], [1e-5, 1e-3, 0.1, 0.05, 0.0],
                               rtol=1e-5, atol=1e-9)


def test_the_reference_is_the_library_on_this_backend():
    # Guard against a reference that drifted: the same values in-process.
    schedule = keras_legw.LEGW(**KWARGS)
    steps = np.array([0, 94, 184])
    np.testing.assert_allclose(np.asarray(schedule(steps)),
                               legw_numpy(steps, **KWARGS), rtol=2e-5)
