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
from tests.keras_legw.reference import (AUTOWARMUP_ON_A_BACKEND,
                                        check_autowarmup_on_a_backend,
                                        legw_numpy)

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
    out = _run_on_jax(textwrap.dedent(f"""
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

    """) + AUTOWARMUP_ON_A_BACKEND + "\nout['auto'] = auto\n")
    want = legw_numpy(np.array(steps), **KWARGS)
    np.testing.assert_allclose(out["rates"], want, rtol=2e-5, atol=1e-7)
    assert out["lars_steps"] == 12
    assert out["lars_rate"] == out["lars_want"]
    check_autowarmup_on_a_backend(out["auto"])


def test_the_reference_is_the_library_on_this_backend():
    # Guard against a reference that drifted: the same values in-process.
    schedule = keras_legw.LEGW(**KWARGS)
    steps = np.array([0, 94, 184])
    np.testing.assert_allclose(np.asarray(schedule(steps)),
                               legw_numpy(steps, **KWARGS), rtol=2e-5)
