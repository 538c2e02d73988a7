"""A batch that grows during `model.fit`, on every Keras 3 backend.

Three pieces, each reusable alone:

    GrowingBatchRate     the learning rate at a point of training and the
                         batch in use there (the rule, in `keras.ops`)
    RateAtBatch          that rate over optimizer steps at one batch, a
                         `LearningRateSchedule` for loops that compile a
                         step per batch (the zoo's tf.distribute trainer)
    GrowingBatchDataset  a `keras.utils.PyDataset` over in-memory arrays whose
                         batch is set at each epoch's start
    GrowingBatch         the `fit` callback that joins them: it sets each
                         epoch's batch from a batch schedule
                         (`keras_legw.batch_schedules`) and each step's rate
                         by driving the growing-batch engine
                         (`keras_legw.batch_growth`), measures the noise
                         scale from the training steps for an adaptive
                         schedule, logs `batch_size`, `learning_rate` and
                         `examples_seen`, and keeps what a resume needs

Progress counts in examples seen: a `fit` epoch is one pass over the data
at the batch of that epoch, and the epoch reached before a step is
``e = examples_seen / N``. `GrowingBatch`'s docstring has an example.
"""

import json
import os
import warnings

import keras
import numpy as np
from keras import ops

from keras_legw import scaling as rules
from keras_legw._validation import (check_float_learning_rate,
                                    check_non_negative, check_one_of,
                                    check_positive, check_positive_integer)
from keras_legw.batch_growth import LATE_FRACTION, BatchGrowth
from keras_legw.noise_step import MEASURE_LOGS, StepSwitch
from keras_legw.schedules import DECAY_SHAPES, linear_warmup

# The peak rules of `scaling.scale_learning_rate` that need no noise scale.
RATE_RULES = tuple(rule for rule in rules.LEARNING_RATE_SCALINGS
                   if rule != "noise")
GROWING_DECAYS = ("constant", "polynomial", "cosine")
STATE_FILE = "growing_batch_state.json"
# What Keras' EpochIterator warns when an epoch ends before the batch count
# it read at the start of fit (the first epoch's, the largest).
_SHORT_EPOCH_WARNING = "Your input ran out of data"


