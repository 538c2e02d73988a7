"""Independent references for the tests: a NumPy transcription of the LEGW
formulas (paper and issue text, float64, none of the library's code) and the
closed-form noise scale of Gaussian least squares."""

import math

import numpy as np


def legw_numpy(step, *, base_learning_rate, base_batch_size, batch_size,
               base_warmup_epochs, num_examples, total_epochs,
               decay="polynomial", power=2.0, end_learning_rate=0.0,
               scaling="sqrt", warmup_scaling="linear", decay_rate=None,
               decay_epochs=None, boundaries=None, multipliers=None):
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
    elif decay == "piecewise":
        index = np.searchsorted(np.asarray(boundaries), e, side="right")
        after = peak * np.asarray(multipliers)[index]
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
