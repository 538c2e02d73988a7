"""Plan a batch size before training: steps and epochs to a target at any
batch, from the gradient noise scale. NumPy only.

The model, McCandlish et al.'s steps against batch, and its assumptions are
in `StepsModel`'s docstring; `python -m keras_legw plan` prints its table.
"""

import numpy as np

from keras_legw._validation import check_positive

__all__ = ["StepsModel"]


class StepsModel:
    """``S(B) = S_min (1 + B_noise / B)`` and what follows from it.

    McCandlish, Kaplan, Amodei et al., "An Empirical Model of Large-Batch
    Training" (arXiv 1812.06162), eq. 2.11: with ``B_noise`` the noise scale
    (in examples), the optimizer steps ``S`` and the examples ``E`` that
    reach a given target at batch ``B`` trade off as

        S(B) = S_min (1 + B_noise / B)
        E(B) = E_min (1 + B / B_noise),      E_min = S_min * B_noise

    so epochs are ``E(B) / N = S(B) B / N`` for ``N`` training examples.
    Below ``B_noise`` a bigger batch cuts the steps almost in proportion;
    above it the steps level off at ``S_min`` and the epochs grow almost in
    proportion: ``B = B_noise`` (the critical batch) costs twice the minimum
    steps and twice the minimum epochs.

    `StepsModel.fit` takes measured (batch, steps-to-target) pairs (two or
    more); `StepsModel.from_noise_scale` takes ``B_noise`` measured at the
    base batch and one run's steps there. Both assume ``B_noise`` stays put
    during training, which it does not (MNIST-LSTM's grows about 100x): the
    fit to measured steps absorbs that into an effective ``B_noise``, the
    measured one does not (docs/results/planner.md).

    Args:
        min_steps (float): ``S_min``, the steps at an infinite batch; > 0.
        noise_scale (float): ``B_noise``, in examples; > 0.

    Raises:
        ValueError: unless both are positive numbers.
    """

    def __init__(self, min_steps, noise_scale):
        check_positive("min_steps", min_steps)
        check_positive("noise_scale", noise_scale)
        self.min_steps, self.noise_scale = float(min_steps), float(noise_scale)

    @classmethod
    def fit(cls, batch_sizes, steps):
        """The least-squares fit, in relative error, to measured pairs.

        ``S = S_min + (S_min B_noise) / B`` is linear in ``1 / B``; each
        point is weighted by ``1 / S^2`` so that a run of 100 steps counts as
        much as one of 10,000. Two points give the exact solution.

        Args:
            batch_sizes (list[float]): the batch of each measured run.
            steps (list[float]): the steps each run took to the target.

        Returns:
            model (StepsModel): the fitted model.

        Raises:
            ValueError: for fewer than two distinct batches, unmatched or
                non-positive values, or steps that do not fall with the
                batch as the model needs (a fitted ``S_min`` or ``B_noise``
                that is not positive).
        """
        b = np.asarray(batch_sizes, dtype=np.float64)
        s = np.asarray(steps, dtype=np.float64)
        if b.shape != s.shape or b.ndim != 1:
            raise ValueError(
                "Arguments `batch_sizes` and `steps` must be two lists of "
                f"the same length. Received: {len(b)} and {len(s)} values")
        if len(np.unique(b)) < 2:
            raise ValueError(
                "Argument `batch_sizes` must hold at least two different "
                f"batches to fit. Received: batch_sizes={list(batch_sizes)}")
        if not (np.all(np.isfinite(b)) and np.all(b > 0)
                and np.all(np.isfinite(s)) and np.all(s > 0)):
            raise ValueError(
                "Arguments `batch_sizes` and `steps` must be positive "
                f"numbers. Received: batch_sizes={list(batch_sizes)}, "
                f"steps={list(steps)}")
        design = np.stack([np.ones_like(b), 1.0 / b], axis=1) / s[:, None]
        (intercept, slope), *_ = np.linalg.lstsq(design, np.ones_like(s),
                                                 rcond=None)
        if intercept <= 0 or slope <= 0:
            raise ValueError(
                "The measured steps do not follow S(B) = S_min (1 + B_noise"
                f" / B) with positive S_min and B_noise (fit: S_min="
                f"{intercept:.4g}, S_min B_noise={slope:.4g}): they must "
                "fall as the batch grows, and by less than the batch grows. "
                f"Received: batch_sizes={list(batch_sizes)}, "
                f"steps={list(steps)}")
        return cls(intercept, slope / intercept)

    @classmethod
    def from_noise_scale(cls, noise_scale, batch_size, steps):
        """``S_min = steps / (1 + B_noise / B)`` from one run of `steps` at
        `batch_size` and ``B_noise`` measured there.

        Args:
            noise_scale (float): ``B_noise`` in examples, measured at
                `batch_size`.
            batch_size (float): the batch of the run (the base batch).
            steps (float): the steps that run took to the target.

        Returns:
            model (StepsModel): the model through that run.

        Raises:
            ValueError: unless all three are positive numbers.
        """
        check_positive("noise_scale", noise_scale)
        check_positive("batch_size", batch_size)
        check_positive("steps", steps)
        return cls(steps / (1.0 + noise_scale / batch_size), noise_scale)

    def steps(self, batch_size):
        """``S(B)``, the steps to the target at `batch_size`.

        Args:
            batch_size (float | numpy.ndarray): one batch or an array of
                them.

        Returns:
            steps (float | numpy.ndarray): ``S(B)``, one per batch.
        """
        return self.min_steps * (1.0 + self.noise_scale
                                 / np.asarray(batch_size, dtype=np.float64))

    def epochs(self, batch_size, num_examples):
        """``S(B) B / N``: the epochs to the target at `batch_size`.

        Args:
            batch_size (float | numpy.ndarray): one batch or an array of
                them.
            num_examples (int): ``N``, the training examples; > 0.

        Returns:
            epochs (float | numpy.ndarray): one per batch.
        """
        check_positive("num_examples", num_examples)
        return self.steps(batch_size) * np.asarray(batch_size, np.float64) \
            / float(num_examples)

    def diminishing_returns(self, batch_size):
        """Whether `batch_size` is past the critical batch ``B_noise``: from
        there each doubling cuts the steps by less than a third and adds
        more than a third to the epochs.

        Args:
            batch_size (float | numpy.ndarray): one batch or an array of
                them.

        Returns:
            past (bool | numpy.ndarray): ``batch_size > B_noise``, one per
                batch.
        """
        return np.asarray(batch_size, dtype=np.float64) > self.noise_scale

    def __repr__(self):
        return (f"StepsModel(min_steps={self.min_steps:.6g}, "
                f"noise_scale={self.noise_scale:.6g})")


def relative_error(predicted, measured):
    """``(predicted - measured) / measured``."""
    return (np.asarray(predicted, np.float64) - measured) / np.asarray(
        measured, np.float64)


def plan_table(model, batch_sizes, num_examples, base_batch_size):
    """Rows (batch, steps, epochs, epoch overhead against the base batch,
    past the critical batch) for the CLI."""
    base_epochs = float(model.epochs(base_batch_size, num_examples))
    return [(int(b), float(model.steps(b)), float(model.epochs(b,
             num_examples)), float(model.epochs(b, num_examples))
             / base_epochs, bool(model.diminishing_returns(b)))
            for b in batch_sizes]

