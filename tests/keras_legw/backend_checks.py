"""Checks that run on whichever Keras backend this process has: in-process
on TensorFlow (the suite's backend), in a fresh process on JAX and PyTorch
(`python -m tests.keras_legw.backend_checks NAME`, with KERAS_BACKEND set).
Each returns plain numbers for the test to compare with the references in
`tests.keras_legw.reference`; none of them asserts."""

import json
import sys
import tempfile

import keras
import numpy as np

import keras_legw

# Least squares, 240 examples: every batch of the ramps divides them, and
# every batch splits over two devices.
NUM_EXAMPLES, DIM = 240, 4
RAMP = "0:8,1:24,2:80"
RATE = dict(base_learning_rate=0.05, base_batch_size=8, start_batch_size=8,
            base_warmup_epochs=0.5, total_epochs=4)
EPOCHS = 4


def least_squares_data(seed=0, n=NUM_EXAMPLES, dim=DIM, noise_std=0.5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype("float32")
    y = (x @ np.ones(dim) + noise_std * rng.normal(size=n)
         ).astype("float32")[:, None]
    return x, y


def least_squares_model(delta, dim=DIM, learning_rate=0.1):
    """Dense(1) without bias at w = 1 + delta, MSE loss, SGD."""
    model = keras.Sequential([keras.Input((dim,)),
                              keras.layers.Dense(1, use_bias=False)])
    model.layers[0].kernel.assign((np.ones(dim) + delta)[:, None])
    model.compile(keras.optimizers.SGD(learning_rate), "mse")
    return model


def noise_scale():
    """measure_noise_scale on Gaussian least squares (closed form) and on
    given weights (transcription), and NoiseScaleCallback in fit."""
    x, y = least_squares_data(0, n=20000, dim=8)
    model = least_squares_model(np.full(8, 0.2), dim=8)
    closed = keras_legw.measure_noise_scale(model, x, y, 64, 1024,
                                            num_estimates=200)
    x, y = least_squares_data(4, n=96, dim=3)
    delta = np.array([0.2, -0.4, 0.1])
    exact = keras_legw.measure_noise_scale(least_squares_model(delta, 3),
                                           x, y, 4, 32, num_estimates=3,
                                           seed=7)
    x, y = least_squares_data(1, n=2048)
    model = least_squares_model(np.zeros(DIM))
    callback = keras_legw.NoiseScaleCallback(x, y, 16, 256, every_n_steps=4,
                                             num_estimates=2)
    history = model.fit(x, y, batch_size=256, epochs=2, verbose=0,
                        callbacks=[callback])
    return dict(closed=[closed.noise_scale, closed.grad_sq_norm],
                exact=[exact.grad_sq_norm, exact.trace_covariance],
                callback_steps=[s for s, _ in callback.history],
                callback_logged=history.history["noise_scale"],
                callback_measured=[r.noise_scale for _, r in
                                   callback.history])


class StepRecorder(keras.callbacks.Callback):
    """The optimizer's rate and the data set's batch before each step."""

    def __init__(self, dataset):
        super().__init__()
        self.dataset, self.steps = dataset, []

    def on_train_batch_begin(self, batch, logs=None):
        if batch < self.dataset.num_batches:
            self.steps.append((float(self.model.optimizer.learning_rate),
                               self.dataset.batch_size))


class PlantedCrash(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("planted crash")


def make_schedule(kind):
    if kind == "ramp":
        return keras_legw.BatchRamp(RAMP, batch_multiple=2)
    return keras_legw.NoiseBatchSchedule(8, 80, batch_multiple=2, window=1)


def growing_fit(kind, backup_dir, crash_after_epoch=None):
    """One growing-batch fit of least squares; returns its steps' (rate,
    batch), History, final weights and step count, or None for a run that
    hit the planted crash."""
    keras.utils.set_random_seed(0)
    x, y = least_squares_data(0)
    data = keras_legw.GrowingBatchDataset(x, y, make_schedule(kind), seed=3)
    model = least_squares_model(np.full(DIM, 0.5))
    recorder = StepRecorder(data)
    callbacks = [keras_legw.GrowingBatch(
                     data, keras_legw.GrowingBatchRate(**RATE),
                     backup_dir=backup_dir),
                 keras.callbacks.BackupAndRestore(backup_dir), recorder]
    if crash_after_epoch is not None:
        callbacks.append(PlantedCrash(crash_after_epoch))
    try:
        history = model.fit(data, epochs=EPOCHS, verbose=0, shuffle=False,
                            callbacks=callbacks)
    except RuntimeError as error:
        if "planted crash" not in str(error):
            raise
        return None
    return dict(steps=recorder.steps,
                history={k: [float(v) for v in values]
                         for k, values in history.history.items()},
                weights=model.get_weights()[0].ravel().tolist(),
                iterations=int(model.optimizer.iterations))


def growing_batch(kind="ramp"):
    """An uninterrupted run, and one crashed after epoch 1 then resumed."""
    with tempfile.TemporaryDirectory() as whole, \
            tempfile.TemporaryDirectory() as crashed:
        uninterrupted = growing_fit(kind, whole)
        assert growing_fit(kind, crashed, crash_after_epoch=1) is None
        resumed = growing_fit(kind, crashed)
    return dict(uninterrupted=uninterrupted, resumed=resumed)


def data_parallel():
    """The ramp under Keras' DataParallel over every JAX device."""
    import jax
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=jax.devices()))
    with tempfile.TemporaryDirectory() as backup:
        out = growing_fit("ramp", backup)
    out["devices"] = len(jax.devices())
    return out


CHECKS = dict(noise_scale=noise_scale, growing_ramp=lambda: growing_batch(
    "ramp"), growing_noise=lambda: growing_batch("noise"),
    data_parallel=data_parallel)


if __name__ == "__main__":
    # One process runs several checks (a backend's start costs seconds).
    print("OUT" + json.dumps({name: CHECKS[name]() for name in sys.argv[1:]}))
