"""Batch-size scaling rules and unit conversion, as small pure functions.

LEGW (You et al., "Large-Batch Training for LSTM and Beyond", arXiv 1901.08256,
SC'19) turns a schedule tuned at a base batch ``B0`` into one for a batch
``B = k * B0``:

    k = B / B0
    peak learning rate  P = eta0 * sqrt(k)          ("sqrt" scaling)
    warmup length       W = w0 * k   (in epochs)     ("linear" warmup scaling)

The "noise" peak rule follows McCandlish et al. ("An Empirical Model of
Large-Batch Training", arXiv 1812.06162): the optimal step is
``eps(B) = eps_max / (1 + B_noise / B)``, so a rate tuned at ``B0`` becomes

    P = eta0 * (1 + B_noise / B0) / (1 + B_noise / B)

which grows linearly with ``B`` far below the gradient noise scale
``B_noise`` (in examples) and levels off above it.

Legend: ``eta0`` base learning rate, ``w0`` base warmup in epochs, ``B0`` base
batch size, ``B`` global batch size (examples per optimizer step), ``k`` the
batch scale factor. With linear warmup scaling the warmup *iterations* stay
constant, ``W * N / B = w0 * N / B0`` for ``N`` training examples.

Every conversion between epochs, examples and steps in this package goes
through :func:`epochs_to_steps` and :func:`steps_to_epochs`.

Example:
    >>> k = batch_scale_factor(base_batch_size=128, batch_size=8192)
    >>> k
    64.0
    >>> scale_learning_rate(0.1, k, "sqrt")
    0.8
    >>> scale_warmup_epochs(0.2, k, "linear")
    12.8
"""

import math

from keras_legw._validation import check_non_negative, check_one_of, check_positive

LEARNING_RATE_SCALINGS = ("sqrt", "linear", "noise", "none")
WARMUP_SCALINGS = ("linear", "none")


def batch_scale_factor(base_batch_size, batch_size):
    """Returns ``k = batch_size / base_batch_size``.

    Args:
        base_batch_size (int): the batch size ``B0`` the hyperparameters were
            tuned at (examples per step).
        batch_size (int): the global batch size ``B`` to train at.

    Returns:
        k (float): the batch scale factor.

    Raises:
        ValueError: unless both are positive numbers.
    """
    check_positive("base_batch_size", base_batch_size)
    check_positive("batch_size", batch_size)
    return float(batch_size) / float(base_batch_size)


def scale_learning_rate(base_learning_rate, k, scaling="sqrt",
                        noise_scale_ratio=None):
    """Returns the peak learning rate for a batch ``k`` times the base one.

    ``"sqrt"``: ``eta0 * sqrt(k)`` (LEGW); ``"linear"``: ``eta0 * k`` (Goyal
    et al. 2017); ``"noise"``: ``eta0 * (1 + r) / (1 + r / k)`` with ``r =
    B_noise / B0`` the gradient noise scale in units of the base batch
    (McCandlish et al. 2018); ``"none"``: ``eta0``.

    ``"noise"`` is McCandlish et al.'s optimal step
    ``eps(B) = eps_max / (1 + B_noise / B)`` taken relative to the tuned
    base batch, which gives the formula above: it grows linearly with ``B``
    far below the noise scale ``B_noise`` (in examples) and levels off above
    it.

    Args:
        base_learning_rate (float): the peak rate ``eta0`` tuned at the base
            batch.
        k (float): the batch scale factor ``B / B0``.
        scaling (str): one of "sqrt", "linear", "noise", "none".
        noise_scale_ratio (float | None): ``B_noise / B0`` (> 0); required
            with ``scaling="noise"`` and only allowed with it.

    Returns:
        peak (float): the peak learning rate ``P``.

    Raises:
        ValueError: naming an invalid argument.
    """
    check_positive("base_learning_rate", base_learning_rate)
    check_positive("k", k)
    check_one_of("scaling", scaling, LEARNING_RATE_SCALINGS)
    if (noise_scale_ratio is not None) != (scaling == "noise"):
        raise ValueError(
            "Argument `noise_scale_ratio` is required with scaling='noise' "
            "and only allowed with it. Received: noise_scale_ratio="
            f"{noise_scale_ratio!r} with scaling={scaling!r}"
        )
    if scaling == "noise":
        check_positive("noise_scale_ratio", noise_scale_ratio)
        r = float(noise_scale_ratio)
        return float(base_learning_rate) * (1.0 + r) / (1.0 + r / k)
    return float(base_learning_rate) * peak_factor(k, scaling)


