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
"""

import dataclasses
import json
import math
import os
import sys
import time
from typing import Callable, Optional

import keras
import tensorflow as tf

from keras_legw import scaling
from keras_legw.noise_scale import NoiseScaleEstimator
from models.common import distribute, preemption

RESULTS_FILE = "results.json"
RUN_FILE = "run.json"  # what a resume must match: the global batch
PROGRESS_FILE = "progress.json"  # the last checkpoint's step and seconds
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


class JsonState(tf.train.experimental.PythonState):
    """An object's `get_state()` (JSON-able) as a part of a checkpoint,
    restored with its `set_state(...)`."""

    def __init__(self, owner):
        self._owner = owner

    def serialize(self):
        return json.dumps(self._owner.get_state())

    def deserialize(self, string_value):
        self._owner.set_state(json.loads(string_value))


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


def _squared_norm(tensors):
    # convert_to_tensor densifies IndexedSlices (embedding gradients), whose
    # indices may repeat.
    return tf.add_n([
        tf.reduce_sum(tf.square(tf.cast(tf.convert_to_tensor(t), tf.float32)))
        for t in tensors])


def _divide(gradients, divisor):
    """Gradients / divisor, IndexedSlices (embedding gradients) included."""
    if divisor == 1:
        return gradients
    return [tf.IndexedSlices(g.values / divisor, g.indices, g.dense_shape)
            if isinstance(g, tf.IndexedSlices) else g / divisor
            for g in gradients]


def clip_by_global_norm(gradients, clip_norm):
    """Scales `gradients` by clip_norm / max(norm, clip_norm), the norm
    being that of the gradient as applied. Unlike `tf.clip_by_global_norm`,
    which takes the norm of an IndexedSlices' values, rows that repeat
    (a token seen twice in the batch) are summed first; the scaled
    gradients keep their IndexedSlices form."""
    factor = clip_norm / tf.maximum(tf.sqrt(_squared_norm(gradients)),
                                    clip_norm)
    return [tf.IndexedSlices(g.values * factor, g.indices, g.dense_shape)
            if isinstance(g, tf.IndexedSlices) else g * factor
            for g in gradients]


def _current_learning_rate(optimizer):
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def _read_history(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return []


def _train_seconds_at(step, own_dir, history):
    """Training seconds up to `step`, the checkpoint resumed from: from
    PROGRESS_FILE when it holds that step (any checkpoint), else from the
    history (epoch ends)."""
    path = os.path.join(own_dir, PROGRESS_FILE)
    if os.path.exists(path):
        with open(path) as f:
            progress = json.load(f)
        if progress["step"] == step:
            return progress["train_seconds"]
    return history[-1]["train_seconds"] if history else 0.0


def prepare_model_dir(own_dir):
    """Creates `own_dir` and checks that a file can be written there, before
    any training: a folder that cannot be written is one clear error."""
    probe = os.path.join(own_dir, ".write_test")
    try:
        os.makedirs(own_dir, exist_ok=True)
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as error:
        raise ValueError(f"--model_dir: {own_dir} cannot be written "
                         f"({error.strerror or error}). Choose a folder you "
                         "can write to.") from None


def checkpoint_candidates(checkpoint_dir):
    """The checkpoints in `checkpoint_dir`, newest first: the manager's list,
    or the `ckpt-N.index` files when its `checkpoint` file is unreadable."""
    try:
        state = tf.train.get_checkpoint_state(checkpoint_dir)
        paths = list(state.all_model_checkpoint_paths) if state else []
    except (tf.errors.OpError, ValueError):
        paths = []
    if not paths:
        indexes = tf.io.gfile.glob(os.path.join(checkpoint_dir,
                                                "ckpt-*.index"))
        paths = sorted((p[:-len(".index")] for p in indexes),
                       key=lambda p: int(p.rsplit("-", 1)[1]))
    return paths[::-1]


def restore_newest_readable(checkpoint, checkpoint_dir):
    """Restores the newest checkpoint that reads whole; each unreadable one
    is named in one line on stderr and the previous one is tried. Returns
    the path restored (None when there is none).

    Raises:
        ValueError: checkpoints exist but none is readable (nothing in the
            folder is touched).
    """
    candidates = checkpoint_candidates(checkpoint_dir)
    for path in candidates:
        try:
            checkpoint.restore(path).assert_consumed()
            return path
        except (tf.errors.OpError, ValueError, AssertionError, IndexError,
                OSError) as error:  # what a cut or garbled file raises
            reason = str(error).strip().splitlines()[0][:200]
            print(f"warning: checkpoint {path} is unreadable ({reason}); "
                  "trying the previous one", file=sys.stderr, flush=True)
    if candidates:
        raise ValueError(
            f"No readable checkpoint in {checkpoint_dir} (tried "
            f"{', '.join(candidates)}). Nothing was overwritten: restore a "
            "good copy, or move the folder away to start over.")
    return None


def check_resume_batch(model_dir, global_batch_size):
    """Refuses to resume checkpoints trained at another global batch: LEGW's
    schedule and the data order are functions of the batch and the step.
    (A future adaptive batch would record its own sequence here.)"""
    path = os.path.join(model_dir, RUN_FILE)
    if not (os.path.exists(path) and checkpoint_candidates(
            os.path.join(model_dir, "checkpoints"))):
        return
    with open(path) as f:
        saved = json.load(f).get("global_batch_size")
    if saved is not None and saved != global_batch_size:
        raise ValueError(
            f"--batch_size={global_batch_size}, but the checkpoints in "
            f"{model_dir} were trained at batch {saved}: the schedule and the "
            f"data order depend on it. Resume with --batch_size={saved}, or "
            "use a new --model_dir.")


def write_json(path, value):
    """Writes `value` as JSON to `path` atomically (a temporary file, then a
    rename), so a crash never leaves half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


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
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ValueError(
            f"Flag --batch_size={global_batch_size} must be divisible by the "
            f"number of replicas, {replicas}: each replica gets an equal "
            f"share. Use a multiple of {replicas}.")
    if steps_per_loop < 1:
        raise ValueError(f"steps_per_loop must be >= 1. Received: {steps_per_loop}")
    per_replica = global_batch_size // replicas
    pieces = gradient_accumulation_steps
    if not isinstance(pieces, int) or pieces < 1:
        raise ValueError("Flag --gradient_accumulation_steps must be a "
                         f"positive integer. Received: {pieces!r}")
    if noise_scale and replicas == 1 and global_batch_size % 2:
        raise ValueError(
            f"Flag --noise_scale on one replica splits the batch in two "
            f"halves: --batch_size={global_batch_size} must be even.")
    halves = 2 if noise_scale and replicas == 1 else 1
    if per_replica % (pieces * halves):
        raise ValueError(
            f"Flag --gradient_accumulation_steps={pieces}: --batch_size="
            f"{global_batch_size} must divide by it x {replicas} replica(s)"
            + (" x 2 (--noise_scale's halves)" if halves == 2 else "")
            + f" = {pieces * replicas * halves}, so that every micro-batch "
            "is the same size. Choose a batch or N that divides.")
    noise_batches = (per_replica, global_batch_size) if replicas > 1 else \
        (global_batch_size // 2, global_batch_size)
    estimator = NoiseScaleEstimator(noise_scale_decay) if noise_scale else None
    stateful = task.initial_state is not None
    if noise_scale and stateful and replicas == 1:
        raise ValueError(
            "--noise_scale on one replica splits each batch in two halves, "
            "which a model that carries its state from batch to batch cannot "
            "do. Use two or more replicas (e.g. --strategy=mirrored "
            "--num_cpu_devices=2).")
    chief = distribute.is_chief(strategy)
    own_dir = distribute.worker_dir(model_dir, strategy)
    prepare_model_dir(own_dir)
    check_resume_batch(model_dir, global_batch_size)
    end_step = total_steps if max_steps is None else min(total_steps, max_steps)

    with strategy.scope():
        model = task.build_model()
        if adaptive_schedule is not None:
            adaptive_schedule.build()
        optimizer = make_optimizer()
        optimizer.build(model.trainable_variables)
    if (noise_scale or global_clipnorm) and isinstance(
            optimizer, keras.optimizers.LossScaleOptimizer):
        raise ValueError(
            "--noise_scale and gradient clipping need unscaled gradients; "
            "float16 loss scaling hands them scaled. Use --dtype=bfloat16 or "
            "float32.")
    # model.variables explicitly: Keras 3 models track their variables for
    # tf.train.Checkpoint only partly; this list holds every one of them
    # (non-trainable statistics and random-seed states included).
    extra = {} if adaptive_schedule is None else {
        "adaptive_schedule": JsonState(adaptive_schedule)}
    checkpoint = tf.train.Checkpoint(model_variables=list(model.variables),
                                     optimizer=optimizer, **extra)
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(own_dir, "checkpoints"), max_to_keep=3)
    # Every worker restores the chief's latest checkpoint: a worker killed
    # mid-save may hold an older one of its own, and workers that resume at
    # different steps would pair up the wrong collective ops.
    restore_newest_readable(checkpoint, os.path.join(model_dir, "checkpoints"))
    start_step = int(optimizer.iterations.numpy())
    history_path = os.path.join(own_dir, HISTORY_FILE)
    history = [h for h in _read_history(history_path) if h["step"] <= start_step]
    train_seconds = _train_seconds_at(start_step, own_dir, history)

    train_data = strategy.distribute_datasets_from_function(
        lambda context: task.train_dataset(context, start_step))
    eval_data = strategy.distribute_datasets_from_function(task.eval_dataset)
    iterator = iter(train_data)

    def forward(inputs, state, training):
        """(outputs, new_state); the state is [] for stateless models."""
        if not stateful:
            return model(inputs, training=training), []
        outputs = model([inputs, *state], training=training)
        return outputs[0], [tf.stop_gradient(t) for t in outputs[1:]]

    def loss_and_gradients(inputs, labels, regularization_weight, state):
        with tf.GradientTape() as tape:
            outputs, state = forward(inputs, state, training=True)
            loss = tf.reduce_sum(task.per_example_loss(labels, outputs))
            loss = loss / global_batch_size
            if model.losses:
                loss += tf.add_n(model.losses) * regularization_weight
            # Multiplied by the loss scale under float16 (LossScaleOptimizer),
            # which apply_gradients divides out again; else unchanged.
            scaled_loss = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled_loss, model.trainable_variables)
        return loss, grads, state

    # XLA compiles the forward and backward pass; the optimizer's update
    # (with its cross-replica all-reduce) stays outside the compiled region.
    micro_step = tf.function(loss_and_gradients, jit_compile=True) \
        if jit_compile else loss_and_gradients

    def compute(inputs, labels, regularization_weight, state):
        """(loss, gradients, state) of a replica's batch, summed over
        `pieces` micro-batches of its rows computed one after another."""
        if pieces == 1:
            return micro_step(inputs, labels, regularization_weight, state)
        rows = tf.shape(tf.nest.flatten(labels)[0])[0] // pieces
        take = lambda tensors, j: tf.nest.map_structure(  # noqa: E731
            lambda t: t[j * rows:(j + 1) * rows], tensors)

        def body(j, loss, grads, states):
            piece_loss, piece_grads, piece_state = micro_step(
                *take((inputs, labels), j), regularization_weight / pieces,
                take(state, j))
            grads = [g + tf.convert_to_tensor(p)  # IndexedSlices densified
                     for g, p in zip(grads, piece_grads)]
            states = [a.write(j, t) for a, t in zip(states, piece_state)]
            return j + 1, loss + piece_loss, grads, states

        zeros = [tf.zeros_like(v) for v in model.trainable_variables]
        arrays = [tf.TensorArray(t.dtype, size=pieces) for t in state]
        # parallel_iterations=1: one micro-batch's activations at a time.
        _, loss, grads, arrays = tf.while_loop(
            lambda j, *_: j < pieces, body, (0, tf.constant(0.0), zeros, arrays),
            parallel_iterations=1)
        state = [tf.ensure_shape(a.concat(), t.shape)
                 for a, t in zip(arrays, state)]
        return loss, grads, state
    apply = lambda grads: optimizer.apply_gradients(  # noqa: E731
        zip(grads, model.trainable_variables))
    zero = tf.constant(0.0)

    def replica_step(batch, state):
        """One step on one replica: (loss, |G_small|^2, |G_big|^2, state);
        the two squared norms are 0 unless the noise scale is measured (on
        the gradients before clipping)."""
        inputs, labels = batch
        # Reduced here (rather than by the optimizer) to measure or clip the
        # global batch's gradient; the optimizer sums what it is given over
        # replicas again, hence the division by R before applying.
        reduce_here = replicas > 1 and bool(noise_scale or global_clipnorm)
        if noise_scale and replicas == 1:
            # Two half batches give the small-batch estimates.
            half = tf.shape(tf.nest.flatten(labels)[0])[0] // 2
            halves = [tf.nest.map_structure(lambda t: t[:half],
                                            (inputs, labels)),
                      tf.nest.map_structure(lambda t: t[half:],
                                            (inputs, labels))]
            (loss_a, grads_a, _), (loss_b, grads_b, _) = [
                compute(x, y, 0.5, state) for x, y in halves]
            loss = loss_a + loss_b
            small = (_squared_norm(grads_a) + _squared_norm(grads_b)) * 2.0
            grads = [a + b for a, b in zip(grads_a, grads_b)]
        else:
            loss, grads, state = compute(inputs, labels, 1.0 / replicas, state)
            # Small batch: this replica's mean gradient (R times its share).
            small = _squared_norm(grads) * replicas ** 2 if noise_scale \
                else zero
            if reduce_here:
                grads = tf.distribute.get_replica_context().all_reduce(
                    "SUM", grads)
        big = _squared_norm(grads) if noise_scale else zero
        if global_clipnorm:
            grads = clip_by_global_norm(grads, global_clipnorm)
        apply(_divide(grads, replicas) if reduce_here else grads)
        return loss, small, big, state

    @tf.function
    def train_loop(iterator, num_steps, state):
        losses = tf.TensorArray(tf.float32, size=num_steps)
        small = tf.TensorArray(tf.float32, size=num_steps)
        big = tf.TensorArray(tf.float32, size=num_steps)
        for i in tf.range(num_steps):
            loss, s, b, state = strategy.run(replica_step,
                                             args=(next(iterator), state))
            losses = losses.write(i, strategy.reduce("SUM", loss, axis=None))
            small = small.write(i, strategy.reduce("MEAN", s, axis=None))
            big = big.write(i, strategy.reduce("MEAN", b, axis=None))
        return losses.stack(), small.stack(), big.stack(), state

    def zero_state(training):
        if not stateful:
            return []
        return strategy.experimental_distribute_values_from_function(
            lambda context: task.initial_state(training))

    def replica_eval(batch, state):
        if stateful:
            return task.eval_sums(model, batch, state)
        return task.eval_sums(model, batch), state

    # Evaluation batches may differ in shape (sentences cut to their
    # longest): one trace with unknown dimensions serves them all.
    @tf.function(reduce_retracing=True)
    def eval_step(batch, state):
        sums, state = strategy.run(replica_eval, args=(batch, state))
        return ({k: strategy.reduce("SUM", v, axis=None)
                 for k, v in sums.items()}, state)

    def evaluate():
        totals, state = {}, zero_state(training=False)
        for batch in eval_data:
            sums, state = eval_step(batch, state)
            for key, value in sums.items():
                totals[key] = totals.get(key, 0.0) + float(value)
        return task.eval_metrics(totals)

    writer = tf.summary.create_file_writer(
        os.path.join(own_dir, "tensorboard")) if chief else \
        tf.summary.create_noop_writer()
    ends = epoch_end_steps(num_examples, global_batch_size, total_steps)
    step, session_steps = start_step, 0
    # Throughput leaves out the session's first loop (it includes tracing)
    # when later loops ran.
    loops, timed_steps, timed_seconds = 0, 0, 0.0
    metrics, loss = (history[-1]["metrics"] if history else {}), float("nan")
    wall_start = time.perf_counter()
    state = zero_state(training=True)
    agree_to_stop = preemption.make_agreement(strategy)

    def save(step):
        """A checkpoint at `step` (once), and the training seconds so far."""
        if manager.latest_checkpoint != os.path.join(
                manager.directory, f"ckpt-{step}"):
            manager.save(checkpoint_number=step)
        write_json(os.path.join(own_dir, PROGRESS_FILE),
                   {"step": step, "train_seconds": train_seconds})

    def stop_if_asked(step):
        """Every worker calls this at the same steps (a collective)."""
        signal_number = agree_to_stop(stops.signal_number)
        if signal_number:
            save(step)
            raise preemption.Preempted(signal_number, step,
                                       manager.latest_checkpoint)

    with preemption.StopRequests() as stops:
        # Written once the signals are caught: "training is about to start".
        write_json(os.path.join(own_dir, RUN_FILE),
                   {"global_batch_size": global_batch_size})
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
                losses, small, big, state = train_loop(
                    iterator, tf.constant(stop - step), state)
                loss = float(tf.reduce_mean(losses))
                seconds = time.perf_counter() - start
                if not math.isfinite(loss):
                    raise NonFiniteLossError(
                        f"The training loss became {loss} in steps {step}-{stop} "
                        f"(learning rate {_current_learning_rate(optimizer):.4g}). "
                        "Training stopped; the last checkpoint "
                        f"({manager.latest_checkpoint}) is intact. Lower "
                        "--base_learning_rate or check the input data.")
                if loops == 1:  # drop the first loop from the throughput
                    timed_steps, timed_seconds = 0, 0.0
                loops += 1
                timed_steps += stop - step
                timed_seconds += seconds
                train_seconds += seconds
                session_steps += stop - step
                rate = (stop - step) * global_batch_size / seconds
                step = stop
                learning_rate = _current_learning_rate(optimizer)
                if adaptive_schedule is not None:
                    adaptive_schedule.observe(losses.numpy())
                if estimator:
                    for small_sq, big_sq in zip(small.numpy(), big.numpy()):
                        estimator.update(small_sq, big_sq, *noise_batches)
                with writer.as_default(step=step):
                    tf.summary.scalar("loss", loss)
                    tf.summary.scalar("learning_rate", learning_rate)
                    tf.summary.scalar("examples_per_second", rate)
                    if estimator:
                        tf.summary.scalar("noise_scale", estimator.noise_scale)
                progbar.update(step - (epoch_end - progbar.target),
                               [("loss", loss), ("lr", learning_rate)])
                if checkpoint_every_steps and step % checkpoint_every_steps == 0 \
                        and step < epoch_end:
                    save(step)
                if step < epoch_end:  # at an epoch end: after its evaluation
                    stop_if_asked(step)
            if adaptive_schedule is not None and step == ends[epoch_index]:
                adaptive_schedule.check()  # at true epoch ends only
            metrics = evaluate()
            if estimator:
                metrics["noise_scale"] = estimator.noise_scale
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
            save(step)
            write_json(history_path, history)
            if step < end_step:  # a finished run finishes
                stop_if_asked(step)
    writer.flush()

    results = {
        "steps": step,
        "epochs": scaling.steps_to_epochs(step, num_examples, global_batch_size),
        "global_batch_size": global_batch_size,
        "num_replicas": replicas,
        "resumed_from_step": start_step,
        "examples_per_second": (timed_steps * global_batch_size
                                / timed_seconds) if timed_seconds else None,
        f"{task.example_name}_per_second": (
            timed_steps * global_batch_size * task.example_size
            / timed_seconds) if timed_seconds else None,
        "final_learning_rate": _current_learning_rate(optimizer),
        "final_loss": loss if session_steps else
        (history[-1]["loss"] if history else None),
        "wall_seconds": time.perf_counter() - wall_start,
        "train_seconds": train_seconds,
        **({} if adaptive_schedule is None else {
            "warmup_steps": adaptive_schedule.warmup_steps,
            "peak_learning_rate": adaptive_schedule.peak_learning_rate}),
        "history": history,
        **metrics,
    }
    write_json(os.path.join(own_dir, RESULTS_FILE), results)
    return results, model


def accuracy_eval(model, batch):
    """Eval sums for classification on an (inputs, labels, mask) batch:
    correct predictions and examples, counting only entries whose mask is 1."""
    inputs, labels, mask = batch
    logits = model(inputs, training=False)
    correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int64),
                               tf.cast(labels, tf.int64)), tf.float32)
    return {"correct": tf.reduce_sum(correct * mask),
            "count": tf.reduce_sum(mask)}

