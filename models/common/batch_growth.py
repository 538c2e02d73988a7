"""The trainer's growing batch: what it is given (`Growth`), its
micro-batches, and the broadcast that makes the workers' decisions one.

A growing run trains epoch `e` (a pass over the data) at the global batch
`schedule.batch_size_for_epoch(e)` of a `keras_legw` batch schedule, with the
learning rate of a `keras_legw.GrowingBatchRate` (the rules live there; the
trainer calls them). Progress counts in examples: the data is an endless
stream of passes, a step takes the next `B` examples of it, and an epoch ends
after the step that completes its pass (so an epoch's examples are each
example once, and a step may straddle two passes). Where training stands,
and what the adaptive schedule is told, is the library's engine
(`keras_legw.batch_growth.BatchGrowth`), which `model.fit` drives too.
"""

import dataclasses
from typing import Any, Optional

import tensorflow as tf

from keras_legw.batch_growth import examples_per_pass
from keras_legw.growing_batch import RateAtBatch


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
        return RateAtBatch(self.rate, start,
                           examples_per_pass(num_examples, start))


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
