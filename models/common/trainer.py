"""One compiled training loop for every tf.distribute strategy.

Keras 3 `model.fit` fails under MultiWorkerMirroredStrategy
(keras-team/keras#20585), so the model zoo trains with its own loop:
`strategy.run` over `strategy.distribute_datasets_from_function`, a Keras 3
model and optimizer, the loss summed per replica and divided by the global
batch. The same loop runs under the default, one-device, mirrored,
multi-worker and TPU strategies.

Progress counts in examples seen (the library's growing-batch engine,
`keras_legw.batch_growth.BatchGrowth`, which `model.fit`'s `GrowingBatch`
drives too), so a batch that grows (`growth`, see `batch_growth`) is the
same loop as a fixed one: the
batch of each epoch comes from the library's schedule, and where it changes
the step is compiled again at the new batch and the data opens where the
stream stands.

Checkpoints (model, optimizer with its step counter, the progress, any
schedule's state) are written to `model_dir/checkpoints` at every epoch end,
every `checkpoint_every_steps` steps and when SIGTERM or SIGINT asks training
to stop (see `preemption`); a restarted run restores the latest one and
continues at its step, with the same data order (see `input_pipeline`) and
the same learning rate.

The pieces: `train_step` (the compiled step), `evaluation`, `checkpoints`
(and the files beside them), `preemption`; this module holds the loop, its
logging (progress bar, TensorBoard) and the results.
"""

import dataclasses
import math
import os
import time
from typing import Callable, Optional

import keras
import tensorflow as tf

from keras_legw import scaling
from keras_legw.batch_growth import BatchGrowth, examples_per_pass
from keras_legw.batch_schedules import BatchRamp
from keras_legw.growing_batch import RateAtBatch
from keras_legw.noise_scale import NoiseScaleEstimator
from models.common import checkpoints as ckpt
from models.common import distribute, preemption
from models.common.batch_growth import accumulation_steps, make_broadcast
from models.common.evaluation import Evaluator
from models.common.train_step import (CompiledStep, StepOptions,
                                      check_step_options, noise_batches)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""


@dataclasses.dataclass(frozen=True)
class Task:
    """What an application gives the trainer.

    Attributes:
        build_model: () -> keras.Model, called inside the strategy scope.
        per_example_loss: (labels, outputs) -> loss per example, shape [b].
        train_dataset: (input_context, batch_size, epoch, offset) -> dataset
            of per-replica (inputs, labels) batches of the global batch
            `batch_size`, starting `offset` examples into pass `epoch` of
            the training stream (for a fixed number N of examples per pass,
            at example `epoch * N + offset` of it).
        eval_dataset: (input_context) -> dataset of per-replica eval batches.
        eval_sums: (model, batch) -> dict of per-replica sums (e.g. correct
            predictions and example count), summed over replicas.
        eval_metrics: (dict of summed floats) -> dict of metrics.
        example_name: what throughput counts ("images", "tokens"): results
            also hold `<example_name>_per_second`.
        example_size: how many of those one example holds (tokens per
            sequence, say; a mean where examples differ in length).
        initial_state: for models that carry a state from batch to batch
            (truncated backpropagation through time): (training, batch_size)
            -> list of zero tensors, one replica's state for its training
            batches at global batch `batch_size`, or for its evaluation
            batches. The model then takes `[inputs, *state]` and returns
            `[outputs, *new_state]`, and `eval_sums` takes and returns the
            state too: `(model, batch, state) -> (sums, new_state)`. The
            trainer carries each replica's state from step to step, starts it
            from zeros at a batch change (the rows are new) and starts every
            evaluation from zeros; other resets (at epoch starts, say) are
            the model's business, driven by its inputs. Not checkpointed: a
            run resumed mid-epoch restarts the state from zeros.
    """

    build_model: Callable
    per_example_loss: Callable
    train_dataset: Callable
    eval_dataset: Callable
    eval_sums: Callable
    eval_metrics: Callable
    example_name: str = "examples"
    example_size: float = 1
    initial_state: Optional[Callable] = None

    def zero_state(self, strategy, training, batch_size=None):
        """Each replica of `strategy` its zero state for training (at global
        batch `batch_size`) or evaluation ([] for stateless models)."""
        if self.initial_state is None:
            return []
        state = strategy.experimental_distribute_values_from_function(
            lambda context: self.initial_state(training, batch_size))
        # Where this worker has one replica (MultiWorkerMirroredStrategy
        # with a device a worker) `strategy.run` hands the state back as a
        # plain tensor: the training loop, which must keep its structure,
        # is given it in that form from the start.
        def unwrap_one(value):
            local = strategy.experimental_local_results(value)
            return local[0] if len(local) == 1 else value
        return tf.nest.map_structure(unwrap_one, state)


