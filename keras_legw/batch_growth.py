"""The growing-batch engine: one state machine that `model.fit`'s
`GrowingBatch` callback and the model zoo's tf.distribute trainer both drive.

`BatchGrowth`'s docstring says what it owns, what an epoch is on each path
and why both make the same decisions.
"""

import math

import numpy as np

from keras_legw._validation import check_positive_integer
from keras_legw.noise_scale import noise_scale_estimates

# The part of a pass whose steps' noise-scale estimates the adaptive schedule
# is told: the steps that end past this fraction of the pass.
LATE_FRACTION = 0.5


def examples_per_pass(num_examples, batch_size):
    """The examples of a pass at `batch_size`: `num_examples` itself, or,
    where a pass depends on the batch (PTB's rows), its value there."""
    return (num_examples(batch_size) if callable(num_examples)
            else num_examples)


class StepStatistics:
    """Sums over steps of the per-step estimates ``g_i`` (|G|^2) and ``t_i``
    (tr(Sigma)): ``n``, ``sum g``, ``sum t``, ``sum g^2``, ``sum t^2``.

    `summary()` gives the means and their squared standard errors (sample
    variance / n), what `NoiseBatchSchedule.observe` takes."""

    def __init__(self, sums=None):
        self.sums = [0.0] * 5 if sums is None else [float(s) for s in sums]

    def add(self, grad_sq_norms, traces):
        g = np.asarray(grad_sq_norms, np.float64).ravel()
        t = np.asarray(traces, np.float64).ravel()
        for i, value in enumerate((g.size, g.sum(), t.sum(), (g * g).sum(),
                                   (t * t).sum())):
            self.sums[i] += float(value)

    @property
    def count(self):
        return int(self.sums[0])

    def summary(self):
        """``(mean g, mean t, var(mean g), var(mean t))``; None below two
        steps (no spread to judge them by)."""
        n, sum_g, sum_t, sum_gg, sum_tt = self.sums
        if n < 2:
            return None
        mean_g, mean_t = sum_g / n, sum_t / n
        var_g = max(sum_gg - n * mean_g ** 2, 0.0) / (n - 1)
        var_t = max(sum_tt - n * mean_t ** 2, 0.0) / (n - 1)
        return mean_g, mean_t, var_g / n, var_t / n


