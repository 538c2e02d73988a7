"""AutoWarmup: a warmup that ends when the smoothed training loss stops
falling (AutoWU; Kim et al., "Automated Learning Rate Scheduler for
Large-batch Training", arXiv 2107.05855, 2021).

`AutoWarmupController` is the algorithm in NumPy alone (no framework; its
docstring describes it); `AutoWarmup` is the Keras callback that feeds it
the per-step loss of `model.fit` and sets the optimizer's float learning
rate; `AutoWarmupSchedule` is a learning-rate schedule for custom training
loops that run many steps per compiled call (the model zoo's trainer).
"""

import math

import keras
import numpy as np

from keras_legw._validation import (check_float_learning_rate,
                                    check_positive, check_positive_integer)

LENGTH_SCALE = 0.2
FIT_POINTS = 100        # at most this many losses fit the GP's scale and noise
CONDITION_POINTS = 500  # at most this many condition each posterior mean
GRID_POINTS = 500
NUM_FITS = 5
CONFIDENCE = 0.95
PATIENCE = 3
SMOOTHING_WINDOW = 3  # losses in the median of the divergence test


def rbf(a, b, length_scale=LENGTH_SCALE):
    """The RBF correlation ``exp(-(a_i - b_j)^2 / (2 l^2))``."""
    return np.exp(-0.5 * ((a[:, None] - b[None, :]) / length_scale) ** 2)


def fit_gp(x, y):
    """Maximum-likelihood (mean, output scale, noise) of a GP with an RBF
    kernel of fixed length scale on standardised `y`, by a grid over the log
    scale and log noise (exact for each pair: the likelihood and the best
    constant mean come from one eigendecomposition of the correlation)."""
    values, vectors = np.linalg.eigh(rbf(x, x))
    values = np.clip(values, 0.0, None)
    yt, ones = vectors.T @ y, vectors.T @ np.ones_like(y)
    scales, noises = np.meshgrid(np.logspace(-3, 2, 41),
                                 np.logspace(-6, 1, 57), indexing="ij")
    spectrum = scales[..., None] * values + noises[..., None]
    means = (np.sum(ones * yt / spectrum, axis=-1)
             / np.sum(ones ** 2 / spectrum, axis=-1))
    residual = yt - means[..., None] * ones
    log_likelihood = -0.5 * (np.sum(residual ** 2 / spectrum, axis=-1)
                             + np.sum(np.log(spectrum), axis=-1))
    best = np.unravel_index(np.argmax(log_likelihood), log_likelihood.shape)
    return float(means[best]), float(scales[best]), float(noises[best])


def posterior(x, y, grid, mean, scale, noise):
    """Posterior mean and covariance of the noise-free curve on `grid`."""
    k = scale * rbf(x, x) + noise * np.eye(len(x))
    k_star = scale * rbf(x, grid)
    solved = np.linalg.solve(k, np.column_stack([y - mean, k_star]))
    return (mean + k_star.T @ solved[:, 0],
            scale * rbf(grid, grid) - k_star.T @ solved[:, 1:])


def past_minimum_probability(mean, covariance):
    """``max over i < k of P(f_i < f_k)`` for f ~ N(mean, covariance), k the
    last point: the confidence that the curve was lower before."""
    last = len(mean) - 1
    variance = (np.diag(covariance)[:-1] + covariance[last, last]
                - 2 * covariance[:-1, last] + 1e-4)
    z = (mean[last] - mean[:-1]) / np.sqrt(variance)
    return float(np.max(0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2)))))


def _subsample(rng, indices, limit):
    if len(indices) <= limit:
        return indices
    return np.sort(rng.choice(indices, size=limit, replace=False))


def gp_scale(losses):
    """The losses on the scale the GP fits, standardised: their log when all
    are positive, else ``arcsinh((losses - median) / IQR)`` (an IQR of 0
    counts as 1; see `AutoWarmupController`'s docstring)."""
    if np.all(losses > 0):
        y = np.log(losses)
    else:
        q25, q50, q75 = np.percentile(losses, [25, 50, 75])
        y = np.arcsinh((losses - q50) / ((q75 - q25) or 1.0))
    return (y - np.mean(y)) / (np.std(y) or 1.0)


