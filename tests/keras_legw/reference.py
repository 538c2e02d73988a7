"""Independent references for the tests: a NumPy transcription of the LEGW
formulas (paper and issue text, float64, none of the library's code) and the
closed-form noise scale of Gaussian least squares."""

import math

import numpy as np

from keras_legw.noise_scale import noise_scale_estimates


def legw_numpy(step, *, base_learning_rate, base_batch_size, batch_size,
               base_warmup_epochs, num_examples, total_epochs,
               decay="polynomial", power=2.0, end_learning_rate=0.0,
               scaling="sqrt", warmup_scaling="linear", decay_rate=None,
               decay_epochs=None):
    k = batch_size / base_batch_size
    peak = base_learning_rate * {"sqrt": math.sqrt(k), "linear": k,
                                 "none": 1.0}[scaling]
    warmup = base_warmup_epochs * (k if warmup_scaling == "linear" else 1.0)
    epoch = np.asarray(step, dtype=np.float64) * batch_size / num_examples
    e = np.minimum(epoch, total_epochs)
    t = np.clip((e - warmup) / (total_epochs - warmup), 0.0, 1.0)
    L = end_learning_rate
    if decay == "constant":
        after = np.full_like(e, peak)
    elif decay == "polynomial":
        after = L + (peak - L) * (1.0 - t) ** power
    elif decay == "cosine":
        after = L + (peak - L) * 0.5 * (1.0 + np.cos(np.pi * t))
    elif decay == "exponential":
        after = L + (peak - L) * decay_rate ** (
            np.maximum(e - warmup, 0.0) / decay_epochs)
    else:
        raise AssertionError(decay)
    if warmup == 0:
        return after
    return np.where(epoch < warmup, peak * epoch / warmup, after)


def least_squares_noise_scale(dim, delta_sq_norm, noise_std):
    """Closed form for loss 0.5 (w.x - y)^2, x ~ N(0, I_d),
    y = w*.x + N(0, s^2), at w = w* + delta: G = delta and
    tr(Sigma) = (d + 1) |delta|^2 + d s^2."""
    return ((dim + 1) * delta_sq_norm + dim * noise_std ** 2) / delta_sq_norm


# Python run in a fresh process on any Keras backend (with `keras`, `np` and
# `keras_legw` imported): AutoWarmup in `fit` on least squares whose SGD
# diverges above a rate of about 1, and AutoWarmupSchedule's closed form.
# Leaves its numbers in `auto`, for `check_autowarmup_on_a_backend`.
AUTOWARMUP_ON_A_BACKEND = """
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(512, 4)).astype("float32")
y = (x @ np.array([1.0, -2.0, 0.5, 3.0])
     + 0.1 * rng.normal(size=512)).astype("float32")[:, None]
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile(keras.optimizers.SGD(0.1), "mse")
warmup = keras_legw.AutoWarmup(640, min_learning_rate=1e-4,
                               max_learning_rate=100.0, check_every_steps=8)
history = model.fit(x, y, batch_size=32, epochs=40, verbose=0,
                    callbacks=[warmup])
custom = keras_legw.AutoWarmupSchedule(100, max_learning_rate=0.1)
custom.build()
auto = [warmup.warmup_steps, warmup.peak_learning_rate,
        float(model.optimizer.learning_rate), history.history["loss"][0],
        history.history["loss"][-1],
        [float(custom(t)) for t in (0, 25, 50, 75, 100)]]
"""


def check_autowarmup_on_a_backend(auto):
    """The warmup ended before its cap (320) below the divergence, the rate
    it set reached the backend's train step (the loss fell to the noise
    floor) and ends at 0; the schedule is 1e-5 * 1e4 ** (t / 50) to its cap,
    then a cosine to 0."""
    switch, peak, final_rate, first_loss, last_loss, custom = auto
    assert switch < 320 and peak < 2.0 and final_rate == 0.0
    assert last_loss < 0.02 < first_loss
    np.testing.assert_allclose(custom, [1e-5, 1e-3, 0.1, 0.05, 0.0],
                               rtol=1e-5, atol=1e-9)