class BatchGrowth:
    """The state of a growing batch, driven step by step.

    It owns, for a run whose batch grows:

        where training stands   examples seen, passes over the data
                                (`epoch`) and the examples of the current
                                pass (`offset`)
        the batch of each pass  `schedule.batch_size_for_epoch(epoch)`
        the rate at each step   `rate(position, batch)`, a
                                `GrowingBatchRate` (`learning_rate()`;
                                `start_batch(step)`, where a batch began,
                                anchors a `RateAtBatch`)
        what the adaptive       the per-step noise-scale estimates of the
        schedule is told, when  steps that end past `late_fraction` of a
                                pass, summed, told once per pass at its
                                end (`end_epoch`)
        what a resume needs     `get_state` / `set_state`, JSON-able

    Progress counts in examples, so a batch change is data, not a special
    case: ``position = epoch + offset / N`` with ``N`` the examples of a
    pass at the current batch.

    What an epoch is on each path, and why both make the same decisions:

    - `model.fit` (`GrowingBatchDataset`): a pass is ``ceil(N / B)``
      batches, the last smaller when ``B`` does not divide ``N``; the
      callback counts each batch's actual rows, so a pass ends exactly with
      fit's epoch.
    - the trainer: the data is an endless stream of passes and every step
      takes the next ``B`` examples, so a step may straddle two passes; a
      pass ends after the step that completes it, and the next starts at
      the rows that step took past the end.

    Both call `advance(examples)` with the rows trained, `observe_steps`
    with each step's two squared gradient norms before that, and
    `end_epoch` when `advance` says a pass ended; the batch of the next pass
    is asked for after that. So both tell the schedule, once per pass, the
    statistics of the steps of that pass that end past its `late_fraction`,
    at the batch of that pass, and both ask for the next batch at the same
    point: the same rule sees the same kind of evidence. They differ only by
    the randomness of the per-step estimates and by at most one straddling
    step per pass (counted in the pass it ends in).

    Why only the late steps: the schedule wants the noise scale at the
    pass's end, when the next batch starts; a mean over a whole pass is
    ruled by its first steps, whose true gradient can be far larger
    (PTB-small's first epoch: 7.4 over the whole epoch, 270 over its last
    hundred steps).

    Args:
        schedule (BatchRamp | NoiseBatchSchedule): the batch schedule
            (anything with `batch_size_for_epoch`, `observe`, `get_state`,
            `set_state`, `start_batch_size` and `adaptive`).
        rate (GrowingBatchRate): the rate rule (its `__call__(epoch,
            batch_size)`).
        num_examples (int | Callable): the examples of a pass, or a function
            of the batch giving them (PTB's rows: a pass at another batch is
            another layout).
        late_fraction (float): the steps that end past this fraction of a
            pass are the ones the adaptive schedule is told, in [0, 1).

    Raises:
        ValueError: naming a bad argument.
    """

    def __init__(self, schedule, rate, num_examples,
                 late_fraction=LATE_FRACTION):
        if not callable(num_examples):
            check_positive_integer("num_examples", num_examples)
        if not (isinstance(late_fraction, (int, float))
                and 0 <= late_fraction < 1):
            raise ValueError("Argument `late_fraction` must be in [0, 1). "
                             f"Received: late_fraction={late_fraction!r}")
        self.schedule, self.rate = schedule, rate
        self._num_examples = num_examples
        self.late_fraction = late_fraction
        self.epoch, self.offset, self.examples = 0, 0, 0
        self.batch_start = None
        self.statistics = StepStatistics()
        self.last_noise_scale = math.nan

    # Where training stands.
    def num_examples_at(self, batch_size):
        return examples_per_pass(self._num_examples, batch_size)

    @property
    def batch_size(self):
        """The global batch of the current pass."""
        return self.schedule.batch_size_for_epoch(self.epoch)

    @property
    def num_examples(self):
        """The examples of the current pass."""
        return self.num_examples_at(self.batch_size)

    @property
    def position(self):
        """The fractional epoch ``epoch + offset / N`` (computed as
        ``(epoch N + offset) / N``: examples seen / N where N is fixed)."""
        n = self.num_examples
        return (self.epoch * n + self.offset) / n

    def steps_to_epoch_end(self):
        """Steps of the current batch that complete the current pass."""
        return -(-(self.num_examples - self.offset) // self.batch_size)

    def steps_left(self, total_epochs):
        """Steps of the current batch to `total_epochs` passes."""
        examples = ((total_epochs - self.epoch) * self.num_examples
                    - self.offset)
        return math.ceil(round(examples / self.batch_size, 6))

    def advance(self, examples):
        """Counts `examples` trained rows; True if a pass ended."""
        n = self.num_examples
        self.examples += examples
        self.offset += examples
        ended = self.offset >= n
        while self.offset >= n:
            self.offset -= n
            self.epoch += 1
        return ended

    # The rate.
    def learning_rate(self):
        """The rate of the next step, ``rate(position, batch)``."""
        return float(self.rate(self.position, self.batch_size))

    def start_batch(self, step):
        """Where the current batch began: {batch_size, step, epoch}. Kept
        from the state when a resume continues that batch (so a rate
        anchored there is the uninterrupted run's bit for bit), else set at
        optimizer step `step` and the current position."""
        batch = self.batch_size
        start = self.batch_start
        if start is None or start["batch_size"] != batch:
            self.batch_start = dict(batch_size=batch, step=step,
                                    epoch=self.position)
        return self.batch_start

    # What the adaptive schedule is told.
    def counts_step(self, step_examples=None):
        """Whether the next step (of `step_examples` rows, default the
        batch) ends past `late_fraction` of the pass: whether
        `observe_steps` would use its readings."""
        return bool(self._late(self._step_rows(step_examples)))

    def observe_steps(self, small_sq, big_sq, small_batch, big_batch,
                      step_examples=None):
        """Adds the next steps' estimates: squared gradient norms `small_sq`
        at `small_batch` rows and `big_sq` at `big_batch` (arrays over the
        steps, or scalars for one step; the two batches are the same for
        every step given). Call it before `advance` counts those steps.
        `step_examples`: the rows each step trains (default: the current
        batch; fit's last step of a pass may be smaller). Only steps that
        end past `late_fraction` of the pass count."""
        small_sq = np.atleast_1d(np.asarray(small_sq, np.float64))
        big_sq = np.atleast_1d(np.asarray(big_sq, np.float64))
        late = self._late(self._step_rows(step_examples)
                          * np.arange(1, small_sq.size + 1))
        if np.any(late):
            self.statistics.add(*noise_scale_estimates(
                small_sq[late], big_sq[late], float(small_batch),
                float(big_batch)))

    def _step_rows(self, step_examples):
        return self.batch_size if step_examples is None else step_examples

    def _late(self, rows):
        """Whether steps that end after `rows` more examples of the pass end
        past `late_fraction` of it."""
        return self.offset + rows > self.late_fraction * self.num_examples

    def end_epoch(self, share=None):
        """Tells an adaptive schedule the ended pass's statistics and starts
        the next pass's. `share`: a function that makes every worker's sums
        the chief's (a collective; the zoo's multi-worker trainer). Returns
        the pass's noise scale, ``mean t / mean g`` (NaN without one)."""
        sums = self.statistics.sums
        if share is not None:
            sums = share(list(sums))
        self.statistics = StepStatistics()
        summary = StepStatistics(sums).summary()
        self.last_noise_scale = (math.nan if summary is None or
                                 summary[0] == 0 else summary[1] / summary[0])
        if self.schedule.adaptive and summary is not None:
            mean_g, mean_t, var_g, var_t = summary
            self.schedule.observe(mean_g, mean_t, var_g, var_t)
        elif self.schedule.adaptive:
            self.schedule.observe(math.nan, math.nan)
        return self.last_noise_scale

    # What a resume needs.
    def get_state(self):
        """A JSON-able dict from which `set_state` resumes exactly."""
        return dict(epoch=self.epoch, offset=self.offset,
                    examples=self.examples, batch_start=self.batch_start,
                    statistics=list(self.statistics.sums),
                    schedule=self.schedule.get_state())

    def set_state(self, state):
        """Resumes from a `get_state` dict (the schedule's state too)."""
        self.epoch, self.offset = state["epoch"], state["offset"]
        self.examples = state["examples"]
        self.batch_start = state.get("batch_start")
        self.statistics = StepStatistics(state["statistics"])
        self.schedule.set_state(state["schedule"])
