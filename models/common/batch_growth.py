"""The trainer's growing batch: what it is given, and where training stands.

A growing run trains epoch `e` (a pass over the data) at the global batch
`schedule.batch_size_for_epoch(e)` of a `keras_legw` batch schedule, with the
learning rate of a `keras_legw.GrowingBatchRate` (the rules live there; the
trainer calls them). Progress counts in examples: the data is an endless
stream of passes, a step takes the next `B` examples of it, and an epoch ends
after the step that completes its pass (so an epoch's examples are each
example once, and a step may straddle two passes). The batch changes only at
an epoch's end, and the epoch position the rate sees is ``e + offset / N``.
"""

import dataclasses
import math
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from keras_legw.growing_batch import RateAtBatch
from keras_legw.noise_scale import noise_scale_estimates


@dataclasses.dataclass(frozen=True)
class Growth:
    """A batch that grows, for `trainer.train(..., growth=...)`.

    Attributes:
        schedule: the global batch of each epoch, a `keras_legw.BatchRamp` or
            an adaptive `keras_legw.NoiseBatchSchedule` (told each epoch's
            mean noise-scale estimates, from the trainer's own measurement:
            a replica's share against the global batch, or two halves on one
            replica).
        rate: a `keras_legw.GrowingBatchRate`; at each batch the optimizer's
            rate becomes its `keras_legw.RateAtBatch`.
        epochs: the run's length, in epochs.
        text: the schedule as written (`--batch_schedule`); a resume must
            give the same.
        max_replica_batch_size: the most rows a replica computes at once; a
            larger share is split into micro-batches (gradient accumulation,
            the smallest number that splits it evenly). None: no limit.
    """

    schedule: Any
    rate: Any
    epochs: float
    text: str
    max_replica_batch_size: Optional[int] = None

    def start_rate(self, num_examples):
        """The rate at the first batch, from step 0: the schedule to build
        the optimizer with (`num_examples` per epoch, or a function of the
        batch giving them)."""
        start = self.schedule.start_batch_size
        n = num_examples(start) if callable(num_examples) else num_examples
        return RateAtBatch(self.rate, start, n)


def accumulation_steps(batch_size, replicas, minimum, max_replica_batch_size,
                       halves=1):
    """Micro-batches per replica at `batch_size`: at least `minimum`, the
    fewest that split a replica's share (and its `halves`) evenly into
    micro-batches of at most `max_replica_batch_size` rows (None, or a share
    that `halves` does not split, which the step's check reports:
    `minimum`)."""
    if max_replica_batch_size is None:
        return minimum
    share = batch_size // replicas
    for pieces in range(minimum, share // halves + 1):
        rows, rest = divmod(share, pieces * halves)
        if not rest and rows <= max_replica_batch_size:
            return pieces
    return minimum


# The part of an epoch whose steps' noise-scale estimates the adaptive batch
# schedule is told: the steps that end past this fraction of the epoch.
LATE_FRACTION = 0.5


class Progress:
    """Where training stands, in examples: `epoch` passes over the data done,
    `offset` examples of the current pass seen, `examples` seen in all,
    where the current batch began (`batch_start`), and the sums of the current
    epoch's noise-scale estimates (|G|^2, tr(Sigma), count; from the steps of
    its second half), so that a resume mid-epoch observes the same steps. Its
    state goes into the checkpoints (`get_state` / `set_state`)."""

    def __init__(self):
        self.epoch, self.offset, self.examples = 0, 0, 0
        self.noise_sums = [0.0, 0.0, 0]
        self.batch_start = None
        self.restored = False

    def start_batch(self, batch_size, step, num_examples):
        """Where the current batch began: {batch_size, step, epoch}, kept
        from the checkpoint when a resume continues that batch (so the rate,
        anchored there, is the uninterrupted run's bit for bit), else here."""
        start = self.batch_start
        if start is None or start["batch_size"] != batch_size:
            self.batch_start = dict(batch_size=batch_size, step=step,
                                    epoch=self.position(num_examples))
        return self.batch_start

    @classmethod
    def after_steps(cls, steps, batch_size, num_examples):
        """The progress of `steps` steps at one batch from the start (a
        checkpoint written before progress was recorded)."""
        progress = cls()
        progress.advance(steps, batch_size, num_examples)
        return progress

    def advance(self, steps, batch_size, num_examples):
        """Counts `steps` steps of `batch_size`; True if an epoch ended."""
        seen = steps * batch_size
        self.examples += seen
        self.offset += seen
        ended = self.offset >= num_examples
        while self.offset >= num_examples:
            self.offset -= num_examples
            self.epoch += 1
        return ended

    def position(self, num_examples):
        """The fractional epoch: e + offset / N."""
        return self.epoch + self.offset / num_examples

    def steps_to_epoch_end(self, batch_size, num_examples):
        return -(-(num_examples - self.offset) // batch_size)

    def add_noise(self, small, big, noise_batches, batch_size, num_examples):
        """Adds to the epoch's sums the unbiased estimates of the next
        `len(small)` steps of `batch_size` (squared norms `small` and `big`
        at the `noise_batches` (small, big)); call it before `advance` counts
        those steps. Only steps that end past half the epoch count
        (`LATE_FRACTION`): the schedule wants the noise scale at the epoch's
        end, as `model.fit`'s path measures it there, and a mean over the
        whole epoch is ruled by its first steps, whose true gradient can be
        far larger (PTB-small's first epoch: 7.4 over the whole epoch, 270
        over its last hundred steps)."""
        ends = self.offset + batch_size * (np.arange(len(small)) + 1)
        late = ends > LATE_FRACTION * num_examples
        if not np.any(late):
            return
        grad_sq, trace = noise_scale_estimates(
            np.asarray(small, np.float64)[late],
            np.asarray(big, np.float64)[late], *noise_batches)
        self.noise_sums = [self.noise_sums[0] + float(np.sum(grad_sq)),
                           self.noise_sums[1] + float(np.sum(trace)),
                           self.noise_sums[2] + int(np.sum(late))]

    def take_noise_means(self):
        """The mean (|G|^2, tr(Sigma)) of the epoch's counted steps (NaN
        without one); resets the sums."""
        grad_sq, trace, count = self.noise_sums
        self.noise_sums = [0.0, 0.0, 0]
        return (grad_sq / count, trace / count) if count else (math.nan,) * 2

    def get_state(self):
        return dict(epoch=self.epoch, offset=self.offset,
                    examples=self.examples, noise_sums=list(self.noise_sums),
                    batch_start=self.batch_start)

    def set_state(self, state):
        self.epoch, self.offset = state["epoch"], state["offset"]
        self.examples = state["examples"]
        self.noise_sums = list(state["noise_sums"])
        self.batch_start = state.get("batch_start")
        self.restored = True


def make_broadcast(strategy):
    """Returns broadcast(values) -> replica 0's (the chief's) float64 values
    on every worker, bit for bit. A collective: every worker calls it at the
    same point. It makes the workers' adaptive decisions one decision."""

    def from_replica_zero(values):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return tf.where(tf.equal(replica, 0), values, tf.zeros_like(values))

    @tf.function
    def total(values):
        return strategy.reduce(
            "SUM", strategy.run(from_replica_zero, args=(values,)), axis=None)

    def broadcast(values):
        return [float(v) for v in
                total(tf.constant(values, tf.float64)).numpy()]

    return broadcast
