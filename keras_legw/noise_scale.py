"""The gradient noise scale: how large a batch is still worth it.

McCandlish, Kaplan, Amodei et al., "An Empirical Model of Large-Batch
Training", arXiv 1812.06162, 2018: past about the *simple noise scale*
``B_simple = tr(Sigma) / |G|^2`` (`NoiseScaleEstimator`) a larger batch buys
little. Its two parts come from two gradient estimates of different batch
sizes (`noise_scale_estimates`, whose docstring has the formulas);
`measure_noise_scale` and `NoiseScaleCallback` measure it for a compiled
Keras model.
"""

import math

import keras
import numpy as np

from keras_legw._validation import check_non_negative, check_positive_integer


def noise_scale_estimates(small_batch_grad_sq_norm, big_batch_grad_sq_norm,
                          small_batch_size, big_batch_size):
    """Returns the unbiased estimates ``(|G|^2, tr(Sigma))``.

    ``G`` is the true gradient, ``Sigma`` the per-example gradient
    covariance. Both come from two gradient estimates of different batch
    sizes (McCandlish et al. 2018, Appendix A.1): with ``|G_small|^2`` the
    squared norm of a gradient averaged over ``B_small`` examples and
    ``|G_big|^2`` the same over ``B_big > B_small`` examples,

        |G|^2     ~ (B_big |G_big|^2 - B_small |G_small|^2)
                    / (B_big - B_small)
        tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)

    are unbiased. Each is noisy, so the paper averages the two over steps
    separately and takes the ratio of the averages, never the average of
    per-step ratios (`NoiseScaleEstimator`). Under a data-parallel strategy
    this is almost free: each replica's gradient is a small-batch estimate
    and the all-reduced one a big-batch one.

    Args:
        small_batch_grad_sq_norm (float | numpy.ndarray): ``|G_small|^2``,
            the squared norm of a gradient averaged over `small_batch_size`
            examples (a float, a NumPy array or a tensor; estimates
            broadcast).
        big_batch_grad_sq_norm (float | numpy.ndarray): ``|G_big|^2``, the
            same over `big_batch_size`.
        small_batch_size (float): ``B_small``, a number > 0.
        big_batch_size (float): ``B_big``, a number > `small_batch_size`.

    Returns:
        grad_sq_norm (float | numpy.ndarray): the unbiased ``|G|^2``.
        trace_covariance (float | numpy.ndarray): the unbiased
            ``tr(Sigma)``; both of the inputs' (broadcast) shape.

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
    ratio, the simple noise scale ``B_simple``:

        B_simple = tr(Sigma) / |G|^2

    Past about ``B_simple`` (in examples) a larger batch buys little: the
    steps to a given loss stop falling in proportion to the batch.

    Host-side and framework-free: call `update` with Python floats after each
    step. Both averages are bias-corrected (as in Adam) so early values are
    usable; the correction cancels in the ratio. The model zoo's trainer
    measures the noise scale with it (`--noise_scale`).

    Examples:
        >>> estimator = NoiseScaleEstimator(decay=0.99)
        >>> for small, big in per_step_squared_norms:
        ...     estimator.update(small, big, small_batch_size=64,
        ...                      big_batch_size=512)
        >>> estimator.noise_scale   # compare with the batch size you train at

    Args:
        decay (float): EMA decay per update, in [0, 1). 0.99 averages over
            roughly the last 100 steps.

    Raises:
        ValueError: for a `decay` outside [0, 1).
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
        """Adds one step's pair of squared gradient norms.

        Args:
            small_batch_grad_sq_norm (float): ``|G_small|^2`` of the step.
            big_batch_grad_sq_norm (float): ``|G_big|^2`` of the step.
            small_batch_size (float): ``B_small``.
            big_batch_size (float): ``B_big``, > `small_batch_size`.
        """
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


class NoiseScaleResult:
    """What `measure_noise_scale` returns.

    Args:
        grad_sq_norm (float): the unbiased ``|G|^2``.
        trace_covariance (float): the unbiased ``tr(Sigma)``.

    Attributes:
        noise_scale (float): ``B_simple = tr(Sigma) / |G|^2``, in examples
            (NaN when ``|G|^2`` is not positive).
        grad_sq_norm (float): ``|G|^2``.
        trace_covariance (float): ``tr(Sigma)``.
    """

    def __init__(self, grad_sq_norm, trace_covariance):
        self.grad_sq_norm = float(grad_sq_norm)
        self.trace_covariance = float(trace_covariance)
        self.noise_scale = (self.trace_covariance / self.grad_sq_norm
                            if self.grad_sq_norm > 0 else math.nan)

    def __repr__(self):
        return (f"NoiseScaleResult(noise_scale={self.noise_scale:.6g}, "
                f"grad_sq_norm={self.grad_sq_norm:.6g}, "
                f"trace_covariance={self.trace_covariance:.6g})")


def _check_batches(num_examples, small_batch_size, big_batch_size,
                   num_estimates):
    for name, value in (("small_batch_size", small_batch_size),
                        ("big_batch_size", big_batch_size),
                        ("num_estimates", num_estimates)):
        check_positive_integer(name, value)
    if small_batch_size >= big_batch_size:
        raise ValueError(
            "Argument `small_batch_size` must be smaller than `big_batch_size`."
            f" Received: small_batch_size={small_batch_size}, "
            f"big_batch_size={big_batch_size}")
    if big_batch_size > num_examples:
        raise ValueError(
            f"Argument `big_batch_size` must be at most the {num_examples} "
            f"examples given. Received: big_batch_size={big_batch_size}")


def _gradient_sq_norm(model, x, y):
    """|gradient of the model's compiled loss|^2 on (x, y), on the model's
    backend (TensorFlow, JAX or PyTorch); the model's state (batch-norm
    statistics, metrics) is left as it was."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        grads = _tensorflow_gradients(model, x, y)
    elif backend == "jax":
        grads = _jax_gradients(model, x, y)
    elif backend == "torch":
        grads = _torch_gradients(model, x, y)
    else:
        raise ValueError(
            "measure_noise_scale runs on the TensorFlow, JAX and PyTorch "
            f"backends; this is {backend}.")
    return float(sum(np.sum(np.square(np.asarray(
        keras.ops.convert_to_numpy(g), dtype=np.float64)))
        for g in grads if g is not None))


