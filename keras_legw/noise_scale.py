"""The gradient noise scale: how large a batch is still worth it.

McCandlish, Kaplan, Amodei et al., "An Empirical Model of Large-Batch
Training", arXiv 1812.06162, 2018. Past about the *simple noise scale*

    B_simple = tr(Sigma) / |G|^2

a larger batch buys little: ``G`` is the true gradient, ``Sigma`` the
per-example gradient covariance. Both come from two gradient estimates of
different batch sizes (Appendix A.1): with ``|G_small|^2`` the squared norm of
a gradient averaged over ``B_small`` examples and ``|G_big|^2`` the same over
``B_big > B_small`` examples,

    |G|^2     ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)

are unbiased. Each is noisy, so the paper averages the two over steps
separately and takes the ratio of the averages, never the average of per-step
ratios. Under a data-parallel strategy this is almost free: each replica's
gradient is a small-batch estimate and the all-reduced one a big-batch one.

Example:
    >>> estimator = NoiseScaleEstimator(decay=0.99)
    >>> for small, big in per_step_squared_norms:
    ...     estimator.update(small, big, small_batch_size=64,
    ...                      big_batch_size=512)
    >>> estimator.noise_scale   # compare with the batch size you train at
"""

import math

from keras_legw._validation import check_non_negative


def noise_scale_estimates(small_batch_grad_sq_norm, big_batch_grad_sq_norm,
                          small_batch_size, big_batch_size):
    """Returns the unbiased estimates ``(|G|^2, tr(Sigma))``.

    Args:
        small_batch_grad_sq_norm: ``|G_small|^2``, the squared norm of a
            gradient averaged over `small_batch_size` examples (a float, a
            NumPy array or a tensor; estimates broadcast).
        big_batch_grad_sq_norm: ``|G_big|^2``, the same over `big_batch_size`.
        small_batch_size: ``B_small``, a number > 0.
        big_batch_size: ``B_big``, a number > `small_batch_size`.

    Raises:
        ValueError: unless ``0 < small_batch_size < big_batch_size``.
    """
    check_non_negative("small_batch_size", small_batch_size)
    check_non_negative("big_batch_size", big_batch_size)
    if not 0 < small_batch_size < big_batch_size:
        raise ValueError(
            "Arguments `small_batch_size` and `big_batch_size` must satisfy "
            "0 < small_batch_size < big_batch_size. Received: "
            f"small_batch_size={small_batch_size!r}, "
            f"big_batch_size={big_batch_size!r}")
    b_small, b_big = float(small_batch_size), float(big_batch_size)
    grad_sq_norm = ((b_big * big_batch_grad_sq_norm
                     - b_small * small_batch_grad_sq_norm) / (b_big - b_small))
    trace_covariance = ((small_batch_grad_sq_norm - big_batch_grad_sq_norm)
                        / (1.0 / b_small - 1.0 / b_big))
    return grad_sq_norm, trace_covariance


class NoiseScaleEstimator:
    """Exponential moving averages of ``|G|^2`` and ``tr(Sigma)``, and their
    ratio, the simple noise scale ``B_simple``.

    Host-side and framework-free: call `update` with Python floats after each
    step. Both averages are bias-corrected (as in Adam) so early values are
    usable; the correction cancels in the ratio.

    Args:
        decay: EMA decay per update, in [0, 1). 0.99 averages over roughly the
            last 100 steps.
    """

    def __init__(self, decay=0.99):
        check_non_negative("decay", decay)
        if decay >= 1:
            raise ValueError(
                f"Argument `decay` must be in [0, 1). Received: decay={decay!r}")
        self.decay = decay
        self._grad_sq_norm = 0.0
        self._trace_covariance = 0.0
        self._weight = 0.0
        self.num_updates = 0

    def update(self, small_batch_grad_sq_norm, big_batch_grad_sq_norm,
               small_batch_size, big_batch_size):
        """Adds one step's pair of squared gradient norms."""
        grad_sq_norm, trace = noise_scale_estimates(
            float(small_batch_grad_sq_norm), float(big_batch_grad_sq_norm),
            small_batch_size, big_batch_size)
        d = self.decay
        self._grad_sq_norm = d * self._grad_sq_norm + (1 - d) * grad_sq_norm
        self._trace_covariance = d * self._trace_covariance + (1 - d) * trace
        self._weight = d * self._weight + (1 - d)
        self.num_updates += 1

    @property
    def grad_sq_norm(self):
        """The averaged ``|G|^2`` (NaN before the first update)."""
        return self._grad_sq_norm / self._weight if self._weight else math.nan

    @property
    def trace_covariance(self):
        """The averaged ``tr(Sigma)`` (NaN before the first update)."""
        return (self._trace_covariance / self._weight if self._weight
                else math.nan)

    @property
    def noise_scale(self):
        """``B_simple = tr(Sigma) / |G|^2`` from the averages (NaN before the
        first update or while the averaged ``|G|^2`` is not positive)."""
        if not self._weight or self._grad_sq_norm <= 0:
            return math.nan
        return self._trace_covariance / self._grad_sq_norm
