"""An independent NumPy transcription of the LEGW formulas (paper and issue
text), used as the reference in the tests. Written in float64 and without
the library's code."""

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