def _loss(model, x, y, y_pred):
    return model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)


def _tensorflow_gradients(model, x, y):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = _loss(model, x, y, model(x, training=False))
    return tape.gradient(loss, model.trainable_variables)


def _jax_gradients(model, x, y):
    import jax

    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss_of(trainable):
        y_pred, _ = model.stateless_call(trainable, non_trainable, x,
                                         training=False)
        with keras.StatelessScope(state_mapping=list(zip(
                model.trainable_variables, trainable))):
            return _loss(model, x, y, y_pred)

    return jax.grad(loss_of)([v.value for v in model.trainable_variables])


def _torch_gradients(model, x, y):
    import torch

    weights = [v.value for v in model.trainable_variables]
    loss = _loss(model, x, y, model(x, training=False))
    return torch.autograd.grad(loss, weights, allow_unused=True)


def _check_mean_loss(model, x, y):
    """Raises unless the compiled loss is one number, the mean over the
    batch: the estimates assume |G_B|^2 of a mean (a sum grows with B, and
    gives a negative tr(Sigma))."""
    def loss_of(rows):
        x_rows, y_rows = x[rows], y[rows]
        return keras.ops.convert_to_numpy(_loss(
            model, x_rows, y_rows, model(x_rows, training=False)))

    one, two = loss_of([0]), loss_of([0, 0])
    if np.ndim(two) or not np.isclose(one, two, rtol=1e-4, atol=1e-7):
        raise ValueError(
            "measure_noise_scale needs the model's compiled loss to be the "
            "mean over the batch (one number, the same for a batch of one "
            "example and of that example twice). Received: a loss of shape "
            f"{np.shape(two)} ({'per example' if np.ndim(two) else 'summed'}"
            "?). Compile with a loss whose reduction is "
            "'sum_over_batch_size' (the Keras default).")


