"""Batch-size schedules: the global batch of each epoch, growing from the
base batch as training goes on. Pure Python, no framework.

Why: the gradient noise scale ``B_noise`` (McCandlish et al., "An Empirical
Model of Large-Batch Training", arXiv 1812.06162) grows during training, about
100x on MNIST-LSTM (docs/results/mnist_lstm_noise_scale.csv). A batch far
above ``B_noise`` wastes examples, one far below it wastes parallelism, so the
batch that keeps every step useful grows with it (Smith et al., "Don't Decay
the Learning Rate, Increase the Batch Size", ICLR 2018; AdaptDL/Pollux).

Two schedules, one interface (`batch_size_for_epoch(epoch)`, called at the
start of each epoch, 0-based; batches change only at epoch boundaries):

    BatchRamp            a fixed ramp, epoch -> global batch, written
                         "0:128,1:512,4:2048" (`parse_batch_ramp`)
    NoiseBatchSchedule   adaptive: after each epoch it is told the noise
                         scale measured then (`observe`) and picks the next
                         batch from it

Both never shrink, stay within ``[base_batch_size, max_batch_size]`` and
return multiples of `batch_multiple` (the number of devices, or that times a
per-device multiple), so every device gets the same share.
"""

import json
import math
import warnings

from keras_legw._validation import (check_non_negative, check_positive,
                                    check_positive_integer)

__all__ = ["BatchRamp", "NoiseBatchSchedule", "parse_batch_ramp",
           "batch_schedule"]


def parse_batch_ramp(text):
    """``"0:128,1:512,4:2048"`` -> ``((0.0, 128), (1.0, 512), (4.0, 2048))``:
    the epoch (a number) from which each global batch applies.

    Args:
        text (str): comma-separated ``epoch:global_batch`` pairs.

    Returns:
        stages (tuple): ``((epoch, batch), ...)``, epochs as floats,
            batches as ints.

    Raises:
        ValueError: for text that is not comma-separated `epoch:batch` pairs.
    """
    stages = []
    for part in str(text).split(","):
        epoch, sep, batch = part.strip().partition(":")
        try:
            if not sep:
                raise ValueError(part)
            stages.append((float(epoch), int(batch)))
        except ValueError:
            raise ValueError(
                "Argument `batch_schedule` must be comma-separated "
                "`epoch:global_batch` pairs such as '0:128,1:512,4:2048' "
                f"(or 'noise'). Received: batch_schedule={text!r}") from None
    return tuple(stages)


def _stage_pairs(stages):
    """``((epoch, batch), ...)`` from a sequence of pairs; one ValueError
    naming `stages` for anything else."""
    try:
        return tuple((float(epoch), batch) for epoch, batch in stages)
    except (TypeError, ValueError):
        raise ValueError(
            "Argument `stages` must be the text '0:128,1:512,4:2048' or "
            "(epoch, global_batch) pairs such as ((0, 128), (1, 512)). "
            f"Received: stages={stages!r}") from None


def doublings(base_batch_size, max_batch_size):
    """``(base, 2 base, 4 base, ..., max)``: the doublings of the base below
    the maximum, then the maximum."""
    sizes, size = [], base_batch_size
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return tuple(sizes + [max_batch_size])


def _check_split(name, batch_size, batch_multiple):
    if batch_size % batch_multiple:
        raise ValueError(
            f"Argument `{name}` must be a multiple of batch_multiple="
            f"{batch_multiple}, so that every device gets the same share. "
            f"Received: {name}={batch_size}")


def _check_bounds(base_batch_size, max_batch_size, batch_multiple):
    check_positive_integer("base_batch_size", base_batch_size)
    check_positive_integer("max_batch_size", max_batch_size)
    check_positive_integer("batch_multiple", batch_multiple)
    if max_batch_size < base_batch_size:
        raise ValueError(
            "Argument `max_batch_size` must be at least `base_batch_size` "
            f"({base_batch_size}). Received: max_batch_size={max_batch_size}")
    _check_split("base_batch_size", base_batch_size, batch_multiple)
    _check_split("max_batch_size", max_batch_size, batch_multiple)


