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

import math

from keras_legw._validation import check_positive, check_positive_integer

__all__ = ["BatchRamp", "NoiseBatchSchedule", "parse_batch_ramp",
           "batch_schedule"]


def parse_batch_ramp(text):
    """``"0:128,1:512,4:2048"`` -> ``((0.0, 128), (1.0, 512), (4.0, 2048))``:
    the epoch (a number) from which each global batch applies.

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
        stages: ``((epoch, global_batch), ...)`` or the text
            ``"0:128,1:512,4:2048"``. The first epoch is 0; epochs strictly
            increase; batches never shrink.
        base_batch_size: the batch the hyperparameters were tuned at; no
            stage may be below it. Default: the first stage's batch.
        max_batch_size: no stage may be above it. Default: the last stage's.
        batch_multiple: every batch must be a multiple of it (the devices).

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
                  else tuple((float(e), b) for e, b in stages))
        if not parsed:
            raise ValueError("Argument `stages` must hold at least one "
                             f"(epoch, batch) pair. Received: {stages!r}")
        self._stages = parsed
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
            check_positive_integer("batch in stages", batch)
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
        return {}

    def set_state(self, state):
        del state

    def __repr__(self):
        text = ",".join(f"{e:g}:{b}" for e, b in self._stages)
        return f"BatchRamp('{text}')"


class NoiseBatchSchedule:
    """A batch that grows with the measured gradient noise scale.

    After each epoch the caller measures ``|G|^2`` and ``tr(Sigma)`` (for
    example with `measure_noise_scale`) and passes them to `observe`. Every
    `decide_every_epochs` epochs the schedule picks the batch of the next
    epoch:

        |G|^2_s, tr_s   exponential moving averages of the two over epochs,
                        weight `smoothing` on the past, bias-corrected; the
                        ratio of the averages, never an average of ratios
                        (McCandlish et al., Appendix A.1)
        B_s = tr_s / |G|^2_s                       the smoothed noise scale
        target = noise_scale_multiplier * B_s
        candidates = {base * 2^j <= max} + {max}   (all multiples of
                                                    batch_multiple)
        next = max(current, the largest candidate <= target)

    so it grows in doublings of the base batch, never shrinks, and never
    leaves ``[base_batch_size, max_batch_size]``. A smoothed ``|G|^2 <= 0``
    with a positive trace means the true gradient is under the noise floor
    (``B_noise`` beyond measuring): the target is then the maximum. No
    measurement yet, or a non-finite one, keeps the batch.

    Why these choices: the per-epoch estimates on MNIST-LSTM swing by 10x late
    in training (a single big batch draw), and a schedule that never shrinks
    would lock in one lucky spike; smoothing 0.5 halves a spike's weight
    after one epoch while following the ~100x trend within a few epochs.
    Doublings keep the number of distinct batch shapes (each a compilation)
    to log2(max / base) + 1. ``B_s`` itself (multiplier 1) is McCandlish's
    critical batch: twice the minimum steps and twice the minimum examples.

    Args:
        base_batch_size: the start batch, where the hyperparameters were
            tuned.
        max_batch_size: the largest batch allowed.
        batch_multiple: every batch is a multiple of it (the devices).
        smoothing: EMA weight on the past, in [0, 1); 0 uses the last epoch's
            measurement alone.
        noise_scale_multiplier: the batch targets this times ``B_s``; > 0.
        decide_every_epochs: decide after every this many epochs.
    """

    adaptive = True

    def __init__(self, base_batch_size, max_batch_size, batch_multiple=1,
                 smoothing=0.5, noise_scale_multiplier=1.0,
                 decide_every_epochs=1):
        _check_bounds(base_batch_size, max_batch_size, batch_multiple)
        if not (isinstance(smoothing, (int, float)) and 0 <= smoothing < 1):
            raise ValueError("Argument `smoothing` must be in [0, 1). "
                             f"Received: smoothing={smoothing!r}")
        check_positive("noise_scale_multiplier", noise_scale_multiplier)
        check_positive_integer("decide_every_epochs", decide_every_epochs)
        self.base_batch_size = base_batch_size
        self.max_batch_size = max_batch_size
        self.batch_multiple = batch_multiple
        self.smoothing = smoothing
        self.noise_scale_multiplier = noise_scale_multiplier
        self.decide_every_epochs = decide_every_epochs
        self._state = dict(batch_size=base_batch_size, grad_sq_norm=0.0,
                           trace_covariance=0.0, weight=0.0, observed=0,
                           decisions={"0": base_batch_size})

    start_batch_size = property(lambda self: self.base_batch_size,
                                doc="The batch of epoch 0.")

    @property
    def candidates(self):
        """The batches it may pick, ascending."""
        return doublings(self.base_batch_size, self.max_batch_size)

    @property
    def noise_scale(self):
        """``B_s``, the smoothed noise scale (NaN before a measurement;
        +inf when the smoothed ``|G|^2 <= 0`` under a positive trace)."""
        s = self._state
        if not s["weight"]:
            return math.nan
        if s["grad_sq_norm"] <= 0:
            return math.inf if s["trace_covariance"] > 0 else math.nan
        return s["trace_covariance"] / s["grad_sq_norm"]

    @property
    def batch_size(self):
        """The batch decided most recently."""
        return self._state["batch_size"]

    def observe(self, grad_sq_norm, trace_covariance):
        """Adds one epoch's measurement; decides the next batch when due."""
        s, d = self._state, self.smoothing
        if math.isfinite(grad_sq_norm) and math.isfinite(trace_covariance):
            s["grad_sq_norm"] = d * s["grad_sq_norm"] + (1 - d) * grad_sq_norm
            s["trace_covariance"] = (d * s["trace_covariance"]
                                     + (1 - d) * trace_covariance)
            s["weight"] = d * s["weight"] + (1 - d)
        s["observed"] += 1
        if s["observed"] % self.decide_every_epochs == 0:
            s["batch_size"] = self._next_batch()
            s["decisions"][str(s["observed"])] = s["batch_size"]

    def _next_batch(self):
        target = self.noise_scale_multiplier * self.noise_scale
        if math.isnan(target):
            return self.batch_size
        fitting = [b for b in self.candidates if b <= target]
        return max([self.batch_size] + fitting[-1:])

    def batch_size_for_epoch(self, epoch):
        """The batch decided for epoch `epoch`: the latest decision made
        after at most `epoch` observed epochs."""
        decided = {int(k): v for k, v in self._state["decisions"].items()}
        return decided[max(k for k in decided if k <= epoch)]

    def get_state(self):
        """A JSON-able dict from which `set_state` resumes exactly."""
        return {**self._state, "decisions": dict(self._state["decisions"])}

    def set_state(self, state):
        self._state = {**state, "decisions": dict(state["decisions"])}

    def __repr__(self):
        return (f"NoiseBatchSchedule(base_batch_size={self.base_batch_size}, "
                f"max_batch_size={self.max_batch_size})")


def batch_schedule(text, base_batch_size, max_batch_size=None,
                   batch_multiple=1, **noise_kwargs):
    """The schedule that a flag names: ``"noise"`` (a `NoiseBatchSchedule`
    up to `max_batch_size`, required) or a ramp's text (a `BatchRamp`).
    `noise_kwargs` go to `NoiseBatchSchedule`."""
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
