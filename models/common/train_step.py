"""The compiled training step: `steps_per_loop` steps per call of one
`tf.function`, `strategy.run` on each replica.

A replica's step: the loss summed over its examples and divided by the
global batch; its gradient, optionally over micro-batches of its rows
(gradient accumulation) and compiled with XLA; the all-reduce (here, when the
global gradient is measured or clipped, else by the optimizer); the noise
scale's two squared norms; clipping; the update.
"""

import dataclasses
from typing import Optional

import keras
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class StepOptions:
    """How a step is computed (see `trainer.train` for each)."""

    global_batch_size: int
    jit_compile: bool = False
    noise_scale: bool = False
    global_clipnorm: Optional[float] = None
    gradient_accumulation_steps: int = 1


def check_step_options(options, replicas, stateful):
    """One ValueError naming the flag for a batch that does not split into
    equal shares, or a noise-scale measurement that cannot be made."""
    batch, pieces = options.global_batch_size, options.gradient_accumulation_steps
    if batch % replicas:
        raise ValueError(
            f"Flag --batch_size={batch} must be divisible by the number of "
            f"replicas, {replicas}: each replica gets an equal share. Use a "
            f"multiple of {replicas}.")
    if not isinstance(pieces, int) or pieces < 1:
        raise ValueError("Flag --gradient_accumulation_steps must be a "
                         f"positive integer. Received: {pieces!r}")
    halves = 2 if options.noise_scale and replicas == 1 else 1
    if halves == 2 and batch % 2:
        raise ValueError(
            f"Flag --noise_scale on one replica splits the batch in two "
            f"halves: --batch_size={batch} must be even.")
    if halves == 2 and stateful:
        raise ValueError(
            "--noise_scale on one replica splits each batch in two halves, "
            "which a model that carries its state from batch to batch cannot "
            "do. Use two or more replicas (e.g. --strategy=mirrored "
            "--num_cpu_devices=2).")
    if (batch // replicas) % (pieces * halves):
        raise ValueError(
            f"Flag --gradient_accumulation_steps={pieces}: --batch_size="
            f"{batch} must divide by it x {replicas} replica(s)"
            + (" x 2 (--noise_scale's halves)" if halves == 2 else "")
            + f" = {pieces * replicas * halves}, so that every micro-batch "
            "is the same size. Choose a batch or N that divides.")


def noise_batches(global_batch_size, replicas):
    """The (small, big) batch sizes of the noise scale's two gradients: a
    replica's share and the global batch, or two halves on one replica."""
    if replicas > 1:
        return global_batch_size // replicas, global_batch_size
    return global_batch_size // 2, global_batch_size


def squared_norm(tensors):
    # convert_to_tensor densifies IndexedSlices (embedding gradients), whose
    # indices may repeat.
    return tf.add_n([
        tf.reduce_sum(tf.square(tf.cast(tf.convert_to_tensor(t), tf.float32)))
        for t in tensors])


def _add(a, b):
    """a + b for two gradients of one variable; IndexedSlices (embedding
    gradients, which have no `+`) are densified."""
    return tf.convert_to_tensor(a) + tf.convert_to_tensor(b)


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
    factor = clip_norm / tf.maximum(tf.sqrt(squared_norm(gradients)),
                                    clip_norm)
    return [tf.IndexedSlices(g.values * factor, g.indices, g.dense_shape)
            if isinstance(g, tf.IndexedSlices) else g * factor
            for g in gradients]


class CompiledStep:
    """`train_loop(iterator, num_steps, state)` -> (per-step global losses,
    per-step |G_small|^2, per-step |G_big|^2, state), one `tf.function`."""

    def __init__(self, task, strategy, model, optimizer, options):
        if (options.noise_scale or options.global_clipnorm) and isinstance(
                optimizer, keras.optimizers.LossScaleOptimizer):
            raise ValueError(
                "--noise_scale and gradient clipping need unscaled "
                "gradients; float16 loss scaling hands them scaled. Use "
                "--dtype=bfloat16 or float32.")
        self._task, self._strategy = task, strategy
        self.model, self._optimizer, self.options = model, optimizer, options
        self._replicas = strategy.num_replicas_in_sync
        self._stateful = task.initial_state is not None
        # XLA compiles the forward and backward pass; the optimizer's update
        # (with its cross-replica all-reduce) stays outside the compiled
        # region.
        self._micro_step = tf.function(self._loss_and_gradients,
                                       jit_compile=True) \
            if options.jit_compile else self._loss_and_gradients
        self.train_loop = tf.function(self._train_loop)

    def _forward(self, inputs, state):
        """(outputs, new_state); the state is [] for stateless models."""
        if not self._stateful:
            return self.model(inputs, training=True), []
        outputs = self.model([inputs, *state], training=True)
        return outputs[0], [tf.stop_gradient(t) for t in outputs[1:]]

    def _loss_and_gradients(self, inputs, labels, regularization_weight,
                            state):
        model = self.model
        with tf.GradientTape() as tape:
            outputs, state = self._forward(inputs, state)
            loss = tf.reduce_sum(self._task.per_example_loss(labels, outputs))
            loss = loss / self.options.global_batch_size
            if model.losses:
                loss += tf.add_n(model.losses) * regularization_weight
            # Multiplied by the loss scale under float16 (LossScaleOptimizer),
            # which apply_gradients divides out again; else unchanged.
            scaled_loss = self._optimizer.scale_loss(loss)
        grads = tape.gradient(scaled_loss, model.trainable_variables)
        return loss, grads, state

    def _gradients(self, inputs, labels, regularization_weight, state):
        """(loss, gradients, state) of a replica's batch, summed over the
        micro-batches of its rows, computed one after another."""
        pieces = self.options.gradient_accumulation_steps
        if pieces == 1:
            return self._micro_step(inputs, labels, regularization_weight,
                                    state)
        rows = tf.shape(tf.nest.flatten(labels)[0])[0] // pieces
        take = lambda tensors, j: tf.nest.map_structure(  # noqa: E731
            lambda t: t[j * rows:(j + 1) * rows], tensors)

        def body(j, loss, grads, states):
            piece_loss, piece_grads, piece_state = self._micro_step(
                *take((inputs, labels), j), regularization_weight / pieces,
                take(state, j))
            grads = [_add(g, p) for g, p in zip(grads, piece_grads)]
            states = [a.write(j, t) for a, t in zip(states, piece_state)]
            return j + 1, loss + piece_loss, grads, states

        zeros = [tf.zeros_like(v) for v in self.model.trainable_variables]
        arrays = [tf.TensorArray(t.dtype, size=pieces) for t in state]
        # parallel_iterations=1: one micro-batch's activations at a time.
        _, loss, grads, arrays = tf.while_loop(
            lambda j, *_: j < pieces, body,
            (0, tf.constant(0.0), zeros, arrays), parallel_iterations=1)
        state = [tf.ensure_shape(a.concat(), t.shape)
                 for a, t in zip(arrays, state)]
        return loss, grads, state

    def _replica_step(self, batch, state):
        """One step on one replica: (loss, |G_small|^2, |G_big|^2, state);
        the two squared norms are 0 unless the noise scale is measured (on
        the gradients before clipping)."""
        options, replicas = self.options, self._replicas
        inputs, labels = batch
        zero = tf.constant(0.0)
        # Reduced here (rather than by the optimizer) to measure or clip the
        # global batch's gradient; the optimizer sums what it is given over
        # replicas again, hence the division by R before applying.
        reduce_here = replicas > 1 and bool(options.noise_scale
                                            or options.global_clipnorm)
        if options.noise_scale and replicas == 1:
            # Two half batches give the small-batch estimates.
            half = tf.shape(tf.nest.flatten(labels)[0])[0] // 2
            halves = [tf.nest.map_structure(lambda t: t[:half],
                                            (inputs, labels)),
                      tf.nest.map_structure(lambda t: t[half:],
                                            (inputs, labels))]
            (loss_a, grads_a, _), (loss_b, grads_b, _) = [
                self._gradients(x, y, 0.5, state) for x, y in halves]
            loss = loss_a + loss_b
            small = (squared_norm(grads_a) + squared_norm(grads_b)) * 2.0
            grads = [_add(a, b) for a, b in zip(grads_a, grads_b)]
        else:
            loss, grads, state = self._gradients(inputs, labels,
                                                 1.0 / replicas, state)
            # Small batch: this replica's mean gradient (R times its share).
            small = squared_norm(grads) * replicas ** 2 \
                if options.noise_scale else zero
            if reduce_here:
                grads = tf.distribute.get_replica_context().all_reduce(
                    "SUM", grads)
        big = squared_norm(grads) if options.noise_scale else zero
        if options.global_clipnorm:
            grads = clip_by_global_norm(grads, options.global_clipnorm)
        grads = _divide(grads, replicas) if reduce_here else grads
        self._optimizer.apply_gradients(
            zip(grads, self.model.trainable_variables))
        return loss, small, big, state

    def _train_loop(self, iterator, num_steps, state):
        strategy = self._strategy
        losses = tf.TensorArray(tf.float32, size=num_steps)
        small = tf.TensorArray(tf.float32, size=num_steps)
        big = tf.TensorArray(tf.float32, size=num_steps)
        for i in tf.range(num_steps):
            loss, s, b, state = strategy.run(self._replica_step,
                                             args=(next(iterator), state))
            losses = losses.write(i, strategy.reduce("SUM", loss, axis=None))
            small = small.write(i, strategy.reduce("MEAN", s, axis=None))
            big = big.write(i, strategy.reduce("MEAN", b, axis=None))
        return losses.stack(), small.stack(), big.stack(), state