class AutoWarmupController:
    """The AutoWarmup schedule as plain NumPy state: `observe` each step's
    loss, `check` at the chosen moments, and read `learning_rate(step)`.

    The rate grows exponentially from `min_learning_rate`, by
    ``gamma = (max / min) ** (1 / max_warmup_steps)`` a step, never past
    `max_learning_rate`. At each check a Gaussian process (constant mean,
    RBF kernel of length scale 0.2 on x in [0, 1], output scale and noise
    fitted by marginal likelihood to at most 100 of the losses) smooths the
    per-step losses seen so far; 5 posterior means on a 500-point grid, each
    conditioned on its own subsample (of at most 500 losses), vote on
    whether the loss now is above an earlier point of the curve with
    probability > 0.95 (``max over i of P(f_i < f_last)``). After 3
    positive checks in a row the warmup ends: the peak is the mean, over the
    5 fits, of the rate at the smoothed loss's argmin, and the rate decays
    from it to 0 by a cosine over the remaining steps. With no switch by
    `max_warmup_steps` (`max_warmup_fraction` x `total_steps`), the decay
    starts from the rate reached.

    A blow-up ends the warmup at once, at the step it is seen, without
    waiting for a check: a loss that is not finite, or a smoothed loss (the
    median of the last 3) above `divergence_factor` (default 4) times the
    smoothed loss of the first 3 steps, and so at least that far above its
    lowest. The start, not the lowest, is the reference: a loss whose
    minimum nears 0 would otherwise count any rise as a blow-up, while a
    diverging loss passes any fixed multiple of its start within a few
    steps. The peak is then, as at any switch, the rate at the minimum of
    the GP-smoothed loss, fitted to the losses before the blow-up, so it
    lies below the rate that diverged; `diverged` says which ended the
    warmup.

    The GP fits the log of the loss when all losses are positive, else
    ``arcsinh((l - median) / IQR)``, which is linear within an
    interquartile range of the median and logarithmic far from it: a
    diverging loss spans many orders of magnitude, and standardising the raw
    values by a spread that one huge value sets would flatten the rest of
    the curve and hide its minimum. (Centring and scaling alone would not
    do: the standardisation that follows undoes any affine map.)

    `get_state()` / `set_state()` carry everything, for checkpoints.

    Args:
        total_steps (int): the steps of the whole run (the decay ends
            there); >= 2.
        min_learning_rate (float): the rate at step 0, > 0.
        max_learning_rate (float): the warmup's ceiling, >
            `min_learning_rate`.
        max_warmup_fraction (float): the longest warmup, as a fraction of
            `total_steps`, in (0, 1].
        seed (int): seed of the subsampling.
        divergence_factor (float): a smoothed loss this many times the one
            at the start is a blow-up; > 1.

    Attributes:
        warmup_steps (int | None): None during the warmup, then the step at
            which it ended.
        peak_learning_rate (float | None): None during the warmup, then the
            rate the decay starts from.
        diverged (bool): whether a blow-up, not the test or the cap, ended
            the warmup.
        max_warmup_steps (int): the longest warmup, in steps.
        gamma (float): the warmup's factor per step.

    Raises:
        ValueError: naming a bad argument.
    """

    def __init__(self, total_steps, min_learning_rate=1e-5,
                 max_learning_rate=1.0, max_warmup_fraction=0.5, seed=0,
                 divergence_factor=4.0):
        check_positive_integer("total_steps", total_steps, minimum=2)
        check_positive("divergence_factor", divergence_factor)
        if divergence_factor <= 1:
            raise ValueError(
                "Argument `divergence_factor` must be above 1. Received: "
                f"divergence_factor={divergence_factor!r}")
        self.divergence_factor = float(divergence_factor)
        check_positive("min_learning_rate", min_learning_rate)
        check_positive("max_learning_rate", max_learning_rate)
        if max_learning_rate <= min_learning_rate:
            raise ValueError(
                "Argument `max_learning_rate` must be larger than "
                f"`min_learning_rate`. Received: max_learning_rate="
                f"{max_learning_rate!r}, min_learning_rate="
                f"{min_learning_rate!r}")
        check_positive("max_warmup_fraction", max_warmup_fraction)
        if max_warmup_fraction > 1 or int(max_warmup_fraction
                                          * total_steps) < 1:
            raise ValueError(
                "Argument `max_warmup_fraction` must be in (0, 1] and leave "
                f"at least one warmup step of the {total_steps}. Received: "
                f"max_warmup_fraction={max_warmup_fraction!r}")
        self.total_steps = int(total_steps)
        self.min_learning_rate = float(min_learning_rate)
        self.max_learning_rate = float(max_learning_rate)
        self.max_warmup_steps = int(max_warmup_fraction * total_steps)
        self.gamma = (self.max_learning_rate / self.min_learning_rate) ** (
            1.0 / self.max_warmup_steps)
        self.losses = []
        self.positives = []
        self.warmup_steps = None
        self.peak_learning_rate = None
        self.diverged = False
        self._rng = np.random.default_rng(seed)

    def warmup_rate(self, step):
        """``min * gamma ** step``, at most `max_learning_rate`."""
        return min(self.min_learning_rate * self.gamma ** step,
                   self.max_learning_rate)

    def learning_rate(self, step):
        """The rate for `step` (0-based) given what has been decided."""
        if self.warmup_steps is None:
            return self.warmup_rate(step)
        span = self.total_steps - self.warmup_steps
        done = min(max(step - self.warmup_steps, 0), span) / max(span, 1)
        return self.peak_learning_rate * 0.5 * (1.0 + math.cos(math.pi * done))

    def observe(self, loss):
        """Adds the loss of the next step; ends the warmup at a blow-up (see
        the class docstring) or at the cap."""
        if self.warmup_steps is not None:
            return
        self.losses.append(float(loss))
        n = len(self.losses)
        if self._blew_up():
            self.diverged = True
            argmins = self._smoothed_argmins(self.losses[:-1])
            peak = (np.mean([self.warmup_rate(x * (n - 1)) for x in argmins])
                    if argmins else self.min_learning_rate)
            self._switch(n, float(peak))
        elif n >= self.max_warmup_steps:
            self._switch(n, self.warmup_rate(n))

    def _blew_up(self):
        """Whether the last loss is not finite, or the smoothed loss is
        `divergence_factor` times the smoothed loss at the start (losses > 0
        only)."""
        if not math.isfinite(self.losses[-1]):
            return True
        if len(self.losses) < SMOOTHING_WINDOW:
            return False
        start = float(np.median(self.losses[:SMOOTHING_WINDOW]))
        smoothed = float(np.median(self.losses[-SMOOTHING_WINDOW:]))
        return 0 < start and smoothed > self.divergence_factor * start

    def check(self):
        """One test of the losses so far; switches after 3 positive checks
        in a row. Returns whether this check was positive."""
        if self.warmup_steps is not None:
            return False
        votes, argmins = self._test(self.losses)
        if votes is None:
            return False
        positive = votes > NUM_FITS / 2
        self.positives = (self.positives + [bool(positive)])[-PATIENCE:]
        if len(self.positives) == PATIENCE and all(self.positives):
            n = len(self.losses)
            peak = np.mean([self.warmup_rate(x * n) for x in argmins])
            self._switch(n, float(peak))
        return bool(positive)

    def _smoothed_argmins(self, losses):
        """Where (x in [0, 1] of `losses`) each GP fit's mean is lowest."""
        return self._test(losses)[1]

    def _test(self, losses):
        """(votes that the curve was lower before, each fit's argmin) for
        the finite `losses`; (None, []) with fewer than 3."""
        losses = np.asarray(losses, dtype=np.float64)
        valid = np.flatnonzero(np.isfinite(losses))
        if len(valid) < 3:
            return None, []
        x_all, y_all = valid / len(losses), gp_scale(losses[valid])
        fit = _subsample(self._rng, np.arange(len(valid)), FIT_POINTS)
        mean, scale, noise = fit_gp(x_all[fit], y_all[fit])
        grid = np.linspace(0.0, 1.0, GRID_POINTS)
        subsamples = [_subsample(self._rng, np.arange(len(valid)),
                                 CONDITION_POINTS) for _ in range(NUM_FITS)]
        # Up to CONDITION_POINTS losses each subsample is all of them and
        # the fits coincide: one posterior per distinct subsample (the
        # costliest part of a check) changes no vote.
        keys = [use.tobytes() for use in subsamples]
        outcomes = {}
        for key, use in zip(keys, subsamples):
            if key not in outcomes:
                f_mean, f_cov = posterior(x_all[use], y_all[use], grid, mean,
                                          scale, noise)
                outcomes[key] = (
                    past_minimum_probability(f_mean, f_cov) > CONFIDENCE,
                    grid[np.argmin(f_mean)])
        votes, argmins = zip(*(outcomes[key] for key in keys))
        return int(sum(votes)), list(argmins)

    def _switch(self, step, peak):
        self.warmup_steps, self.peak_learning_rate = int(step), float(peak)

    def get_state(self):
        """A JSON-able dict from which `set_state` resumes exactly."""
        return dict(losses=list(self.losses), positives=list(self.positives),
                    warmup_steps=self.warmup_steps,
                    peak_learning_rate=self.peak_learning_rate,
                    diverged=self.diverged,
                    rng=self._rng.bit_generator.state)

    def set_state(self, state):
        """Resumes from a `get_state` dict."""
        self.losses = [float(v) for v in state["losses"]]
        self.positives = [bool(v) for v in state["positives"]]
        self.warmup_steps = state["warmup_steps"]
        self.peak_learning_rate = state["peak_learning_rate"]
        self.diverged = bool(state.get("diverged", False))
        self._rng.bit_generator.state = state["rng"]