def _current_learning_rate(optimizer):
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def train(task, *, strategy, make_optimizer, num_examples, model_dir,
          global_batch_size=None, total_steps=None, growth=None,
          max_steps=None, checkpoint_every_steps=0, steps_per_loop=100,
          jit_compile=False, noise_scale=False, noise_scale_decay=0.99,
          global_clipnorm=None, gradient_accumulation_steps=1,
          adaptive_schedule=None, verbose=1):
    """Trains `task` for `total_steps` at `global_batch_size`, or for
    `growth.epochs` at a growing batch (`growth`), stopping early at
    `max_steps`, resuming from `model_dir`; the stats are also written to
    `model_dir/results.json`.

    Args:
        task: a `Task`.
        strategy: a tf.distribute strategy.
        make_optimizer: () -> keras optimizer, called in the strategy scope.
        num_examples: training examples per epoch, or a function of the
            global batch giving them (where an epoch depends on the batch:
            PTB's rows).
        model_dir: checkpoints, TensorBoard logs, history and results.
        global_batch_size: examples per optimizer step, over all replicas
            (without `growth`).
        total_steps: length of the run (the schedule's `total_steps`;
            without `growth`).
        growth: a `batch_growth.Growth`: the batch of each epoch and the
            rate at it. `make_optimizer` builds the optimizer with
            `growth.start_rate(num_examples)`; the trainer replaces that
            schedule at every batch.
        max_steps: stop at this step (smoke runs); None for the whole run.
        checkpoint_every_steps: also checkpoint every this many steps (0: at
            epoch ends only).
        steps_per_loop: steps per call of the compiled loop.
        jit_compile: compile the forward and backward pass with XLA.
        noise_scale: measure the gradient noise scale B_simple (see
            `keras_legw.noise_scale`) on the gradients before clipping: with
            several replicas the small batch is a replica's share and the
            big one the global batch; with one replica the batch is split
            into two halves inside the step (not for stateful models).
            Always on for an adaptive batch schedule.
        noise_scale_decay: decay of its moving averages, per step.
        global_clipnorm: clip the global batch's gradient to this norm. Done
            here, after the all-reduce: a Keras optimizer's own
            `global_clipnorm` clips each replica's partial gradient.
        gradient_accumulation_steps: N; each replica computes its share's
            gradient as the sum over N micro-batches of 1/N of its rows, one
            after another, so activations are held for a micro-batch only.
            The update, the schedule's step, clipping, the noise scale and
            checkpoints stay those of the global batch. A carried state is
            split by rows with its batch (rows are independent sequences),
            so stateful models train exactly as with N=1. Layers that mix
            rows (batch normalization) see micro-batches. With `growth`, the
            least N at every batch (see `Growth.max_replica_batch_size`).
        adaptive_schedule: a schedule that learns from the training loss
            (`keras_legw.AutoWarmupSchedule`), used by the optimizer: it is
            built in the strategy scope, given each step's global training
            loss, checked at every epoch end, and its state goes into the
            checkpoints; its `warmup_steps` and `peak_learning_rate` go into
            the results. Not with `growth`.
        verbose: 1 for a progress bar per epoch, 0 for none.

    Returns:
        (results, model): the stats dict and the trained model. Its
        `examples_per_second` (and `<example_name>_per_second`) leaves out
        the session's first loop at each batch, which includes tracing,
        unless it was the only one; `history` holds each epoch's batch,
        steps and examples.

    Raises:
        ValueError: if the global batch does not divide among the replicas
            and micro-batches, or for a bad combination of arguments.
        NonFiniteLossError: if the loss becomes NaN or Inf.
    """
    _check_length(global_batch_size, total_steps, growth, adaptive_schedule)
    if steps_per_loop < 1:
        raise ValueError(f"steps_per_loop must be >= 1. Received: {steps_per_loop}")
    plan = _BatchPlan(growth, global_batch_size, num_examples,
                      StepOptions(global_batch_size or 0, jit_compile,
                                  noise_scale or _adaptive(growth),
                                  global_clipnorm,
                                  gradient_accumulation_steps),
                      strategy.num_replicas_in_sync,
                      task.initial_state is not None)
    plan.check_all_batches()
    own_dir = distribute.worker_dir(model_dir, strategy)
    ckpt.prepare_model_dir(own_dir)
    ckpt.check_resume_batch(model_dir, global_batch_size,
                            *_identity_parts(total_steps, growth))
    with strategy.scope():
        model = task.build_model()
        if adaptive_schedule is not None:
            adaptive_schedule.build()
        optimizer = make_optimizer()
        optimizer.build(model.trainable_variables)
    if growth is not None and not isinstance(
            optimizer._learning_rate, RateAtBatch):
        raise ValueError(
            "With a growing batch, make_optimizer must build the optimizer "
            "with learning_rate=growth.start_rate(num_examples) (a "
            "keras_legw.RateAtBatch, which the trainer replaces at each "
            f"batch). Received: {type(optimizer._learning_rate).__name__}")
    # Where training stands, in examples: the library's growing-batch engine
    # (a fixed batch is a ramp of one stage).
    progress = BatchGrowth(
        BatchRamp(((0, global_batch_size),)) if growth is None
        else growth.schedule, None if growth is None else growth.rate,
        num_examples)
    # model.variables explicitly: Keras 3 models track their variables for
    # tf.train.Checkpoint only partly; this list holds every one of them
    # (non-trainable statistics and random-seed states included).
    trackables = {ckpt.MODEL_VARIABLES: list(model.variables),
                  "optimizer": optimizer, "progress": ckpt.JsonState(progress)}
    if adaptive_schedule is not None:
        trackables["adaptive_schedule"] = ckpt.JsonState(adaptive_schedule)
    run = _Run(task=task, strategy=strategy, model=model, optimizer=optimizer,
               plan=plan, progress=progress, own_dir=own_dir, verbose=verbose,
               checkpoints=ckpt.Checkpoints(trackables, model_dir, own_dir),
               checkpoint_every_steps=checkpoint_every_steps,
               steps_per_loop=steps_per_loop,
               estimator=NoiseScaleEstimator(noise_scale_decay)
               if plan.options.noise_scale else None,
               adaptive_schedule=adaptive_schedule)
    results = run.train(total_steps, max_steps)
    ckpt.write_json(os.path.join(own_dir, ckpt.RESULTS_FILE), results)
    return results, model


