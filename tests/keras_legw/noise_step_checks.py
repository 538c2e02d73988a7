"""Checks of the measuring train step (`keras_legw.noise_step`) that run on
whichever Keras backend this process has: in-process on TensorFlow, in a
fresh process on JAX and PyTorch (`python -m
tests.keras_legw.noise_step_checks NAME...`, with KERAS_BACKEND set). Each
returns plain numbers for `test_noise_step` to compare with its NumPy
references; none of them asserts."""

import json
import sys

import keras
import numpy as np

from keras_legw.noise_step import MEASURE_LOGS, install_measuring_step
from tests.keras_legw.backend_checks import (least_squares_data,
                                             least_squares_model)

# Before any check runs (keras.utils.set_random_seed imports TensorFlow).
TENSORFLOW_AT_IMPORT = "tensorflow" in sys.modules

# Least squares of 19 rows at batch 7: batches of 7, 7 and 5 rows, halves
# of 3 + 4 and 2 + 3.
ROWS, DIM, BATCH, RATE = 19, 4, 7, 0.1
DELTA = np.array([0.5, -0.3, 0.2, 0.1])


class Measure(keras.callbacks.Callback):
    """Installs the measuring step at the start of fit; records each step's
    four values."""

    def __init__(self):
        super().__init__()
        self.remove, self.logs = None, []

    def on_train_begin(self, logs=None):
        self.remove = install_measuring_step(self.model)

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append([float(logs[k]) for k in MEASURE_LOGS])


def _weights(model):
    return [w.ravel().tolist() for w in model.get_weights()]


def _history(history):
    return {k: [float(v) for v in values]
            for k, values in history.history.items()}


def fit_pair(make_model, data, **fit_kwargs):
    """([measured, plain], the measured model, its Measure callback): the
    same model fit with the measuring step and with Keras' own, each run as
    its final weights, History and (measured) step logs."""
    runs, models, measure = [], [], Measure()
    for callbacks in ([measure], []):
        keras.utils.set_random_seed(0)
        model = make_model()
        history = model.fit(*data, verbose=0, shuffle=False,
                            callbacks=callbacks, **fit_kwargs)
        runs.append(dict(weights=_weights(model), history=_history(history)))
        models.append(model)
    runs[0]["logs"] = measure.logs
    return runs, models[0], measure


def _least_squares_model(jit_compile):
    model = least_squares_model(DELTA, learning_rate=RATE)
    model.compile(model.optimizer, "mse", jit_compile=jit_compile)
    return model


def least_squares(rows=ROWS, batch_size=BATCH, jit_compile="auto"):
    """Least squares (the closed-form check), then `remove()` and a plain
    fit of the same model."""
    x, y = least_squares_data(2, n=rows)
    (measured, plain), model, measure = fit_pair(
        lambda: _least_squares_model(jit_compile), (x, y),
        batch_size=batch_size, epochs=1)
    measure.remove()
    after = model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    return dict(measured=measured, plain=plain,
                after_remove=sorted(after.history),
                own_step_back="train_step" not in vars(model))


def _structured_model():
    """Dict inputs, two outputs with their own losses and metrics."""
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    h = keras.layers.Dense(4, activation="tanh")(
        keras.layers.Concatenate()([a, b]))
    model = keras.Model({"a": a, "b": b}, {
        "u": keras.layers.Dense(1, name="u")(h),
        "v": keras.layers.Dense(2, name="v")(h)})
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  loss={"u": "mse", "v": "mae"},
                  metrics={"u": ["mae"], "v": ["mse"]})
    return model


def structured(rows=20):
    """Nested x and y, sample weights, two losses and metrics, momentum:
    the measured fit against the plain one, at batch 9."""
    rng = np.random.default_rng(5)
    x = {"a": rng.normal(size=(rows, 3)), "b": rng.normal(size=(rows, 2))}
    y = {"u": rng.normal(size=(rows, 1)), "v": rng.normal(size=(rows, 2))}
    weights = rng.uniform(0.5, 2.0, size=rows)
    return fit_pair(_structured_model, (x, y), sample_weight=weights,
                    batch_size=9, epochs=2)[0]


def batch_norm():
    """BatchNormalization(momentum=0.5) on the inputs of one step of 8 rows:
    the moving mean after both halves, and the step's logs."""
    x, y = least_squares_data(3, n=8)
    model = keras.Sequential([
        keras.Input((DIM,)), keras.layers.BatchNormalization(momentum=0.5),
        keras.layers.Dropout(0.2), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    callback = Measure()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False,
              callbacks=[callback])
    _, _, moving_mean, _ = model.layers[0].get_weights()  # gamma, beta, ..
    return dict(x=x.tolist(), moving_mean=moving_mean.tolist(),
                logs=callback.logs)


def embedding_data():
    """14 rows of 3 lookups into 5 embeddings of 2 (duplicates within and
    across the halves of a batch of 7), targets, and the model's weights:
    embeddings (5, 2), dense kernel (6, 1), bias (1,)."""
    rng = np.random.default_rng(8)
    weights = [rng.normal(size=(5, 2)), rng.normal(size=(6, 1)),
               rng.normal(size=1)]
    return (rng.integers(0, 5, size=(14, 3)), rng.normal(size=(14, 1)),
            [w.astype("float32") for w in weights])


def _embedding_model():
    _, _, weights = embedding_data()
    model = keras.Sequential([
        keras.Input((3,), dtype="int32"), keras.layers.Embedding(5, 2),
        keras.layers.Flatten(), keras.layers.Dense(1)])
    model.set_weights(weights)
    model.compile(keras.optimizers.Adam(0.05), "mse")
    return model


def embedding():
    """An embedding (sparse gradients on TensorFlow) with Adam, at batch 7:
    the measured fit against the plain one."""
    x, y, _ = embedding_data()
    return fit_pair(_embedding_model, (x, y), batch_size=7, epochs=1)[0]


def one_row():
    """The error a last batch of one row raises (7 rows at batch 3): a
    ValueError, or TensorFlow's error from the step's assertion."""
    x, y = least_squares_data(0, n=7)
    try:
        least_squares_model(DELTA).fit(x, y, batch_size=3, epochs=1,
                                       verbose=0, callbacks=[Measure()])
    except Exception as error:  # noqa: BLE001 (the test checks the type)
        return [type(error).__name__, str(error)]
    return None


def data_parallel():
    """Least squares under Keras' DataParallel over every JAX device, at
    batch 8 (batches of 8, 8 and 4 rows; each device's share even)."""
    import jax
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=jax.devices()))
    try:
        out = least_squares(rows=20, batch_size=8)
    finally:
        keras.distribution.set_distribution(None)
    out["devices"] = len(jax.devices())
    return out


CHECKS = dict(least_squares=least_squares, structured=structured,
              embedding=embedding, batch_norm=batch_norm, one_row=one_row,
              data_parallel=data_parallel)


if __name__ == "__main__":
    # One process runs several checks (a backend's start costs seconds).
    out = {name: CHECKS[name]() for name in sys.argv[1:]}
    out["tensorflow_at_import"] = TENSORFLOW_AT_IMPORT
    print("OUT" + json.dumps(out))