def growing_rate_numpy(epoch, batch_size, *, base_learning_rate,
                       base_batch_size, start_batch_size, base_warmup_epochs,
                       total_epochs, rate_rule="sqrt", decay="polynomial",
                       power=2.0, decay_begin_epochs=None):
    """The growing batch's rate, written from the issue's formula in float64:
    the peak rule at the current batch times a warmup (LEGW's, of the start
    batch), a flat part to `decay_begin_epochs` and the decay shape."""
    k = batch_size / base_batch_size
    peak = base_learning_rate * {"sqrt": math.sqrt(k), "linear": k,
                                 "none": 1.0}[rate_rule]
    warmup = base_warmup_epochs * start_batch_size / base_batch_size
    begin = warmup if decay_begin_epochs is None else decay_begin_epochs
    if epoch < warmup:
        return peak * epoch / warmup
    if epoch < begin:
        return peak
    t = (min(epoch, total_epochs) - begin) / (total_epochs - begin)
    return peak * {"constant": 1.0, "polynomial": (1.0 - t) ** power,
                   "cosine": 0.5 * (1.0 + math.cos(math.pi * t))}[decay]


def growing_steps_numpy(batch_per_epoch, num_examples):
    """(epoch reached before the step, batch) for every step of a run whose
    epoch e has batch `batch_per_epoch[e]`: each epoch is one pass, its
    last batch the remainder."""
    steps, seen = [], 0
    for batch in batch_per_epoch:
        left = num_examples
        while left > 0:
            steps.append((seen / num_examples, batch))
            seen += min(batch, left)
            left -= batch
    return steps


def measure_noise_scale_numpy(x, y, w, small, big, num_estimates, seed):
    """measure_noise_scale for MSE least squares, written out in float64:
    gradient 2/n X^T (X w - y); big batches drawn without replacement by
    `default_rng(seed).choice`, the small batch their first `small` rows;
    squared norms averaged over draws, then McCandlish's A.1 estimates.
    Returns (|G|^2, tr(Sigma))."""
    x, y, w = x.astype(np.float64), y.astype(np.float64), w.astype(np.float64)
    rng = np.random.default_rng(seed)

    def sq_norm(rows):
        residual = x[rows] @ w - y[rows]
        return float(np.sum((2.0 / len(rows) * x[rows].T @ residual) ** 2))

    small_sq, big_sq = [], []
    for _ in range(num_estimates):
        rows = rng.choice(len(x), size=big, replace=False)
        big_sq.append(sq_norm(rows))
        small_sq.append(sq_norm(rows[:small]))
    s, b = np.mean(small_sq), np.mean(big_sq)
    return (big * b - small * s) / (big - small), (s - b) / (1 / small - 1 / big)


def spiked_norms(small_sq, big_sq, small_batch, big_batch, factor=10):
    """The squared norms whose estimates are |G|^2 as given and tr(Sigma)
    `factor` times: a `factor`x spike of the noise scale."""
    grad_sq, trace = noise_scale_estimates(
        np.asarray(small_sq), np.asarray(big_sq), small_batch, big_batch)
    return (grad_sq + factor * trace / small_batch,
            grad_sq + factor * trace / big_batch)


def plant_noise_spike(monkeypatch, epoch):
    """Spikes the noise scale of pass `epoch`'s steps 10x where the engine
    receives them (on either path)."""
    from keras_legw.batch_growth import BatchGrowth
    observe = BatchGrowth.observe_steps

    def spiked(self, small_sq, big_sq, small_batch, big_batch, **kwargs):
        if self.epoch == epoch:
            small_sq, big_sq = spiked_norms(small_sq, big_sq,
                                            float(small_batch),
                                            float(big_batch))
        return observe(self, small_sq, big_sq, small_batch, big_batch,
                       **kwargs)

    monkeypatch.setattr(BatchGrowth, "observe_steps", spiked)
