"""One compiled training loop for every tf.distribute strategy.

Keras 3 `model.fit` fails under MultiWorkerMirroredStrategy
(keras-team/keras#20585), so the model zoo trains with its own loop:
`strategy.run` over `strategy.distribute_datasets_from_function`, a Keras 3
model and optimizer, the loss summed per replica and divided by the global
batch. The same loop runs under the default, one-device, mirrored,
multi-worker and TPU strategies.

Checkpoints (model, optimizer with its step counter) are written to
`model_dir/checkpoints` at every epoch end and every `checkpoint_every_steps`
steps; a restarted run restores the latest one and continues at its step, with
the same data order (see `input_pipeline`) and the same learning rate.
"""

import dataclasses
import json
import math
import os
import time
from typing import Callable, Optional

import keras
import tensorflow as tf

from keras_legw import scaling
from models.common import distribute

RESULTS_FILE = "results.json"
HISTORY_FILE = "history.json"


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
    """

    build_model: Callable
    per_example_loss: Callable
    train_dataset: Callable
    eval_dataset: Callable
    eval_sums: Callable
    eval_metrics: Callable


def epoch_end_steps(num_examples, global_batch_size, total_steps):
    """The step after which each epoch ends: ceil(e * N / B) for e = 1, 2, ...
    (epochs counted in examples, as in the LEGW schedule), and total_steps."""
    ends, epoch = [], 1
    while True:
        step = math.ceil(round(
            scaling.epochs_to_steps(epoch, num_examples, global_batch_size), 6))
        if step >= total_steps:
            return ends + [total_steps]
        ends.append(step)
        epoch += 1


def _current_learning_rate(optimizer):
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def _read_history(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return []


def _write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def train(task, *, strategy, make_optimizer, global_batch_size, num_examples,
          total_steps, model_dir, max_steps=None, checkpoint_every_steps=0,
          steps_per_loop=100, jit_compile=False, verbose=1):
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
        jit_compile: compile the training step with XLA.
        verbose: 1 for a progress bar per epoch, 0 for none.

    Returns:
        (results, model): the stats dict and the trained model.

    Raises:
        ValueError: if the global batch does not divide among the replicas.
        NonFiniteLossError: if the loss becomes NaN or Inf.
    """
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ValueError(
            f"Flag --batch_size={global_batch_size} must be divisible by the "
            f"number of replicas, {replicas}: each replica gets an equal "
            f"share. Use a multiple of {replicas}.")
    if steps_per_loop < 1:
        raise ValueError(f"steps_per_loop must be >= 1. Received: {steps_per_loop}")
    chief = distribute.is_chief(strategy)
    own_dir = distribute.worker_dir(model_dir, strategy)
    os.makedirs(own_dir, exist_ok=True)
    end_step = total_steps if max_steps is None else min(total_steps, max_steps)

    with strategy.scope():
        model = task.build_model()
        optimizer = make_optimizer()
        optimizer.build(model.trainable_variables)
    # model.variables explicitly: Keras 3 models track their variables for
    # tf.train.Checkpoint only partly; this list holds every one of them
    # (non-trainable statistics and random-seed states included).
    checkpoint = tf.train.Checkpoint(model_variables=list(model.variables),
                                     optimizer=optimizer)
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(own_dir, "checkpoints"), max_to_keep=3)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_consumed()
    start_step = int(optimizer.iterations.numpy())
    history_path = os.path.join(own_dir, HISTORY_FILE)
    history = [h for h in _read_history(history_path) if h["step"] <= start_step]
    train_seconds = history[-1]["train_seconds"] if history else 0.0

    train_data = strategy.distribute_datasets_from_function(
        lambda context: task.train_dataset(context, start_step))
    eval_data = strategy.distribute_datasets_from_function(task.eval_dataset)
    iterator = iter(train_data)

    def replica_step(batch):
        inputs, labels = batch
        with tf.GradientTape() as tape:
            outputs = model(inputs, training=True)
            loss = tf.reduce_sum(task.per_example_loss(labels, outputs))
            loss = loss / global_batch_size
            if model.losses:
                loss += tf.add_n(model.losses) / replicas
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    step_fn = tf.function(replica_step, jit_compile=True) if jit_compile \
        else replica_step

    @tf.function
    def train_loop(iterator, num_steps):
        total = tf.constant(0.0)
        for _ in tf.range(num_steps):
            losses = strategy.run(step_fn, args=(next(iterator),))
            total += strategy.reduce("SUM", losses, axis=None)
        return total / tf.cast(num_steps, tf.float32)

    @tf.function
    def eval_step(batch):
        sums = strategy.run(lambda b: task.eval_sums(model, b), args=(batch,))
        return {k: strategy.reduce("SUM", v, axis=None) for k, v in sums.items()}

    def evaluate():
        totals = {}
        for batch in eval_data:
            for key, value in eval_step(batch).items():
                totals[key] = totals.get(key, 0.0) + float(value)
        return task.eval_metrics(totals)

    writer = tf.summary.create_file_writer(
        os.path.join(own_dir, "tensorboard")) if chief else \
        tf.summary.create_noop_writer()
    ends = epoch_end_steps(num_examples, global_batch_size, total_steps)
    step, session_steps, session_seconds = start_step, 0, 0.0
    metrics, loss = (history[-1]["metrics"] if history else {}), float("nan")
    wall_start = time.perf_counter()
    while step < end_step:
        epoch_index = next(i for i, e in enumerate(ends) if e > step)
        epoch_end = min(ends[epoch_index], end_step)
        progbar = keras.utils.Progbar(
            epoch_end - step, verbose=verbose if chief else 0,
            unit_name="step")
        if chief and verbose:
            print(f"Epoch {epoch_index + 1}/{len(ends)} (steps {step}-"
                  f"{epoch_end} of {total_steps})", flush=True)
        while step < epoch_end:
            stop = min(epoch_end, step + steps_per_loop)
            if checkpoint_every_steps:
                stop = min(stop, (step // checkpoint_every_steps + 1)
                           * checkpoint_every_steps)
            start = time.perf_counter()
            loss = float(train_loop(iterator, tf.constant(stop - step)))
            seconds = time.perf_counter() - start
            if not math.isfinite(loss):
                raise NonFiniteLossError(
                    f"The training loss became {loss} in steps {step}-{stop} "
                    f"(learning rate {_current_learning_rate(optimizer):.4g}). "
                    "Training stopped; the last checkpoint "
                    f"({manager.latest_checkpoint}) is intact. Lower "
                    "--base_learning_rate or check the input data.")
            session_seconds += seconds
            train_seconds += seconds
            session_steps += stop - step
            rate = (stop - step) * global_batch_size / seconds
            step = stop
            learning_rate = _current_learning_rate(optimizer)
            with writer.as_default(step=step):
                tf.summary.scalar("loss", loss)
                tf.summary.scalar("learning_rate", learning_rate)
                tf.summary.scalar("examples_per_second", rate)
            progbar.update(step - (epoch_end - progbar.target),
                           [("loss", loss), ("lr", learning_rate)])
            if checkpoint_every_steps and step % checkpoint_every_steps == 0 \
                    and step < epoch_end:
                manager.save(checkpoint_number=step)
        metrics = evaluate()
        with writer.as_default(step=step):
            for name, value in metrics.items():
                tf.summary.scalar(f"eval/{name}", value)
        history.append({
            "step": step,
            "epoch": scaling.steps_to_epochs(step, num_examples,
                                             global_batch_size),
            "train_seconds": train_seconds, "loss": loss, "metrics": metrics})
        if chief and verbose:
            print("  " + "  ".join(f"{k}: {v:.4f}" for k, v in metrics.items()),
                  flush=True)
        manager.save(checkpoint_number=step)
        _write_json(history_path, history)
    writer.flush()

    results = {
        "steps": step,
        "epochs": scaling.steps_to_epochs(step, num_examples, global_batch_size),
        "global_batch_size": global_batch_size,
        "num_replicas": replicas,
        "resumed_from_step": start_step,
        "examples_per_second": (session_steps * global_batch_size
                                / session_seconds) if session_seconds else None,
        "final_learning_rate": _current_learning_rate(optimizer),
        "final_loss": loss if session_steps else
        (history[-1]["loss"] if history else None),
        "wall_seconds": time.perf_counter() - wall_start,
        "train_seconds": train_seconds,
        "history": history,
        **metrics,
    }
    _write_json(os.path.join(own_dir, RESULTS_FILE), results)
    return results, model


def accuracy_eval(model, batch, inputs_fn):
    """Eval sums for classification: correct predictions and examples,
    counting only entries whose mask is 1."""
    inputs, labels, mask = inputs_fn(batch)
    logits = model(inputs, training=False)
    correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int64),
                               tf.cast(labels, tf.int64)), tf.float32)
    return {"correct": tf.reduce_sum(correct * mask),
            "count": tf.reduce_sum(mask)}