def peak_factor(k, scaling, sqrt=math.sqrt):
    """The peak rate's factor at a batch ``k`` times the base one: ``sqrt(k)``
    ("sqrt"), ``k`` ("linear") or 1 ("none"). `sqrt` computes the square
    root (``keras.ops.sqrt`` for a tensor `k`)."""
    return {"sqrt": sqrt, "linear": lambda k: k,
            "none": lambda k: 1.0}[scaling](k)


def scale_warmup_epochs(base_warmup_epochs, k, warmup_scaling="linear"):
    """Returns the warmup length in epochs for a batch ``k`` times the base
    one.

    ``"linear"``: ``w0 * k`` epochs (LEGW's linear-epoch warmup: the number
    of warmup steps is unchanged, ``W * N / B = w0 * N / B0`` for ``N``
    training examples); ``"none"``: ``w0`` epochs (a constant-epoch warmup,
    as in Goyal et al. 2017).

    Args:
        base_warmup_epochs (float): the warmup ``w0``, in epochs, tuned at
            the base batch; >= 0.
        k (float): the batch scale factor ``B / B0``.
        warmup_scaling (str): "linear" or "none".

    Returns:
        warmup_epochs (float): the warmup length ``W`` in epochs.

    Raises:
        ValueError: naming an invalid argument.
    """
    check_non_negative("base_warmup_epochs", base_warmup_epochs)
    check_positive("k", k)
    check_one_of("warmup_scaling", warmup_scaling, WARMUP_SCALINGS)
    return float(base_warmup_epochs) * (k if warmup_scaling == "linear" else 1.0)


def epochs_to_steps(epochs, num_examples, batch_size):
    """Returns the (fractional) number of steps that cover `epochs` epochs.

    ``steps = epochs * num_examples / batch_size``. This and
    `steps_to_epochs` are the one place where the library converts between
    epochs, examples and steps.

    Args:
        epochs (float): epochs, possibly fractional.
        num_examples (int): training examples in one epoch.
        batch_size (int): global batch size (examples per step).

    Returns:
        steps (float): the steps.
    """
    return float(epochs) * float(num_examples) / float(batch_size)


def whole_steps(epochs, num_examples, batch_size):
    """The whole number of steps that cover `epochs` epochs: `epochs_to_steps`
    rounded up, once, ignoring float noise (600.0000001 is 600 steps).

    What `LEGW.total_steps`, `LEGW.warmup_steps` and the model zoo's epoch
    ends use.

    Args:
        epochs (float): epochs, possibly fractional.
        num_examples (int): training examples in one epoch.
        batch_size (int): global batch size (examples per step).

    Returns:
        steps (int): the steps, rounded up.
    """
    return int(math.ceil(round(epochs_to_steps(epochs, num_examples,
                                                batch_size), 6)))


def steps_to_epochs(steps, num_examples, batch_size):
    """Returns the (fractional) epoch reached after `steps` steps.

    ``epochs = steps * batch_size / num_examples``.

    Args:
        steps (float): optimizer steps.
        num_examples (int): training examples in one epoch.
        batch_size (int): global batch size (examples per step).

    Returns:
        epochs (float): the epoch reached.
    """
    return float(steps) * float(batch_size) / float(num_examples)