def _identity_parts(total_steps, growth):
    """(batch_schedule, total_steps, epochs) of `ckpt.run_identity`."""
    if growth is None:
        return None, total_steps, None
    return growth.text, None, growth.epochs


def _adaptive(growth):
    return growth is not None and getattr(growth.schedule, "adaptive", False)


def _check_length(global_batch_size, total_steps, growth, adaptive_schedule):
    """One ValueError for a run whose batch or length is not given once."""
    if growth is None and (global_batch_size is None or total_steps is None):
        raise ValueError("train() needs global_batch_size and total_steps, "
                         "or growth (a growing batch).")
    if growth is not None and (global_batch_size is not None
                               or total_steps is not None):
        raise ValueError(
            "train() takes growth (a growing batch, its length in epochs) "
            "or global_batch_size and total_steps, not both. Received: "
            f"global_batch_size={global_batch_size}, total_steps="
            f"{total_steps}, growth={growth}")
    if growth is not None and adaptive_schedule is not None:
        raise ValueError(
            "A growing batch sets the learning rate itself "
            "(keras_legw.GrowingBatchRate); an adaptive warmup "
            "(--schedule=autowu) cannot be combined with it.")


class _BatchPlan:
    """The batch of each epoch, the examples of an epoch at a batch, and the
    step options there (micro-batches, the noise scale's two batches)."""

    def __init__(self, growth, global_batch_size, num_examples, options,
                 replicas, stateful):
        self.growth, self.fixed = growth, global_batch_size
        self._num_examples, self.options = num_examples, options
        self.replicas, self.stateful = replicas, stateful

    def num_examples(self, batch_size):
        return examples_per_pass(self._num_examples, batch_size)

    def step_options(self, batch_size):
        options = self.options
        halves = 2 if options.noise_scale and self.replicas == 1 else 1
        limit = None if self.growth is None else \
            self.growth.max_replica_batch_size
        pieces = accumulation_steps(batch_size, self.replicas,
                                    options.gradient_accumulation_steps,
                                    limit, halves) \
            if batch_size % self.replicas == 0 else \
            options.gradient_accumulation_steps
        options = dataclasses.replace(options, global_batch_size=batch_size,
                                      gradient_accumulation_steps=pieces)
        check_step_options(options, self.replicas, self.stateful)
        return options

    def check_all_batches(self):
        """Every batch the schedule may use splits (before any training)."""
        if self.growth is None:
            self.step_options(self.fixed)
            return
        schedule = self.growth.schedule
        candidates = getattr(schedule, "candidates", None) or sorted(
            {schedule.batch_size_for_epoch(e)
             for e in range(math.ceil(self.growth.epochs))})
        for batch_size in candidates:
            self.step_options(batch_size)
            examples = self.num_examples(batch_size)
            if batch_size > examples:
                raise ValueError(
                    f"Flag --batch_schedule={self.growth.text}: a global "
                    f"batch of {batch_size} is more than the {examples} "
                    "training examples of an epoch (a step would train "
                    "several epochs). Keep every batch at most the "
                    "examples, or train on more of them.")