@keras.saving.register_keras_serializable(package="keras_legw")
class GrowingBatchRate:
    """The learning rate of a run whose batch grows, at epoch ``e`` (examples
    seen / N, before the step) and the global batch ``B`` of that step:

        rate(e, B) = P(B) * g(e)

        P(B) = eta0 * sqrt(B / B0)     rate_rule="sqrt" (LEGW's peak at the
                                       current batch); "linear": eta0 B/B0;
                                       "none": eta0 (Smith et al. 2018: the
                                       growing batch replaces the decay)
        W    = w0 * B_start / B0       LEGW's warmup, in epochs, of the
                                       batch the run starts at
        D    = decay_begin_epochs      (default W)
        g(e) = e / W                   for e < W
               1                       for W <= e < D
               shape((e - D) / (E - D)) for D <= e, e clipped to E

    with shape one of constant (1), polynomial ((1 - t) ** power) and cosine
    ((1 + cos(pi t)) / 2), all ending at 0. At a batch change ``e`` is
    continuous, so the warmup and the decay go on where they were; only the
    peak factor jumps, from P(B_old) to P(B_new), on the first step at the
    new batch. With a constant batch ``B_start`` and ``D = W`` this is the
    `LEGW` schedule at that batch.

    Legend: ``eta0`` `base_learning_rate`, ``B0`` `base_batch_size`, ``w0``
    `base_warmup_epochs`, ``B_start`` `start_batch_size`, ``E``
    `total_epochs`.

    Args:
        base_learning_rate (float): ``eta0``, the peak rate tuned at
            `base_batch_size`.
        base_batch_size (int): ``B0``, the batch the hyperparameters were
            tuned at.
        start_batch_size (int): ``B_start``, the batch the run starts at.
        base_warmup_epochs (float): ``w0``, the warmup in epochs tuned at
            `base_batch_size`.
        total_epochs (float): ``E``, the length of the run in epochs.
        rate_rule (str): the peak rule ``P(B)``: "sqrt", "linear" or "none".
        decay (str): the shape: "constant", "polynomial" or "cosine".
        power (float): exponent of the polynomial decay (> 0).
        decay_begin_epochs (float | None): ``D``, the epoch the decay
            begins, in ``[W, E)``; None: ``W``.

    Raises:
        ValueError: naming a bad argument (a warmup not shorter than the run,
            a decay beginning inside the warmup or at the end, ...).
    """

    def __init__(self, base_learning_rate, base_batch_size, start_batch_size,
                 base_warmup_epochs, total_epochs, rate_rule="sqrt",
                 decay="polynomial", power=2.0, decay_begin_epochs=None):
        self.base_learning_rate = base_learning_rate
        self.base_batch_size = base_batch_size
        self.start_batch_size = start_batch_size
        self.base_warmup_epochs = base_warmup_epochs
        self.total_epochs = total_epochs
        self.rate_rule = rate_rule
        self.decay = decay
        self.power = power
        self.decay_begin_epochs = decay_begin_epochs
        check_positive("base_learning_rate", base_learning_rate)
        check_one_of("rate_rule", rate_rule, RATE_RULES)
        check_one_of("decay", decay, GROWING_DECAYS)
        check_positive("power", power)
        check_positive("total_epochs", total_epochs)
        check_positive("start_batch_size", start_batch_size)
        self.warmup_epochs = rules.scale_warmup_epochs(
            base_warmup_epochs,
            rules.batch_scale_factor(base_batch_size, start_batch_size))
        if self.warmup_epochs >= total_epochs:
            raise ValueError(
                "Argument `base_warmup_epochs` must give a warmup shorter than"
                f" `total_epochs`: at start_batch_size={start_batch_size} it "
                f"is {self.warmup_epochs:g} epochs. Received: "
                f"base_warmup_epochs={base_warmup_epochs!r}, "
                f"total_epochs={total_epochs!r}")
        self.decay_begin = (self.warmup_epochs if decay_begin_epochs is None
                            else decay_begin_epochs)
        check_non_negative("decay_begin_epochs", self.decay_begin)
        if not self.warmup_epochs <= self.decay_begin < total_epochs:
            raise ValueError(
                "Argument `decay_begin_epochs` must be in [warmup_epochs, "
                f"total_epochs) = [{self.warmup_epochs:g}, {total_epochs:g})."
                f" Received: decay_begin_epochs={decay_begin_epochs!r}")

    def peak_learning_rate(self, batch_size):
        """``P(B)``: the rate at `batch_size` outside warmup and decay.

        Args:
            batch_size (int): the global batch ``B``.

        Returns:
            rate (float): the peak rate at that batch.
        """
        return rules.scale_learning_rate(
            self.base_learning_rate,
            rules.batch_scale_factor(self.base_batch_size, batch_size),
            self.rate_rule)

    def __call__(self, epoch, batch_size):
        """``rate(e, B)``; `epoch` and `batch_size` may be tensors.

        Args:
            epoch (float): ``e``, examples seen / N before the step.
            batch_size (int): ``B``, the global batch of the step.

        Returns:
            rate (Tensor): the learning rate (float32).
        """
        e = ops.cast(epoch, "float32")
        k = ops.cast(batch_size, "float32") / float(self.base_batch_size)
        factor = rules.peak_factor(k, self.rate_rule, ops.sqrt)
        begin, total = float(self.decay_begin), float(self.total_epochs)
        since = ops.maximum(ops.minimum(e, total) - begin, 0.0)
        shape, own = DECAY_SHAPES[self.decay]
        after = shape(since / (total - begin), since, 1.0, 0.0,
                      *(getattr(self, name) for name in own))
        return (self.base_learning_rate * factor
                * linear_warmup(e, 1.0, self.warmup_epochs, after))

    def get_config(self):
        return dict(base_learning_rate=self.base_learning_rate,
                    base_batch_size=self.base_batch_size,
                    start_batch_size=self.start_batch_size,
                    base_warmup_epochs=self.base_warmup_epochs,
                    total_epochs=self.total_epochs, rate_rule=self.rate_rule,
                    decay=self.decay, power=self.power,
                    decay_begin_epochs=self.decay_begin_epochs)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_legw")