class _Decision:
    """The controller's decision, read-only, for the callback and the
    schedule (each holds an `AutoWarmupController` as `controller`)."""

    @property
    def warmup_steps(self):
        """None during the warmup, then the step at which it ended."""
        return self.controller.warmup_steps

    @property
    def peak_learning_rate(self):
        """None during the warmup, then the rate the decay starts from."""
        return self.controller.peak_learning_rate


class AutoWarmup(_Decision, keras.callbacks.Callback):
    """AutoWarmup (Kim et al. 2021) as a Keras callback for `model.fit`.

    Drives the optimizer's float learning rate: exponential warmup from
    `min_learning_rate` until a Gaussian-process test of the training loss
    says it has stopped falling (or `max_warmup_fraction` of the steps have
    passed), then a cosine decay to 0 at `total_steps`. The algorithm, with
    its blow-up test, is `AutoWarmupController`, which this callback holds
    as `controller`.

    The per-step loss is recovered from Keras' running epoch mean in
    `logs["loss"]` (``l_t = t m_t - (t - 1) m_{t-1}``), so train with
    `steps_per_execution=1`.

    Examples:
        >>> model.compile(optimizer=keras.optimizers.Adam(1e-5), loss=...)
        >>> warmup = AutoWarmup(total_steps=25 * steps_per_epoch,
        ...                     min_learning_rate=1e-5, max_learning_rate=0.1)
        >>> model.fit(x, y, epochs=25, callbacks=[warmup])
        >>> warmup.warmup_steps, warmup.peak_learning_rate

    Args:
        total_steps (int): the steps of the whole run (the decay ends
            there).
        min_learning_rate (float): the rate at step 0, > 0.
        max_learning_rate (float): the warmup's ceiling, >
            `min_learning_rate`.
        max_warmup_fraction (float): the longest warmup, as a fraction of
            `total_steps`, in (0, 1].
        check_every_steps (int | None): test every this many steps; None: at
            each epoch end. The blow-up test runs at every step whatever
            this is.
        seed (int): seed of the subsampling.
        divergence_factor (float): a smoothed loss this many times the one
            at the start is a blow-up, which ends the warmup at once; > 1.

    Attributes:
        warmup_steps (int | None): None during the warmup, then the step at
            which it ended.
        peak_learning_rate (float | None): None during the warmup, then the
            rate the decay starts from.
        controller (AutoWarmupController): the algorithm's state
            (`controller.diverged`, `controller.get_state()`).

    Raises:
        ValueError: naming any bad argument; at the start of `fit`, if the
            optimizer's learning rate is a schedule rather than a float.
    """

    def __init__(self, total_steps, min_learning_rate=1e-5,
                 max_learning_rate=1.0, max_warmup_fraction=0.5,
                 check_every_steps=None, seed=0, divergence_factor=4.0):
        super().__init__()
        if check_every_steps is not None:
            check_positive_integer("check_every_steps", check_every_steps)
        self.controller = AutoWarmupController(
            total_steps, min_learning_rate, max_learning_rate,
            max_warmup_fraction, seed, divergence_factor)
        self.check_every_steps = check_every_steps
        self.step = 0
        self._epoch_batches, self._epoch_mean = 0, 0.0

    def on_train_begin(self, logs=None):
        check_float_learning_rate(self.model.optimizer, "AutoWarmup")
        self._set_rate()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_batches, self._epoch_mean = 0, 0.0

    def on_train_batch_end(self, batch, logs=None):
        mean = float(logs["loss"])
        count = self._epoch_batches + 1
        self.controller.observe(count * mean - self._epoch_batches
                                * self._epoch_mean)
        self._epoch_batches, self._epoch_mean = count, mean
        self.step += 1
        if self.check_every_steps and self.step % self.check_every_steps == 0:
            self.controller.check()
        self._set_rate()

    def on_epoch_end(self, epoch, logs=None):
        if not self.check_every_steps:
            self.controller.check()
            self._set_rate()

    def _set_rate(self):
        # Under JAX, reading `self.model` syncs fit's state into the model
        # (keras.callbacks.Callback.model), so the next step sees this rate.
        self.model.optimizer.learning_rate = self.controller.learning_rate(
            self.step)