class BatchRamp:
    """A fixed ramp: the global batch of each epoch.

    ``batch_size_for_epoch(e)`` is the batch of the last stage whose epoch is
    ``<= e``. Stage epochs may be fractional in the text, but batches change
    only at epoch boundaries, so a stage from epoch 2.5 applies from epoch 3.

    Args:
        stages (str | tuple): ``((epoch, global_batch), ...)`` or the text
            ``"0:128,1:512,4:2048"`` (epoch: global batch). The first epoch
            is 0; epochs strictly increase; batches never shrink.
        base_batch_size (int | None): the batch the hyperparameters were
            tuned at; no stage may be below it. Default: the first stage's
            batch.
        max_batch_size (int | None): no stage may be above it. Default: the
            last stage's.
        batch_multiple (int): every batch must be a multiple of it (the
            devices).

    Raises:
        ValueError: naming what is wrong: epochs out of order, a ramp that
            shrinks, a batch outside the bounds or that the devices cannot
            split.
    """

    adaptive = False

    def __init__(self, stages, base_batch_size=None, max_batch_size=None,
                 batch_multiple=1):
        self.stages = stages
        parsed = (parse_batch_ramp(stages) if isinstance(stages, str)
                  else _stage_pairs(stages))
        if not parsed:
            raise ValueError("Argument `stages` must hold at least one "
                             f"(epoch, batch) pair. Received: {stages!r}")
        self._stages = parsed
        for epoch, batch in parsed:
            check_positive_integer("batch in stages", batch)
            if not math.isfinite(epoch):
                raise ValueError(
                    "Argument `stages` must hold finite epochs. Received: "
                    f"epoch {epoch} in stages={stages!r}")
        self._check_order()
        self.base_batch_size = (parsed[0][1] if base_batch_size is None
                                else base_batch_size)
        self.max_batch_size = (parsed[-1][1] if max_batch_size is None
                               else max_batch_size)
        self.batch_multiple = batch_multiple
        check_positive_integer("batch_multiple", batch_multiple)
        self._check_batches()
        _check_bounds(self.base_batch_size, self.max_batch_size,
                      batch_multiple)
        self._check_range()

    def _check_order(self):
        if self._stages[0][0] != 0:
            raise ValueError(
                "Argument `stages` must start at epoch 0. Received: first "
                f"stage {self._stages[0]} in stages={self.stages!r}")
        for (e0, b0), (e1, b1) in zip(self._stages, self._stages[1:]):
            if e1 <= e0:
                raise ValueError(
                    "Argument `stages` must list epochs in increasing order. "
                    f"Received: epoch {e1:g} after {e0:g} in "
                    f"stages={self.stages!r}")
            if b1 < b0:
                raise ValueError(
                    "Argument `stages` must never shrink the batch. Received:"
                    f" {b1} at epoch {e1:g} after {b0} in "
                    f"stages={self.stages!r}")

    def _check_batches(self):
        for epoch, batch in self._stages:
            if batch % self.batch_multiple:
                raise ValueError(
                    "Argument `stages` must hold multiples of batch_multiple="
                    f"{self.batch_multiple}, so that every device gets the "
                    f"same share. Received: {batch} at epoch {epoch:g} in "
                    f"stages={self.stages!r}")

    def _check_range(self):
        for _, batch in self._stages:
            if not self.base_batch_size <= batch <= self.max_batch_size:
                raise ValueError(
                    "Argument `stages` must keep every batch within "
                    f"[base_batch_size, max_batch_size] = "
                    f"[{self.base_batch_size}, {self.max_batch_size}]. "
                    f"Received: {batch} in stages={self.stages!r}")

    @property
    def start_batch_size(self):
        """The batch of epoch 0."""
        return self._stages[0][1]

    def batch_size_for_epoch(self, epoch):
        """The global batch of epoch `epoch` (0-based, whole)."""
        current = self._stages[0][1]
        for start, batch in self._stages:
            if start <= epoch:
                current = batch
        return current

    def observe(self, grad_sq_norm, trace_covariance):
        """A fixed ramp ignores the noise scale."""
        del grad_sq_norm, trace_covariance

    def get_state(self):
        """An empty dict: a fixed ramp has no state."""
        return {}

    def set_state(self, state):
        """A fixed ramp has no state to resume."""
        del state

    def __repr__(self):
        text = ",".join(f"{e:g}:{b}" for e, b in self._stages)
        return f"BatchRamp('{text}')"