def measure_noise_scale(model, x, y, small_batch_size, big_batch_size,
                        num_estimates=10, seed=0):
    """The gradient noise scale of a compiled Keras model at its current
    weights (McCandlish et al. 2018, Appendix A.1).

    Draws `num_estimates` random big batches of `big_batch_size` examples
    from `(x, y)` (NumPy arrays); each gives |G_big|^2, and its first
    `small_batch_size` examples |G_small|^2, for the model's own compiled
    loss. The two are averaged over the draws and turned into the unbiased
    |G|^2 and tr(Sigma) (`noise_scale_estimates`); `noise_scale` is their
    ratio, B_simple, in examples: a batch well below it leaves parallelism
    unused, one far above it buys little per example. Batch-norm layers run
    in inference mode and nothing in the model changes.

    Runs on the TensorFlow, JAX and PyTorch backends (gradients by
    `tf.GradientTape`, `jax.grad` of `model.stateless_call`, or
    `torch.autograd.grad`). The compiled loss must be the batch's mean
    (Keras' default reduction, "sum_over_batch_size"): a per-example or
    summed loss is an error, since its gradient norms grow with the batch.

    Reading it: if your batch is well below `noise_scale`, a larger batch
    costs few extra examples and trains in fewer steps; at several times it,
    extra examples are mostly wasted. The estimate is noisy: on Gaussian
    least squares the test needs 400 draws (of 1024 examples against 64) to
    land within 15% of the closed form, so average many draws, and expect
    the noise scale to grow during training.

    Args:
        model (keras.Model): a compiled model; its compiled loss is used.
        x (numpy.ndarray): the inputs, examples first.
        y (numpy.ndarray): the targets, as many as `x`.
        small_batch_size (int): ``B_small``, < `big_batch_size`.
        big_batch_size (int): ``B_big``, at most the examples given.
        num_estimates (int): big batches drawn (and averaged over).
        seed (int): seed of the draws.

    Returns:
        result (NoiseScaleResult): its `noise_scale`, `grad_sq_norm` and
            `trace_covariance`.

    Raises:
        ValueError: naming a bad argument (a small batch not smaller than
            the big one, a big batch larger than the data, ...), an
            uncompiled model, or a compiled loss that is not the batch's
            mean (per-example or summed).
    """
    if not getattr(model, "compiled", False):
        raise ValueError("Argument `model` must be compiled with its loss "
                         "(model.compile(loss=...)) before measuring.")
    num_examples = len(x)
    if len(y) != num_examples:
        raise ValueError(f"Arguments `x` and `y` must hold the same number of "
                         f"examples. Received: {num_examples} and {len(y)}")
    _check_batches(num_examples, small_batch_size, big_batch_size,
                   num_estimates)
    _check_mean_loss(model, x, y)
    rng = np.random.default_rng(seed)
    small_sq, big_sq = [], []
    for _ in range(num_estimates):
        index = rng.choice(num_examples, size=big_batch_size, replace=False)
        big_sq.append(_gradient_sq_norm(model, x[index], y[index]))
        small = index[:small_batch_size]
        small_sq.append(_gradient_sq_norm(model, x[small], y[small]))
    grad_sq_norm, trace = noise_scale_estimates(
        np.mean(small_sq), np.mean(big_sq), small_batch_size, big_batch_size)
    return NoiseScaleResult(grad_sq_norm, trace)



class NoiseScaleCallback(keras.callbacks.Callback):
    """Measures the gradient noise scale during `model.fit` with
    `measure_noise_scale` on `(x, y)` every `every_n_steps` steps, and puts
    the latest value in the logs as `noise_scale` (batch logs when it is
    measured, and every epoch's logs, so History and TensorBoard get it).
    `history` keeps (step, NoiseScaleResult) pairs. Any backend that
    `measure_noise_scale` runs on.

    Args:
        x (numpy.ndarray): the inputs, examples first.
        y (numpy.ndarray): the targets, as many as `x`.
        small_batch_size (int): ``B_small``, < `big_batch_size`.
        big_batch_size (int): ``B_big``, at most the examples given.
        every_n_steps (int): measure after every this many training steps.
        num_estimates (int): big batches drawn per measurement.
        seed (int): seed of the first measurement's draws (the n-th uses
            ``seed + n``).

    Raises:
        ValueError: naming a bad argument.
    """

    def __init__(self, x, y, small_batch_size, big_batch_size, every_n_steps,
                 num_estimates=10, seed=0):
        super().__init__()
        check_positive_integer("every_n_steps", every_n_steps)
        _check_batches(len(x), small_batch_size, big_batch_size,
                       num_estimates)
        self.x, self.y = x, y
        self.small_batch_size, self.big_batch_size = (small_batch_size,
                                                      big_batch_size)
        self.every_n_steps, self.num_estimates = every_n_steps, num_estimates
        self.seed, self.step, self.history = seed, 0, []

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every_n_steps:
            return
        result = measure_noise_scale(
            self.model, self.x, self.y, self.small_batch_size,
            self.big_batch_size, self.num_estimates,
            seed=self.seed + len(self.history))
        self.history.append((self.step, result))
        if logs is not None:
            logs["noise_scale"] = result.noise_scale

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.history:
            logs["noise_scale"] = self.history[-1][1].noise_scale