class RateAtBatch(keras.optimizers.schedules.LearningRateSchedule):
    """A `GrowingBatchRate` over optimizer steps while the batch stays
    `batch_size`: for the optimizer's step ``s``,

        e(s) = start_epoch + (s - start_step) * B / N
        rate(s) = growing_rate(e(s), B)

    so a training loop that compiles its step per batch (the model zoo's
    tf.distribute trainer) sets one of these as the optimizer's rate at each
    batch change, and the rule stays `GrowingBatchRate`'s. ``N`` is
    `num_examples`, the examples of an epoch at this batch; `start_step` and
    `start_epoch` are the step and the (fractional) epoch, in examples seen
    / N, where this batch begins (`BatchGrowth.start_batch` gives them).

    Args:
        growing_rate (GrowingBatchRate): the rule (or its `get_config()`).
        batch_size (int): ``B``, the global batch while this schedule holds.
        num_examples (int): ``N``, the examples of an epoch at this batch.
        start_step (int): the optimizer step where this batch begins.
        start_epoch (float): the epoch where this batch begins.

    Raises:
        ValueError: naming a bad argument.
    """

    def __init__(self, growing_rate, batch_size, num_examples, start_step=0,
                 start_epoch=0.0):
        if isinstance(growing_rate, dict):  # from get_config
            growing_rate = GrowingBatchRate.from_config(growing_rate)
        if not isinstance(growing_rate, GrowingBatchRate):
            raise ValueError("Argument `growing_rate` must be a "
                             "GrowingBatchRate. Received: "
                             f"{type(growing_rate).__name__}")
        check_positive_integer("batch_size", batch_size)
        check_positive_integer("num_examples", num_examples)
        check_non_negative("start_step", start_step)
        check_non_negative("start_epoch", start_epoch)
        self.growing_rate = growing_rate
        self.batch_size = batch_size
        self.num_examples = num_examples
        self.start_step = start_step
        self.start_epoch = start_epoch

    def __call__(self, step):
        steps = ops.cast(step, "float32") - float(self.start_step)
        epoch = (float(self.start_epoch)
                 + steps * (self.batch_size / self.num_examples))
        return self.growing_rate(epoch, self.batch_size)

    def get_config(self):
        return dict(growing_rate=self.growing_rate.get_config(),
                    batch_size=self.batch_size,
                    num_examples=self.num_examples,
                    start_step=self.start_step, start_epoch=self.start_epoch)


