"""One compiled training loop for every tf.distribute strategy.

Keras 3 `model.fit` fails under MultiWorkerMirroredStrategy
(keras-team/keras#20585), so the model zoo trains with its own loop:
`strategy.run` over `strategy.distribute_datasets_from_function`, a Keras 3
model and optimizer, the loss summed per replica and divided by the global
batch. The same loop runs under the default, one-device, mirrored,
multi-worker and TPU strategies.

Checkpoints (model, optimizer with its step counter) are written to
`model_dir/checkpoints` at every epoch end, every `checkpoint_every_steps`
steps and when SIGTERM or SIGINT asks training to stop (see `preemption`);
a restarted run restores the latest one and continues at its step, with the
same data order (see `input_pipeline`) and the same learning rate.

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
from keras_legw.noise_scale import NoiseScaleEstimator
from models.common import checkpoints as ckpt
from models.common import distribute, preemption
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
        train_dataset: (input_context, start_step) -> dataset of per-replica
            (inputs, labels) batches, starting at the batch of `start_step`.
        eval_dataset: (input_context) -> dataset of per-replica eval batches.
        eval_sums: (model, batch) -> dict of per-replica sums (e.g. correct
            predictions and example count), summed over replicas.
        eval_metrics: (dict of summed floats) -> dict of metrics.
        example_name: what throughput counts ("images", "tokens"): results
            also hold `<example_name>_per_second`.
        example_size: how many of those one example holds (tokens per
            sequence, say; a mean where examples differ in length).
        initial_state: for models that carry a state from batch to batch
            (truncated backpropagation through time): (training) -> list of
            zero tensors, one replica's state for its training or evaluation
            batches. The model then takes `[inputs, *state]` and returns
            `[outputs, *new_state]`, and `eval_sums` takes and returns the
            state too: `(model, batch, state) -> (sums, new_state)`. The
            trainer carries each replica's state from step to step and starts
            every evaluation from zeros; resets (at epoch starts, say) are the
            model's business, driven by its inputs. Not checkpointed: a run
            resumed mid-epoch restarts the state from zeros.
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

    def zero_state(self, strategy, training):
        """Each replica of `strategy` its zero state for training or
        evaluation ([] for stateless models)."""
        if self.initial_state is None:
            return []
        return strategy.experimental_distribute_values_from_function(
            lambda context: self.initial_state(training))


def epoch_end_steps(num_examples, global_batch_size, total_steps):
    """The step after which each epoch ends: ceil(e * N / B) for e = 1, 2, ...
    (epochs counted in examples, as in the LEGW schedule), and total_steps."""
    ends, epoch = [], 1
    while True:
        step = scaling.whole_steps(epoch, num_examples, global_batch_size)
        if step >= total_steps:
            return ends + [total_steps]
        ends.append(step)
        epoch += 1


def _current_learning_rate(optimizer):
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def train(task, *, strategy, make_optimizer, global_batch_size, num_examples,
          total_steps, model_dir, max_steps=None, checkpoint_every_steps=0,
          steps_per_loop=100, jit_compile=False, noise_scale=False,
          noise_scale_decay=0.99, global_clipnorm=None,
          gradient_accumulation_steps=1, adaptive_schedule=None, verbose=1):
    """Trains `task` to `total_steps` (or `max_steps`), resuming from
    `model_dir`; the stats are also written to `model_dir/results.json`.

    Args:
        task: a `Task`.
        strategy: a tf.distribute strategy.
        make_optimizer: () -> keras optimizer, called in the strategy scope.
        global_batch_size: examples per optimizer step, over all replicas.
        num_examples: training examples per epoch.
        total_steps: length of the run (the schedule's `total_steps`).
        model_dir: checkpoints, TensorBoard logs, history and results.
        max_steps: stop at this step (smoke runs); None for total_steps.
        checkpoint_every_steps: also checkpoint every this many steps (0: at
            epoch ends only).
        steps_per_loop: steps per call of the compiled loop.
        jit_compile: compile the forward and backward pass with XLA.
        noise_scale: measure the gradient noise scale B_simple (see
            `keras_legw.noise_scale`) on the gradients before clipping: with
            several replicas the small batch is a replica's share and the
            big one the global batch; with one replica the batch is split
            into two halves inside the step (not for stateful models).
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
            rows (batch normalization) see micro-batches.
        adaptive_schedule: a schedule that learns from the training loss
            (`keras_legw.AutoWarmupSchedule`), used by the optimizer: it is
            built in the strategy scope, given each step's global training
            loss, checked at every epoch end, and its state goes into the
            checkpoints; its `warmup_steps` and `peak_learning_rate` go into
            the results.
        verbose: 1 for a progress bar per epoch, 0 for none.

    Returns:
        (results, model): the stats dict and the trained model. Its
        `examples_per_second` (and `<example_name>_per_second`) leaves out
        the session's first loop, which includes tracing, unless it was the
        only one.

    Raises:
        ValueError: if the global batch does not divide among the replicas
            and micro-batches.
        NonFiniteLossError: if the loss becomes NaN or Inf.
    """
    step_options = StepOptions(global_batch_size, jit_compile, noise_scale,
                               global_clipnorm, gradient_accumulation_steps)
    check_step_options(step_options, strategy.num_replicas_in_sync,
                       task.initial_state is not None)
    if steps_per_loop < 1:
        raise ValueError(f"steps_per_loop must be >= 1. Received: {steps_per_loop}")
    own_dir = distribute.worker_dir(model_dir, strategy)
    ckpt.prepare_model_dir(own_dir)
    ckpt.check_resume_batch(model_dir, global_batch_size)
    with strategy.scope():
        model = task.build_model()
        if adaptive_schedule is not None:
            adaptive_schedule.build()
        optimizer = make_optimizer()
        optimizer.build(model.trainable_variables)
    step_fn = CompiledStep(task, strategy, model, optimizer, step_options)
    # model.variables explicitly: Keras 3 models track their variables for
    # tf.train.Checkpoint only partly; this list holds every one of them
    # (non-trainable statistics and random-seed states included).
    trackables = {ckpt.MODEL_VARIABLES: list(model.variables),
                  "optimizer": optimizer}
    if adaptive_schedule is not None:
        trackables["adaptive_schedule"] = ckpt.JsonState(adaptive_schedule)
    run = _Run(task=task, strategy=strategy, optimizer=optimizer,
               step_fn=step_fn, num_examples=num_examples,
               total_steps=total_steps, own_dir=own_dir, verbose=verbose,
               checkpoints=ckpt.Checkpoints(trackables, model_dir, own_dir),
               checkpoint_every_steps=checkpoint_every_steps,
               steps_per_loop=steps_per_loop,
               estimator=NoiseScaleEstimator(noise_scale_decay)
               if noise_scale else None,
               adaptive_schedule=adaptive_schedule)
    end_step = total_steps if max_steps is None else min(total_steps, max_steps)
    results = run.train(end_step)
    ckpt.write_json(os.path.join(own_dir, ckpt.RESULTS_FILE), results)
    return results, model


class _Run:
    """One session of training: the loop over epochs and loop calls, with
    its logging, checkpoints, evaluation and preemption checks."""

    def __init__(self, *, task, strategy, optimizer, step_fn, checkpoints,
                 num_examples, total_steps, own_dir, checkpoint_every_steps,
                 steps_per_loop, estimator, adaptive_schedule, verbose):
        self.task, self.strategy, self.optimizer = task, strategy, optimizer
        self.step_fn, self.checkpoints = step_fn, checkpoints
        self.batch = step_fn.options.global_batch_size
        self.num_examples, self.total_steps = num_examples, total_steps
        self.own_dir, self.verbose = own_dir, verbose
        self.checkpoint_every_steps = checkpoint_every_steps
        self.steps_per_loop = steps_per_loop
        self.estimator, self.adaptive_schedule = estimator, adaptive_schedule
        self.noise_batches = noise_batches(self.batch,
                                           strategy.num_replicas_in_sync)
        self.chief = distribute.is_chief(strategy)
        self.ends = epoch_end_steps(num_examples, self.batch, total_steps)
        self.writer = tf.summary.create_file_writer(
            os.path.join(own_dir, "tensorboard")) if self.chief else \
            tf.summary.create_noop_writer()
        self.agree_to_stop = preemption.make_agreement(strategy)
        # Throughput leaves out the session's first loop call (it includes
        # tracing) when later calls ran.
        self.loops, self.timed_steps, self.timed_seconds = 0, 0, 0.0
        self.session_steps, self.loss = 0, float("nan")

    def train(self, end_step):
        """Trains from the restored step to `end_step`; returns the stats."""
        self.start_step, self.history, self.train_seconds = \
            self.checkpoints.restore(
                lambda: int(self.optimizer.iterations.numpy()))
        self.step = self.start_step
        self.metrics = self.history[-1]["metrics"] if self.history else {}
        self.iterator = iter(self.strategy.distribute_datasets_from_function(
            lambda context: self.task.train_dataset(context, self.start_step)))
        self.evaluate = Evaluator(self.task, self.strategy, self.step_fn.model)
        self.state = self.task.zero_state(self.strategy, training=True)
        wall_start = time.perf_counter()
        with preemption.StopRequests() as self.stops:
            # Written once the signals are caught: training is about to start.
            ckpt.write_json(os.path.join(self.own_dir, ckpt.RUN_FILE),
                            {"global_batch_size": self.batch})
            while self.step < end_step:
                self._epoch(end_step)
        self.writer.flush()
        return self._results(time.perf_counter() - wall_start)

    def _epoch(self, end_step):
        """Trains to the end of the current epoch (or `end_step`), then
        evaluates and checkpoints."""
        index = next(i for i, e in enumerate(self.ends) if e > self.step)
        epoch_end = min(self.ends[index], end_step)
        progbar = keras.utils.Progbar(
            epoch_end - self.step, verbose=self.verbose if self.chief else 0,
            unit_name="step")
        if self.chief and self.verbose:
            print(f"Epoch {index + 1}/{len(self.ends)} (steps {self.step}-"
                  f"{epoch_end} of {self.total_steps})", flush=True)
        while self.step < epoch_end:
            self._loop_call(self._next_stop(epoch_end))
            # Before any checkpoint of this step, which must hold its result.
            self._check_adaptive_schedule(self.step == self.ends[index])
            progbar.update(self.step - (epoch_end - progbar.target),
                           [("loss", self.loss),
                            ("lr", _current_learning_rate(self.optimizer))])
            every = self.checkpoint_every_steps
            if every and self.step % every == 0 and self.step < epoch_end:
                self.checkpoints.save(self.step, self.train_seconds)
            if self.step < epoch_end:  # at an epoch end: after its evaluation
                self._stop_if_asked()
        self._evaluate_and_save()
        if self.step < end_step:  # a finished run finishes
            self._stop_if_asked()

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
        """Runs the steps up to `stop` in one call; logs what they gave."""
        start = time.perf_counter()
        losses, small, big, self.state = self.step_fn.train_loop(
            self.iterator, tf.constant(stop - self.step), self.state)
        self.loss = float(tf.reduce_mean(losses))
        seconds = time.perf_counter() - start
        if not math.isfinite(self.loss):
            raise NonFiniteLossError(
                f"The training loss became {self.loss} in steps {self.step}-"
                f"{stop} (learning rate "
                f"{_current_learning_rate(self.optimizer):.4g}). Training "
                f"stopped; the last checkpoint ({self.checkpoints.latest}) is "
                "intact. Lower --base_learning_rate or check the input data.")
        if self.loops == 1:  # drop the first call from the throughput
            self.timed_steps, self.timed_seconds = 0, 0.0
        self.loops += 1
        self.timed_steps += stop - self.step
        self.timed_seconds += seconds
        self.train_seconds += seconds
        self.session_steps += stop - self.step
        rate = (stop - self.step) * self.batch / seconds
        self.step = stop
        if self.adaptive_schedule is not None:
            self.adaptive_schedule.observe(losses.numpy())
        if self.estimator:
            for small_sq, big_sq in zip(small.numpy(), big.numpy()):
                self.estimator.update(small_sq, big_sq, *self.noise_batches)
        with self.writer.as_default(step=self.step):
            tf.summary.scalar("loss", self.loss)
            tf.summary.scalar("learning_rate",
                              _current_learning_rate(self.optimizer))
            tf.summary.scalar("examples_per_second", rate)
            if self.estimator:
                tf.summary.scalar("noise_scale", self.estimator.noise_scale)

    def _evaluate_and_save(self):
        self.metrics = self.evaluate()
        if self.estimator:
            self.metrics["noise_scale"] = self.estimator.noise_scale
        with self.writer.as_default(step=self.step):
            for name, value in self.metrics.items():
                tf.summary.scalar(f"eval/{name}", value)
        self.history.append({
            "step": self.step,
            "epoch": scaling.steps_to_epochs(self.step, self.num_examples,
                                             self.batch),
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
        timed = self.timed_steps * self.batch
        rate = timed / self.timed_seconds if self.timed_seconds else None
        schedule = self.adaptive_schedule
        return {
            "steps": self.step,
            "epochs": scaling.steps_to_epochs(self.step, self.num_examples,
                                              self.batch),
            "global_batch_size": self.batch,
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