class AutoWarmupSchedule(_Decision,
                         keras.optimizers.schedules.LearningRateSchedule):
    """AutoWarmup as a learning-rate schedule, for custom training loops.

    The rate at a step is a closed form of what the controller has decided
    so far (the warmup's end and peak, held in two variables), so a loop
    that runs many steps per compiled call follows the controller exactly:

        rate(t) = min(min_learning_rate * gamma ** t, max_learning_rate)
                  before the switch (and before `max_warmup_steps`);
        rate(t) = peak * (1 + cos(pi * (t - W) / (total_steps - W))) / 2
                  from the switch step W on (W = `max_warmup_steps`,
                  peak = the rate reached there, if no switch came).

    The loop calls `build()` where its variables belong (inside a
    tf.distribute scope, say), `observe(losses)` with the per-step training
    losses after each call, and `check()` at each epoch end or, with
    `check_every_steps`, at every step that `is_check_step`;
    `next_check_step(step)` is where a compiled call must stop: every step
    while warming, so that the blow-up test sees each loss before the next
    step runs. `get_state()` / `set_state()` carry everything to resume
    exactly. The model zoo's `--schedule=autowu` uses it, with its state in
    the checkpoints.

    Its arguments are `AutoWarmup`'s (`check_every_steps` tells the loop
    when to check; the schedule itself does not count steps).

    Attributes:
        warmup_steps (int | None): None during the warmup, then the step at
            which it ended.
        peak_learning_rate (float | None): None during the warmup, then the
            rate the decay starts from.
        controller (AutoWarmupController): the algorithm's state.

    Raises:
        ValueError: naming a bad argument; when called before `build()`.
    """

    def __init__(self, total_steps, min_learning_rate=1e-5,
                 max_learning_rate=1.0, max_warmup_fraction=0.5,
                 check_every_steps=None, seed=0, divergence_factor=4.0):
        self.controller = AutoWarmupController(
            total_steps, min_learning_rate, max_learning_rate,
            max_warmup_fraction, seed, divergence_factor)
        if check_every_steps is not None:
            check_positive_integer("check_every_steps", check_every_steps)
        self.check_every_steps = check_every_steps
        self._config = dict(total_steps=total_steps,
                            min_learning_rate=min_learning_rate,
                            max_learning_rate=max_learning_rate,
                            max_warmup_fraction=max_warmup_fraction,
                            check_every_steps=check_every_steps, seed=seed,
                            divergence_factor=divergence_factor)
        self._switch_step = self._peak = None

    @property
    def total_steps(self):
        return self.controller.total_steps

    def is_check_step(self, step, epoch_end):
        """Whether a loop that has just run step `step` (counted from 1;
        `epoch_end`: it ends an epoch) should `check()`."""
        if self.check_every_steps is None:
            return epoch_end
        return step % self.check_every_steps == 0

    def next_check_step(self, step):
        """The step a loop that has run `step` steps should stop at next: the
        next step while warming (so that `observe` sees every loss, and a
        blow-up ends the warmup before the next step runs), then the next
        check step when checks go by steps, else None."""
        if self.controller.warmup_steps is None:
            return step + 1
        every = self.check_every_steps
        return None if every is None else (step // every + 1) * every

    def build(self):
        """Creates the two variables (switch step, -1 until it comes; peak)."""
        self._switch_step = keras.Variable(-1.0, trainable=False,
                                           name="autowarmup_switch_step")
        self._peak = keras.Variable(0.0, trainable=False,
                                    name="autowarmup_peak")
        self._publish()

    def observe(self, losses):
        """Feeds the training losses of the steps just run, in order."""
        for loss in np.ravel(losses):
            self.controller.observe(loss)
        self._publish()

    def check(self):
        """One Gaussian-process test (see `AutoWarmupController.check`)."""
        positive = self.controller.check()
        self._publish()
        return positive

    def get_state(self):
        """The controller's `get_state()`: a JSON-able dict."""
        return self.controller.get_state()

    def set_state(self, state):
        """Resumes from a `get_state` dict."""
        self.controller.set_state(state)
        self._publish()

    def _publish(self):
        if self._switch_step is None:
            return
        decided = self.controller.warmup_steps is not None
        self._switch_step.assign(
            float(self.controller.warmup_steps) if decided else -1.0)
        self._peak.assign(self.controller.peak_learning_rate if decided
                          else 0.0)

    def __call__(self, step):
        if self._switch_step is None:
            raise ValueError("AutoWarmupSchedule.build() must be called "
                             "before the schedule is used.")
        c = self.controller
        step = keras.ops.cast(step, "float32")
        # exp(t log gamma) rather than gamma ** t: float32 keeps 1e-6.
        warm = keras.ops.minimum(
            c.min_learning_rate * keras.ops.exp(step * math.log(c.gamma)),
            c.max_learning_rate)
        switched = self._switch_step.value >= 0
        start = keras.ops.where(switched, self._switch_step.value,
                                float(c.max_warmup_steps))
        peak = keras.ops.where(switched, self._peak.value,
                               c.warmup_rate(c.max_warmup_steps))
        span = keras.ops.maximum(c.total_steps - start, 1.0)
        done = keras.ops.clip((step - start) / span, 0.0, 1.0)
        decay = peak * 0.5 * (1.0 + keras.ops.cos(math.pi * done))
        return keras.ops.where(switched | (step >= start), decay, warm)

    def get_config(self):
        return dict(self._config)