class _Run:
    """One session of training: the loop over epochs and loop calls, with
    its logging, checkpoints, evaluation and preemption checks."""

    def __init__(self, *, task, strategy, model, optimizer, plan, progress,
                 checkpoints, own_dir, checkpoint_every_steps, steps_per_loop,
                 estimator, adaptive_schedule, verbose):
        self.task, self.strategy, self.optimizer = task, strategy, optimizer
        self.model, self.plan, self.progress = model, plan, progress
        self.checkpoints = checkpoints
        self.own_dir, self.verbose = own_dir, verbose
        self.checkpoint_every_steps = checkpoint_every_steps
        self.steps_per_loop = steps_per_loop
        self.estimator, self.adaptive_schedule = estimator, adaptive_schedule
        self.growth = plan.growth
        self.chief = distribute.is_chief(strategy)
        self.writer = tf.summary.create_file_writer(
            os.path.join(own_dir, "tensorboard")) if self.chief else \
            tf.summary.create_noop_writer()
        self.agree_to_stop = preemption.make_agreement(strategy)
        self.broadcast = make_broadcast(strategy) if _adaptive(self.growth) \
            else None
        self.examples_and_seconds = {"traced": [0, 0.0], "timed": [0, 0.0]}
        self.session_steps, self.loss = 0, float("nan")
        self.batch = self.step_fn = None

    def train(self, total_steps, max_steps):
        """Trains from the restored step to the run's end (or `max_steps`);
        returns the stats."""
        self.step, self.history, self.train_seconds = \
            self.checkpoints.restore(
                lambda: int(self.optimizer.iterations.numpy()))
        self.start_step = self.step
        if not self.progress.examples and self.step:  # an older checkpoint
            self.progress.advance(self.step * self.plan.fixed)
        self.total_steps, self.max_steps = total_steps, max_steps
        self.metrics = self.history[-1]["metrics"] if self.history else {}
        self.evaluate = Evaluator(self.task, self.strategy, self.model)
        wall_start = time.perf_counter()
        with preemption.StopRequests() as self.stops:
            # Written once the signals are caught: training is about to start.
            ckpt.write_json(os.path.join(self.own_dir, ckpt.RUN_FILE),
                            ckpt.run_identity(self.plan.fixed,
                                              *_identity_parts(
                                                  self.total_steps,
                                                  self.growth)))
            while not self._finished():
                self._epoch()
        self.writer.flush()
        return self._results(time.perf_counter() - wall_start)

    # The run's length.
    def _finished(self):
        return self._steps_left() <= 0

    def _steps_left(self):
        """Steps to the run's end from here, at the current epoch's batch."""
        if self.growth is None:
            left = self.total_steps - self.step
        else:
            left = self.progress.steps_left(self.growth.epochs)
        if self.max_steps is not None:
            left = min(left, self.max_steps - self.step)
        return left

    # The batch.
    def _use_batch(self, batch):
        """Compiles the step, opens the data and (growing) sets the rate at
        `batch`, where it changes: the state restarts from zeros."""
        if batch == self.batch:
            return
        options = self.plan.step_options(batch)
        n = self.plan.num_examples(batch)
        if self.growth is not None:
            start = self.progress.start_batch(self.step)
            self.optimizer.learning_rate = RateAtBatch(
                self.growth.rate, batch, n, start["step"], start["epoch"])
        self.step_fn = CompiledStep(self.task, self.strategy, self.model,
                                    self.optimizer, options)
        epoch, offset = self.progress.epoch, self.progress.offset
        self.iterator = iter(self.strategy.distribute_datasets_from_function(
            lambda context: self.task.train_dataset(context, batch, epoch,
                                                    offset)))
        self.state = self.task.zero_state(self.strategy, training=True,
                                          batch_size=batch)
        self.batch, self.noise_batches = batch, noise_batches(
            batch, self.strategy.num_replicas_in_sync)
        self.loops_at_batch = 0

    # Epochs.
    def _epoch(self):
        """Trains to the end of the current epoch (or the run's), then
        evaluates and checkpoints."""
        progress = self.progress
        self._use_batch(progress.batch_size)
        epoch_end = self.step + min(progress.steps_to_epoch_end(),
                                    self._steps_left())
        progbar = keras.utils.Progbar(
            epoch_end - self.step, verbose=self.verbose if self.chief else 0,
            unit_name="step")
        index = progress.epoch
        if self.chief and self.verbose:
            print(f"Epoch {index + 1}/{self._num_epochs()} (batch "
                  f"{self.batch}, steps {self.step}-{epoch_end})", flush=True)
        epoch_ended = False
        while self.step < epoch_end:
            epoch_ended = self._loop_call(self._next_stop(epoch_end))
            # Before any checkpoint of this step, which must hold its result.
            self._check_adaptive_schedule(epoch_ended)
            progbar.update(self.step - (epoch_end - progbar.target),
                           [("loss", self.loss),
                            ("lr", _current_learning_rate(self.optimizer))])
            every = self.checkpoint_every_steps
            if every and self.step % every == 0 and self.step < epoch_end:
                self.checkpoints.save(self.step, self.train_seconds)
            if self.step < epoch_end:  # at an epoch end: after its evaluation
                self._stop_if_asked()
        if epoch_ended:
            self._observe_noise()
        self._evaluate_and_save()
        if not self._finished():  # a finished run finishes
            self._stop_if_asked()

    def _num_epochs(self):
        if self.growth is not None:
            return math.ceil(self.growth.epochs)
        return math.ceil(round(scaling.steps_to_epochs(
            self.total_steps, self.plan.num_examples(self.batch), self.batch),
            6))

    def _observe_noise(self):
        """The engine tells an adaptive schedule the finished epoch's
        evidence, the chief's on every worker."""
        self.progress.end_epoch(self.broadcast)

    def _next_stop(self, epoch_end):
        stop = min(epoch_end, self.step + self.steps_per_loop)
        if self.checkpoint_every_steps:
            every = self.checkpoint_every_steps
            stop = min(stop, (self.step // every + 1) * every)
        if self.adaptive_schedule is not None:
            check = self.adaptive_schedule.next_check_step(self.step)
            stop = stop if check is None else min(stop, check)
        return stop

    def _check_adaptive_schedule(self, true_epoch_end):
        """The adaptive schedule's test, where it asks for one (at true
        epoch ends, not where `max_steps` cut an epoch, or every so many
        steps)."""
        schedule = self.adaptive_schedule
        if schedule is not None and schedule.is_check_step(self.step,
                                                           true_epoch_end):
            schedule.check()

    def _loop_call(self, stop):
        """Runs the steps up to `stop` in one call; logs what they gave.
        Returns whether they ended an epoch."""
        start = time.perf_counter()
        steps = stop - self.step
        losses, small, big, self.state = self.step_fn.train_loop(
            self.iterator, tf.constant(steps), self.state)
        self.loss = float(tf.reduce_mean(losses))
        seconds = time.perf_counter() - start
        if not math.isfinite(self.loss):
            raise NonFiniteLossError(
                f"The training loss became {self.loss} in steps {self.step}-"
                f"{stop} (learning rate "
                f"{_current_learning_rate(self.optimizer):.4g}). Training "
                f"stopped; the last checkpoint ({self.checkpoints.latest}) is "
                "intact. Lower --base_learning_rate or check the input data.")
        self._time(steps, seconds)
        self.session_steps += steps
        self.step = stop
        if self.estimator:
            small, big = small.numpy(), big.numpy()
            for small_sq, big_sq in zip(small, big):
                self.estimator.update(small_sq, big_sq, *self.noise_batches)
            if self.broadcast is not None:
                self.progress.observe_steps(small, big, *self.noise_batches)
        ended = self.progress.advance(steps * self.batch)
        if self.adaptive_schedule is not None:
            self.adaptive_schedule.observe(losses.numpy())
        self._log(steps * self.batch / seconds)
        return ended

    def _time(self, steps, seconds):
        """Throughput leaves out the first call at each batch (it includes
        tracing), unless no other call ran."""
        key = "traced" if self.loops_at_batch == 0 else "timed"
        self.examples_and_seconds[key][0] += steps * self.batch
        self.examples_and_seconds[key][1] += seconds
        self.loops_at_batch += 1
        self.train_seconds += seconds

    def _log(self, rate):
        with self.writer.as_default(step=self.step):
            tf.summary.scalar("loss", self.loss)
            tf.summary.scalar("learning_rate",
                              _current_learning_rate(self.optimizer))
            tf.summary.scalar("examples_per_second", rate)
            tf.summary.scalar("batch_size", self.batch)
            tf.summary.scalar("examples_seen", self.progress.examples)
            if self.estimator:
                tf.summary.scalar("noise_scale", self.estimator.noise_scale)

    def _evaluate_and_save(self):
        self.metrics = self.evaluate()
        if self.estimator:
            self.metrics["noise_scale"] = self.estimator.noise_scale
        with self.writer.as_default(step=self.step):
            for name, value in self.metrics.items():
                tf.summary.scalar(f"eval/{name}", value)
        n = self.plan.num_examples(self.batch)
        adaptive = self.broadcast is not None
        self.history.append({
            "step": self.step,
            "epoch": (scaling.steps_to_epochs(self.step, n, self.batch)
                      if self.growth is None else self.progress.position),
            "batch_size": self.batch, "examples": self.progress.examples,
            **({"noise_scale": self.progress.last_noise_scale}
               if adaptive else {}),
            "train_seconds": self.train_seconds, "loss": self.loss,
            "metrics": self.metrics})
        if self.chief and self.verbose:
            print("  " + "  ".join(f"{k}: {v:.4f}"
                                   for k, v in self.metrics.items()),
                  flush=True)
        self.checkpoints.save(self.step, self.train_seconds)
        self.checkpoints.write_history(self.history)

    def _stop_if_asked(self):
        """Every worker calls this at the same steps (a collective)."""
        signal_number = self.agree_to_stop(self.stops.signal_number)
        if signal_number:
            self.checkpoints.save(self.step, self.train_seconds)
            raise preemption.Preempted(signal_number, self.step,
                                       self.checkpoints.latest)

    def _results(self, wall_seconds):
        examples, seconds = self.examples_and_seconds["timed"]
        if not seconds:
            examples, seconds = self.examples_and_seconds["traced"]
        rate = examples / seconds if seconds else None
        schedule = self.adaptive_schedule
        batch = self.batch or self.progress.batch_size
        n = self.plan.num_examples(batch)
        return {
            "steps": self.step,
            "epochs": (scaling.steps_to_epochs(self.step, n, batch)
                       if self.growth is None else
                       self.progress.position),
            "global_batch_size": batch,
            "examples": self.progress.examples,
            **({} if self.growth is None else {
                "batch_schedule": self.growth.text,
                "batch_sizes": [h["batch_size"] for h in self.history]}),
            "num_replicas": self.strategy.num_replicas_in_sync,
            "resumed_from_step": self.start_step,
            "examples_per_second": rate,
            f"{self.task.example_name}_per_second":
                rate * self.task.example_size if rate else None,
            "final_learning_rate": _current_learning_rate(self.optimizer),
            "final_loss": self.loss if self.session_steps else
            (self.history[-1]["loss"] if self.history else None),
            "wall_seconds": wall_seconds,
            "train_seconds": self.train_seconds,
            **({} if schedule is None else {
                "warmup_steps": schedule.warmup_steps,
                "peak_learning_rate": schedule.peak_learning_rate}),
            "history": self.history,
            **self.metrics,
        }


def accuracy_eval(model, batch):
    """Eval sums for classification on an (inputs, labels, mask) batch:
    correct predictions and examples, counting only entries whose mask is 1."""
    inputs, labels, mask = batch
    logits = model(inputs, training=False)
    correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int64),
                               tf.cast(labels, tf.int64)), tf.float32)
    return {"correct": tf.reduce_sum(correct * mask),
            "count": tf.reduce_sum(mask)}