class NoiseBatchSchedule:
    """A batch that grows with the measured gradient noise scale, by a rule
    that one noisy epoch cannot move.

    After each epoch the caller passes the epoch's mean estimates of
    ``|G|^2`` and ``tr(Sigma)`` and, where it has them, their squared
    standard errors (`observe`; `BatchGrowth.end_epoch` gives the means and
    spread of the epoch's per-step estimates). Every `decide_every_epochs`
    epochs the schedule picks the batch of the next epoch:

        B_e   = t_e / g_e                    epoch e's noise scale (its means)
        L_e   = (t_e - z se(t_e)) / (g_e + z se(g_e))
                    what epoch e's steps support at z = `std_errors`
                    standard errors (+inf when the denominator is <= 0 < the
                    numerator: the gradient is under the noise floor)
        L     = the lower median of L_e over the last `window` epochs
                    measured (the smaller middle value of an even count)
        target = noise_scale_multiplier * L
        candidates = {base * 2^j < max} + {max}   (each a multiple of
                                                   batch_multiple)
        next = max(current, min(the candidate `max_doublings` above current,
                                the largest candidate <= target))

    so it grows in doublings of the base batch, at most `max_doublings` of
    them per decision, never shrinks, and never leaves ``[base_batch_size,
    max_batch_size]``. An epoch without a measurement (NaN, or any value
    not finite) adds nothing and keeps the batch; with no standard errors
    given (one reading an epoch) ``L_e = B_e``. Each ratio reads a
    non-positive numerator (no noise shown) as 0, and otherwise a
    denominator ``<= 0`` as +inf.

    What one epoch can do: nothing beyond what the others support once two
    epochs are in the window (the lower median of two is their minimum, of
    three the middle one), so a spike, however large, in one epoch's
    readings moves no decision after the first; the first decision, on one
    epoch, moves at most `max_doublings`. ``window=1, std_errors=0,
    max_doublings=None`` is the last epoch's reading alone. Tested on
    readings drawn from a closed-form noise scale with a 10x spike planted
    in one epoch: every decision stays within one doubling of the unspiked
    run's, where the last epoch's reading alone jumps 8x or more.

    The knob, `noise_scale_multiplier` ``c``: McCandlish et al.'s model
    prices a batch ``B = c B_noise`` at ``1 + 1/c`` times the fewest steps
    and ``1 + c`` times the fewest examples (c = 1: twice each, the
    critical batch; the default c = 4: 1.25 times the fewest steps, 5 times
    the fewest examples). Larger c buys fewer steps with more examples.

    The defaults (c = 4, window 3, z = 2, two doublings a decision) were
    frozen on seed 0 of MNIST-LSTM and PTB-small before any held-out run
    (docs/results/noise_default_search.csv; docs/results/growing-batch.md,
    "The frozen default"): c = 1 kept quality in twice the steps of c = 4;
    one doubling a decision cannot climb PTB's 64x in its 13 epochs within
    the steps the base batch's first epoch leaves.

    Args:
        base_batch_size (int): the start batch, where the hyperparameters
            were tuned.
        max_batch_size (int): the largest batch allowed.
        batch_multiple (int): every batch is a multiple of it (the devices).
        noise_scale_multiplier (float): ``c`` (> 0): the batch targets
            ``c L``.
        decide_every_epochs (int): decide after every this many epochs.
        window (int): how many of the latest measured epochs the median
            takes.
        std_errors (float): ``z``, how many standard errors below its
            estimate an epoch's noise scale is taken; >= 0 (0: the point
            estimate).
        max_doublings (int | None): the most doublings one decision may
            make, a positive integer, or None for no limit.
        smoothing (float | None): deprecated and ignored (the exponential
            average over epochs it weighted is replaced by the median);
            warns (`DeprecationWarning`).

    Raises:
        ValueError: naming a bad argument.
    """

    adaptive = True

    def __init__(self, base_batch_size, max_batch_size, batch_multiple=1,
                 noise_scale_multiplier=4.0, decide_every_epochs=1, window=3,
                 std_errors=2.0, max_doublings=2, smoothing=None):
        _check_bounds(base_batch_size, max_batch_size, batch_multiple)
        check_positive("noise_scale_multiplier", noise_scale_multiplier)
        check_positive_integer("decide_every_epochs", decide_every_epochs)
        check_positive_integer("window", window)
        check_non_negative("std_errors", std_errors)
        if max_doublings is not None:
            check_positive_integer("max_doublings", max_doublings)
        if smoothing is not None:
            warnings.warn(
                "Argument `smoothing` of NoiseBatchSchedule is deprecated and "
                "ignored: the schedule takes the lower median of the last "
                f"`window` epochs (window={window}).", DeprecationWarning,
                stacklevel=2)
        self.base_batch_size = base_batch_size
        self.max_batch_size = max_batch_size
        self.batch_multiple = batch_multiple
        self.noise_scale_multiplier = noise_scale_multiplier
        self.decide_every_epochs = decide_every_epochs
        self.window = window
        self.std_errors = std_errors
        self.max_doublings = max_doublings
        self._state = dict(batch_size=base_batch_size, observed=0,
                           epochs=[], decisions={"0": base_batch_size})

    start_batch_size = property(lambda self: self.base_batch_size,
                                doc="The batch of epoch 0.")

    @property
    def candidates(self):
        """The batches it may pick, ascending."""
        return doublings(self.base_batch_size, self.max_batch_size)

    @property
    def noise_scale(self):
        """The lower median of ``B_e`` over the window (NaN before a
        measurement; +inf for epochs under the noise floor)."""
        return _lower_median([e[0] for e in self._window()])

    @property
    def noise_scale_lower_bound(self):
        """``L``, what the decisions follow (NaN before a measurement)."""
        return _lower_median([e[1] for e in self._window()])

    def _window(self):
        return self._state["epochs"][-self.window:]

    @property
    def batch_size(self):
        """The batch decided most recently."""
        return self._state["batch_size"]

    def observe(self, grad_sq_norm, trace_covariance, grad_sq_norm_var=0.0,
                trace_covariance_var=0.0):
        """Adds one epoch's measurement (the means and their squared
        standard errors); decides the next batch when due.

        Args:
            grad_sq_norm (float): the epoch's mean ``|G|^2`` estimate,
                ``g_e``.
            trace_covariance (float): the epoch's mean ``tr(Sigma)``
                estimate, ``t_e``.
            grad_sq_norm_var (float): the squared standard error of
                `grad_sq_norm`, ``se(g_e)^2``; 0 when unknown.
            trace_covariance_var (float): the same of `trace_covariance`.
        """
        s, z = self._state, self.std_errors
        values = (grad_sq_norm, trace_covariance, grad_sq_norm_var,
                  trace_covariance_var)
        if all(math.isfinite(v) for v in values):
            bound = _ratio(grad_sq_norm + z * math.sqrt(grad_sq_norm_var),
                           trace_covariance
                           - z * math.sqrt(trace_covariance_var))
            point = _ratio(grad_sq_norm, trace_covariance)
            s["epochs"] = (s["epochs"] + [[point, bound]])[-self.window:]
        s["observed"] += 1
        if s["observed"] % self.decide_every_epochs == 0:
            s["batch_size"] = self._next_batch()
            s["decisions"][str(s["observed"])] = s["batch_size"]

    def _next_batch(self):
        target = self.noise_scale_multiplier * self.noise_scale_lower_bound
        if math.isnan(target):
            return self.batch_size
        candidates = self.candidates
        fitting = [b for b in candidates if b <= target]
        if self.max_doublings is not None:
            above = [b for b in candidates if b > self.batch_size]
            fitting = [b for b in fitting
                       if b not in above[self.max_doublings:]]
        return max([self.batch_size] + fitting[-1:])

    def batch_size_for_epoch(self, epoch):
        """The batch decided for epoch `epoch`: the latest decision made
        after at most `epoch` observed epochs."""
        decided = {int(k): v for k, v in self._state["decisions"].items()}
        return decided[max(k for k in decided if k <= epoch)]

    def get_state(self):
        """A JSON-able dict from which `set_state` resumes exactly."""
        return json.loads(json.dumps(self._state))

    def set_state(self, state):
        """Resumes from a `get_state` dict.

        Raises:
            ValueError: for a state written by an older keras_legw (the
                exponential-average rule), which this rule cannot resume.
        """
        if "epochs" not in state:
            raise ValueError(
                "NoiseBatchSchedule.set_state: this state was written by an "
                "older keras_legw (an exponential average, not the last "
                "epochs' readings) and cannot resume this rule. Start the "
                "run again, or resume it with the version that wrote it.")
        self._state = json.loads(json.dumps(state))

    def __repr__(self):
        return (f"NoiseBatchSchedule(base_batch_size={self.base_batch_size}, "
                f"max_batch_size={self.max_batch_size})")