class GrowingBatchDataset(keras.utils.PyDataset):
    """In-memory `(x, y)` in batches whose size is set per epoch.

    `set_epoch(epoch, batch_size)` (called by `GrowingBatch` at each epoch's
    start) draws that epoch's order, a permutation seeded by
    ``(seed, epoch)``, and cuts it into batches of `batch_size`: every
    example exactly once per epoch, the last batch smaller when
    `batch_size` does not divide the examples (as `fit(x, y, batch_size)`
    does), or left out with `drop_remainder`.

    Until its first epoch is set it serves Keras' look at the first two
    batches, from which TensorFlow's `PyDataset` adapter fixes every
    dimension that they share: so those two differ in size by one, and the
    batch dimension stays free for the batches that grow.

    Pass it to `fit` with ``shuffle=False``: it shuffles itself, by a seeded
    permutation that a resume can redraw, while `fit`'s shuffle would reorder
    the batches by Python's global `random` (`GrowingBatch` raises if it
    sees that happen).

    Args:
        x (numpy.ndarray | list | tuple | dict): the inputs, an array (or a
            list, tuple or dict of arrays) with the examples first.
        y (numpy.ndarray | list | tuple | dict): the targets, likewise.
        batch_schedule (BatchRamp | NoiseBatchSchedule): the batch of each
            epoch.
        seed (int): seeds each epoch's permutation.
        shuffle (bool): False keeps the given order every epoch.
        drop_remainder (bool): leave out the last, smaller batch of each
            epoch.
        **kwargs (Any): `keras.utils.PyDataset`'s (workers, ...).

    Raises:
        ValueError: for `x` and `y` of different lengths, something other
            than a batch schedule, or a schedule whose largest batch is
            past the examples.
    """

    def __init__(self, x, y, batch_schedule, seed=0, shuffle=True,
                 drop_remainder=False, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y = x, y
        self.num_examples = _num_rows(y, "y")
        x_rows = _num_rows(x, "x")
        if x_rows != self.num_examples:
            raise ValueError(
                "Arguments `x` and `y` must hold the same number of examples."
                f" Received: {x_rows} and {self.num_examples}")
        if not all(hasattr(batch_schedule, name) for name in
                   ("batch_size_for_epoch", "max_batch_size",
                    "start_batch_size", "adaptive")):
            raise ValueError(
                "Argument `batch_schedule` must be a batch schedule "
                "(keras_legw.BatchRamp or keras_legw.NoiseBatchSchedule; "
                "keras_legw.batch_schedule makes one from its text). "
                f"Received: batch_schedule={batch_schedule!r}")
        self.batch_schedule = batch_schedule
        self.seed, self.shuffle = seed, shuffle
        self.drop_remainder = drop_remainder
        if batch_schedule.max_batch_size > self.num_examples:
            raise ValueError(
                "Argument `batch_schedule` must not go past the "
                f"{self.num_examples} examples. Received: max_batch_size="
                f"{batch_schedule.max_batch_size}")
        self.epoch, self.batch_size = None, batch_schedule.start_batch_size
        self._order = np.arange(self.num_examples)
        self.requested = []  # batch indices asked for since `set_epoch`

    def set_epoch(self, epoch, batch_size):
        """Makes the batches of `epoch` (0-based) at `batch_size`."""
        self.epoch, self.batch_size = int(epoch), int(batch_size)
        rng = np.random.default_rng([self.seed, self.epoch])
        self._order = (rng.permutation(self.num_examples) if self.shuffle
                       else np.arange(self.num_examples))
        self.requested = []

    @property
    def num_batches(self):
        whole, rest = divmod(self.num_examples, self.batch_size)
        return whole + (1 if rest and not self.drop_remainder else 0)

    def __len__(self):
        return self.num_batches

    def batch_indices(self, index):
        """The example indices of batch `index` of the current epoch."""
        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch {index} of {self.num_batches}")
        if self.epoch is None:  # Keras' look before the first epoch.
            return self._order[:max(1, self.batch_size - index)]
        return self._order[index * self.batch_size:
                           (index + 1) * self.batch_size]

    def __getitem__(self, index):
        if self.epoch is not None:
            self.requested.append(index)
        rows = self.batch_indices(index)
        return _take(self.x, rows), _take(self.y, rows)


def _num_rows(data, name):
    """The examples in `data`: an array, or a list, tuple or dict of arrays
    (a multi-input model's) that all hold the same number."""
    if isinstance(data, dict):
        data = list(data.values())
    if not isinstance(data, (list, tuple)):
        return len(data)
    counts = {len(part) for part in data}
    if len(counts) != 1:
        raise ValueError(
            f"Argument `{name}` must hold the same number of examples in each"
            f" of its arrays. Received: {sorted(len(p) for p in data)}")
    return counts.pop()


def _take(data, rows):
    if isinstance(data, (list, tuple)):
        return type(data)(_take(d, rows) for d in data)
    if isinstance(data, dict):
        return {k: _take(v, rows) for k, v in data.items()}
    return data[rows]


class GrowingBatch(keras.callbacks.ProgbarLogger):
    """Trains `model.fit` at a batch that grows (a `GrowingBatchDataset`'s
    schedule) with the rate of a `GrowingBatchRate`, by driving the
    library's growing-batch engine (`keras_legw.batch_growth.BatchGrowth`,
    which the model zoo's trainer drives too).

    At each epoch's start it asks the engine for the batch and hands it to
    the data set; before each step it sets the optimizer's rate to the
    engine's (``rate(examples_seen / N, B)``); after each step it counts the
    step's rows. For an adaptive schedule the noise scale comes from the
    training steps themselves: fit runs `keras_legw.noise_step`'s train
    step, which computes each batch's gradient as the weighted mean of its
    two halves' (the same update, no extra pass over the data) and logs the
    two squared norms, on the steps of each epoch's second half (the others
    run Keras' own step: their readings would not be used); the engine
    turns those steps into its evidence, and the schedule decides at the
    epoch's end (see `NoiseBatchSchedule`). What that step does not support
    (loss scaling, the optimizer's gradient accumulation,
    `steps_per_execution > 1`) is an error at the start of `fit`. Epoch
    logs gain `batch_size`,
    `learning_rate` (of the epoch's last step), `examples_seen` and, for an
    adaptive schedule, `noise_scale` (the epoch's, from its late steps), so
    `History` and a `TensorBoard` listed after it record them.

    It is also `fit`'s progress bar (a `ProgbarLogger`: Keras then adds no
    other), because Keras' own counts the batches once, at the first epoch:
    this one counts each epoch's. Keras' epoch iterator also reads the count
    once, so a later epoch with fewer batches ends when its data does; the
    warning Keras prints for that ("Your input ran out of data") is silenced
    during `fit`, for this reason only.

    Resume: list it first, before `keras.callbacks.BackupAndRestore` (and
    `TensorBoard`), and give it the `BackupAndRestore`'s `backup_dir`. At
    each epoch's end this writes the engine's state for the next epoch to
    `backup_dir/growing_batch_state.json` (before the backup saves the
    weights, so a crash in between loses nothing); `BackupAndRestore`
    resumes `fit` at an epoch, and this picks up that epoch's state, so a
    resumed run sees the batches, rates and data order of an uninterrupted
    one, and ends as it does (tested on TensorFlow, JAX and PyTorch). A
    backup in the middle of an epoch (`BackupAndRestore(save_freq=N)`),
    which Keras resumes from the epoch's first batch with mid-epoch
    weights, is refused at its first save and at a resume from it.

    The optimizer must have a float learning rate (it is set every step).
    Under JAX, reading `self.model` syncs fit's state, so the rate set
    before a step is the one the step uses. Under TensorFlow it also
    corrects the optimizer's `iterations` at each epoch's end: Keras' train
    function increments them once more on the call that finds a shorter
    epoch's data exhausted. With an adaptive schedule, batch normalization
    sees each half of a measured step's batch as its batch.

    Examples:
        >>> data = GrowingBatchDataset(x, y, BatchRamp("0:128,1:512,4:2048"))
        >>> rate = GrowingBatchRate(base_learning_rate=0.002,
        ...                         base_batch_size=128, start_batch_size=128,
        ...                         base_warmup_epochs=0.2, total_epochs=25)
        >>> model.compile(optimizer=keras.optimizers.Adam(0.002), loss=...)
        >>> model.fit(data, epochs=25, shuffle=False, callbacks=[
        ...     GrowingBatch(data, rate, backup_dir="/tmp/backup"),
        ...     keras.callbacks.BackupAndRestore("/tmp/backup")])

    Args:
        dataset (GrowingBatchDataset): the data set passed to `fit`.
        learning_rate (GrowingBatchRate): the rate rule.
        noise_batch_size (int | None): deprecated and ignored (the
            epoch-end measurement it set is replaced by the steps' own);
            warns (`DeprecationWarning`). `keras_legw.measure_noise_scale`
            remains as a tool.
        noise_estimates (int | None): deprecated and ignored, likewise.
        backup_dir (str | None): where the state for a resume goes (None:
            no state; then an adaptive run cannot resume).
        late_fraction (float): the part of each epoch whose steps the
            adaptive schedule is told (the steps that end past it), in
            [0, 1).

    Raises:
        ValueError: naming a bad argument; at the start of `fit`, for a
            schedule as the optimizer's rate or what the measuring step does
            not support; on a resume of an adaptive run whose state is
            missing.
    """

    def __init__(self, dataset, learning_rate, noise_batch_size=None,
                 noise_estimates=None, backup_dir=None,
                 late_fraction=LATE_FRACTION):
        super().__init__()
        if not isinstance(dataset, GrowingBatchDataset):
            raise ValueError("Argument `dataset` must be a "
                             "GrowingBatchDataset. Received: "
                             f"{type(dataset).__name__}")
        if not isinstance(learning_rate, GrowingBatchRate):
            raise ValueError("Argument `learning_rate` must be a "
                             "GrowingBatchRate. Received: "
                             f"{type(learning_rate).__name__}")
        if noise_batch_size is not None or noise_estimates is not None:
            warnings.warn(
                "Arguments `noise_batch_size` and `noise_estimates` of "
                "GrowingBatch are deprecated and ignored: the noise scale "
                "now comes from the training steps themselves.",
                DeprecationWarning, stacklevel=2)
        self.dataset, self.learning_rate = dataset, learning_rate
        self.schedule = dataset.batch_schedule
        self.engine = BatchGrowth(self.schedule, learning_rate,
                                  dataset.num_examples, late_fraction)
        self.backup_dir = backup_dir
        self._backup_seen = None
        self.rate = self._next_rate = None
        self._rows = 0  # of the step under way
        self._steps = 0
        self._first_epoch = True
        self._filter = self._switch = None

    @property
    def examples_seen(self):
        return self.engine.examples

    # fit's start and end.
    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        check_float_learning_rate(self.model.optimizer, "GrowingBatch")
        if self.schedule.adaptive:
            self._switch = StepSwitch(self.model)
        warnings.filterwarnings("ignore", message=_SHORT_EPOCH_WARNING)
        self._filter = warnings.filters[0]
        self._first_epoch = True

    def on_train_end(self, logs=None):
        if self._filter in warnings.filters:
            warnings.filters.remove(self._filter)
        if self._switch is not None:
            self._switch.remove()
            self._switch = None
        super().on_train_end(logs)

    # Epochs.
    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch:
            self._restore(epoch)
            self._steps = int(ops.convert_to_numpy(
                self.model.optimizer.iterations))
        self._first_epoch = False
        self.dataset.set_epoch(epoch, self.engine.batch_size)
        self.target = self.dataset.num_batches
        super().on_epoch_begin(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._refuse_a_mid_epoch_backup()
        if batch >= self.dataset.num_batches:
            return  # Keras asks once past a short epoch's end; no step runs.
        self._next_rate = self.engine.learning_rate()
        self.model.optimizer.learning_rate = self._next_rate
        self._rows = len(self.dataset.batch_indices(batch))
        if self._switch is not None:
            self._switch.measure(self.engine.counts_step(self._rows))

    def on_train_batch_end(self, batch, logs=None):
        logs = {} if logs is None else logs
        self.rate = self._next_rate
        readings = [logs.pop(name, None) for name in MEASURE_LOGS]
        if readings[0] is not None:
            self.engine.observe_steps(*(float(ops.convert_to_numpy(r))
                                        for r in readings),
                                      step_examples=self._rows)
        self.engine.advance(self._rows)
        self._steps += 1
        if batch == 0:
            self._check_order()
        super().on_train_batch_end(batch, logs)

    def _check_order(self):
        asked = self.dataset.requested
        if self.dataset.workers > 1:
            return  # workers fetch the batches: their requests are theirs
        if not asked:
            raise ValueError(
                "fit is training on other data than the GrowingBatchDataset "
                "given to GrowingBatch (it asked the data set for no batch): "
                "pass that data set to fit, as fit(dataset, ...), not the "
                "arrays with a batch_size.")
        if asked != list(range(len(asked))):
            raise ValueError(
                "fit shuffled the GrowingBatchDataset's batches (it asked for"
                f" batches {asked[:5]} first): pass shuffle=False to fit. The"
                " data set shuffles itself with a seeded permutation per "
                "epoch, which a resume can redraw.")

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        for name in MEASURE_LOGS:
            logs.pop(name, None)
        logs.update(batch_size=self.dataset.batch_size,
                    learning_rate=self.rate,
                    examples_seen=self.engine.examples)
        noise_scale = self.engine.end_epoch()
        if self.schedule.adaptive:
            logs["noise_scale"] = noise_scale
        # TensorFlow's train function increments the optimizer's iterations
        # also on the call that finds a short epoch's data exhausted (the
        # increment does not wait for the data); put back the true count.
        self.model.optimizer.iterations.assign(self._steps)
        self._save(epoch + 1)
        super().on_epoch_end(epoch, logs)

    # What a resume needs.
    def _state_path(self):
        return (None if self.backup_dir is None
                else os.path.join(self.backup_dir, STATE_FILE))

    def _save(self, next_epoch):
        path = self._state_path()
        if path is None:
            return
        states = _read_states(path)
        states[str(next_epoch)] = self.engine.get_state()
        os.makedirs(self.backup_dir, exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump(states, f)
        os.replace(path + ".tmp", path)

    def _refuse_a_mid_epoch_backup(self):
        """A `BackupAndRestore(save_freq=N)` in `backup_dir` saves in the
        middle of an epoch, and Keras restarts that epoch from its first
        batch with those weights: refused where its backup appears (one
        `os.stat` a step) or is resumed from."""
        if self.backup_dir is None:
            return
        path = os.path.join(self.backup_dir, "training_metadata.json")
        try:
            seen = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            return
        if seen == self._backup_seen:
            return
        self._backup_seen = seen
        with open(path) as f:
            saved = json.load(f)
        if saved.get("batch"):
            raise ValueError(
                f"GrowingBatch resumes at epoch ends only, but the backup in "
                f"{self.backup_dir} was saved after batch {saved['batch']} "
                f"of epoch {saved.get('epoch')}: Keras restarts an epoch from"
                " its first batch with such weights. Give "
                "keras.callbacks.BackupAndRestore save_freq='epoch' (its "
                "default).")

    def _restore(self, epoch):
        """The engine at the start of `epoch` (fit's first): from the state
        saved for it, or, at epoch 0 or for a fixed ramp without one, from
        the epochs alone."""
        path = self._state_path()
        states = {} if path is None else _read_states(path)
        if str(epoch) in states:
            self.engine.set_state(states[str(epoch)])
        elif epoch > 0 and self.schedule.adaptive:
            raise ValueError(
                f"fit resumes at epoch {epoch}, but the state of the adaptive "
                f"batch schedule for that epoch is not in "
                f"{path or 'backup_dir (None was given)'}. Give GrowingBatch "
                "the BackupAndRestore's backup_dir and list it first.")
        else:
            self.engine.epoch, self.engine.offset = epoch, 0
            self.engine.examples = epoch * self.dataset.num_examples


def _read_states(path):
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)