def _lower_median(values):
    """The smaller middle value (NaN for none)."""
    if not values:
        return math.nan
    return sorted(values)[(len(values) - 1) // 2]


def _ratio(grad_sq_norm, trace_covariance):
    """``trace / |G|^2`` read as a noise scale: 0 when the trace is not
    positive (no noise shown: nothing to grow for), else +inf when ``|G|^2
    <= 0`` (the gradient is under the noise floor)."""
    if trace_covariance <= 0:
        return 0.0
    if grad_sq_norm <= 0:
        return math.inf
    return trace_covariance / grad_sq_norm


def batch_schedule(text, base_batch_size, max_batch_size=None,
                   batch_multiple=1, **noise_kwargs):
    """The schedule that a flag names: ``"noise"`` (a `NoiseBatchSchedule`
    up to `max_batch_size`, required) or a ramp's text (a `BatchRamp`).
    `noise_kwargs` go to `NoiseBatchSchedule`.

    Args:
        text (str): ``"noise"`` or a ramp such as ``"0:128,1:512,4:2048"``.
        base_batch_size (int | None): the batch the hyperparameters were
            tuned at (a ramp's default: its first stage's batch).
        max_batch_size (int | None): the largest batch; required with
            ``"noise"``.
        batch_multiple (int): every batch is a multiple of it (the devices).
        **noise_kwargs (Any): `NoiseBatchSchedule`'s other arguments
            (``"noise"`` only).

    Returns:
        schedule (BatchRamp | NoiseBatchSchedule): the schedule.

    Raises:
        ValueError: for ``"noise"`` without `max_batch_size`, `noise_kwargs`
            with a ramp, or any invalid argument of the schedule.
    """
    if text == "noise":
        if max_batch_size is None:
            raise ValueError("Argument `max_batch_size` is required with "
                             "batch_schedule='noise'. Received: None")
        return NoiseBatchSchedule(base_batch_size, max_batch_size,
                                  batch_multiple, **noise_kwargs)
    if noise_kwargs:
        raise ValueError(
            f"Arguments {sorted(noise_kwargs)} are only for "
            f"batch_schedule='noise'. Received: batch_schedule={text!r}")
    return BatchRamp(text, base_batch_size, max_batch_size, batch_multiple)
