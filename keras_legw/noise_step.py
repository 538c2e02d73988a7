"""A train step for `model.fit` that measures the gradient noise scale from
each step's own gradients, on TensorFlow, JAX and PyTorch.

`install_measuring_step(model)` replaces the compiled model's train step by
one that splits each batch of ``b`` rows in two halves, the first
``h = b // 2`` rows and the other ``b - h``, and takes one gradient per half,
``g1`` and ``g2``, each of the mean loss over its half (the loss Keras' own
step computes, on fewer rows). It applies their row-weighted mean

    g = (h g1 + (b - h) g2) / b

which is the gradient of the whole batch's mean loss: training is Keras'
own step up to float rounding. Beside the usual logs it returns, as float32
scalars (`MEASURE_LOGS`),

    noise_small_sq    = (|g1|^2 + |g2|^2) / 2
    noise_big_sq      = |g|^2
    noise_small_batch = 2 / (1 / h + 1 / (b - h))   (h for equal halves)
    noise_big_batch   = b

with ``|.|^2`` the sum over all trainable weights of squared entries. For
rows drawn independently, E[noise_small_sq] = |G|^2 + tr(Sigma) /
noise_small_batch exactly (the harmonic mean makes unequal halves exact)
and E[noise_big_sq] = |G|^2 + tr(Sigma) / b: the four numbers that
`keras_legw.noise_scale_estimates` turns into unbiased ``|G|^2`` and
``tr(Sigma)`` estimates (McCandlish et al. 2018, Appendix A.1), at no more
gradient work than the step itself does.

Example (from a callback, after Keras built its own step):
    >>> class Measure(keras.callbacks.Callback):
    ...     def on_train_begin(self, logs=None):
    ...         self.remove = install_measuring_step(self.model)
    ...     def on_train_batch_end(self, batch, logs=None):
    ...         small, big, b_small, b_big = (logs[k] for k in MEASURE_LOGS)
    ...     def on_train_end(self, logs=None):
    ...         self.remove()

Raises ValueError for what it does not support: a model that is not
compiled, whose class overrides `train_step`, or with no trainable weights;
an optimizer that scales the loss (`LossScaleOptimizer`, as mixed precision
"mixed_float16" sets up, or `loss_scale_factor`) or accumulates gradients
(`gradient_accumulation_steps`); `steps_per_execution > 1` (callbacks would
see only the last step's logs); JAX with Flax NNX; a batch of fewer than two
rows (raised when that batch arrives; a `tf.function` with an unknown batch
size asserts instead). Other backends than these three are not supported.

What else differs from Keras' own step:

- Layers see half batches. BatchNormalization computes its statistics over
  each half (ghost batches of ``b / 2``) and updates its moving averages
  twice a step, so they forget twice as fast per step. Dropout draws a mask
  per half (the same distribution). On JAX the non-trainable variables (batch
  statistics, RNG seed states) thread from the first half's call into the
  second's.
- Each half's loss includes the model's regularization losses; the row
  weights ``h / b + (b - h) / b = 1`` keep them exact. Losses added in
  `call` from the inputs (activity regularizers) are computed per half and
  averaged with those weights: exact for means over rows, not for sums.
- The weighted mean is the batch's loss only for losses that are means over
  rows: Keras' default reduction "sum_over_batch_size" (with or without
  sample weights). A "sum" reduction, or "mean_with_sample_weight" with
  unequal weights, trains on a differently weighted loss, and the measured
  norms are not those of mean gradients.
- The loss tracker gets the whole batch's loss (same weighting) and the
  compiled metrics run once, on the whole batch (the halves' predictions
  concatenated). Per-output loss logs ("u_loss") are updated per half with
  the half's row count as weight, which gives the same mean; but when
  TensorFlow retraces the step for an unknown batch size (a smaller last
  batch), Keras weights them 1 per update, and the two halves then count
  as two batches.
- The logs hold four more keys, so Keras takes an epoch's logs (History)
  from its last step: the metrics are the same running means, and the four
  values are that step's.
- On TensorFlow, sparse gradients (`tf.IndexedSlices`, from embeddings)
  stay sparse: the applied one holds both halves' rows, as Keras' own holds
  the batch's (optimizers such as Adam treat a sparse gradient differently
  from its dense sum); the norms sum a row's duplicates first. A gradient
  that is None for one half only counts as zeros.
- Under `tf.distribute.MirroredStrategy` the step runs per replica on its
  share of the batch, so the four values are the replica's (its own halves,
  ``b`` the replica's rows; the norms undo Keras' 1 / replicas loss
  scaling), and Keras averages the logs over replicas (a `TPUStrategy` takes
  the first replica's). Under JAX `keras.distribution.DataParallel` the step
  is global: ``b`` is the global batch.
- Each step runs two forward and backward passes on half batches, the same
  arithmetic as one on the whole batch but less parallel work per call; the
  TensorFlow graph holds the model twice.
"""

import types

import keras

MEASURE_LOGS = ("noise_small_sq", "noise_big_sq", "noise_small_batch",
                "noise_big_batch")


def install_measuring_step(model):
    """Makes `model.fit` train with the measuring step; returns `remove`.

    Sets the model instance's `train_step` to the backend's measuring step
    and rebuilds the train function (`make_train_function(force=True)`),
    so this works from a callback's `on_train_begin`. `remove()` deletes
    that instance attribute and clears `model.train_function`, so the next
    `fit` builds Keras' own step again (a running `fit` keeps the measuring
    one).

    Args:
        model: a compiled Keras 3 model, on TensorFlow, JAX or PyTorch.

    Returns:
        remove: a function of no arguments that undoes the install.

    Raises:
        ValueError: for what the step does not support (module docstring).
    """
    step = _measuring_step(keras.backend.backend())
    _check_supported(model)
    model.train_step = types.MethodType(step, model)
    model.make_train_function(force=True)

    def remove():
        if "train_step" in vars(model):
            del model.train_step
        model.train_function = None

    return remove


class StepSwitch:
    """Keras' own train step and the measuring one in a running `fit`, so
    that only the steps whose readings are used pay for the measurement.

    Build it from a callback's `on_train_begin` (fit has built its own train
    function by then): it keeps that function, installs the measuring one
    (`install_measuring_step`) and starts measuring. `measure(on)` picks
    the step fit runs next: fit reads `model.train_function` at every step
    on TensorFlow, JAX and PyTorch, and PyTorch's looks `train_step` up at
    each call, so both follow. `remove()` undoes the install. The two steps
    update the same variables alike (the measuring one up to float
    rounding); only the measuring one logs `MEASURE_LOGS`.
    """

    def __init__(self, model):
        self.model = model
        model.make_train_function()  # fit's own, built already: kept
        self._own = model.train_function
        self._remove = install_measuring_step(model)
        self._measuring = model.train_function
        self._step = model.train_step
        self.measuring = True

    def measure(self, on):
        """Runs the measuring step from the next step on (`on`), or Keras'
        own."""
        if bool(on) == self.measuring:
            return
        if on:
            self.model.train_step = self._step
        else:
            del self.model.train_step
        self.model.train_function = self._measuring if on else self._own
        self.measuring = bool(on)

    def remove(self):
        """Back to Keras' own step; the next `fit` builds it afresh."""
        self.measure(True)
        self._remove()


def _measuring_step(backend):
    steps = dict(tensorflow=_tensorflow_step, jax=_jax_step,
                 torch=_torch_step)
    if backend not in steps:
        raise ValueError(
            "The measuring train step runs on the TensorFlow, JAX and "
            f"PyTorch backends. Received: backend={backend!r}")
    if backend == "jax":
        from keras.src.backend.config import is_nnx_enabled
        if is_nnx_enabled():
            raise ValueError(
                "The measuring train step does not support Flax NNX (Keras "
                "calls the class's `train_step` there). Received: "
                "KERAS_NNX_ENABLED=true")
    return steps[backend]


def _check_supported(model):
    """Raises ValueError for a model or optimizer the step cannot measure."""
    name = getattr(model, "name", type(model).__name__)
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise ValueError("Argument `model` must be a compiled Keras model. "
                         f"Received: model={name!r}, not compiled")
    owner = next(c for c in type(model).__mro__ if "train_step" in vars(c))
    if not owner.__module__.startswith("keras.src.backend."):
        raise ValueError(
            "Argument `model` must use Keras' own `train_step`; the measuring "
            "step would replace this one. Received: a model whose class "
            f"{owner.__name__} overrides `train_step`")
    if not model.trainable_weights:
        raise ValueError("Argument `model` must have trainable weights. "
                         f"Received: model={name!r} with none")
    if model.steps_per_execution > 1:
        raise ValueError(
            "Argument `model` must be compiled with steps_per_execution=1: "
            "callbacks see only the last step's logs of an execution. "
            f"Received: steps_per_execution={model.steps_per_execution}")
    _check_optimizer(model.optimizer)


def _check_optimizer(optimizer):
    """Raises ValueError for loss scaling or gradient accumulation."""
    scale = getattr(optimizer, "loss_scale_factor", None)
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) or scale:
        raise ValueError(
            "Argument `optimizer` must not scale the loss (the measured "
            "gradients would carry the loss scale). Received: "
            f"optimizer={type(optimizer).__name__} "
            f"(loss scaling, loss_scale_factor={scale!r}); use "
            "\"mixed_bfloat16\" or float32 instead of \"mixed_float16\"")
    steps = getattr(optimizer, "gradient_accumulation_steps", None)
    if steps:
        raise ValueError(
            "Argument `optimizer` must apply each step's gradient: the "
            "measuring step does not support gradient accumulation. "
            f"Received: gradient_accumulation_steps={steps}")


# The math shared by the backends, in `keras.ops` on the backend's tensors.


def _check_rows(rows):
    if rows < 2:
        raise ValueError(
            "The measuring train step needs batches (per replica) of at "
            "least 2 rows, split in two halves; drop a smaller remainder. "
            f"Received: a batch of {rows} row(s)")


def _static_rows(x):
    """The batch's row count from its first input, checked."""
    rows = next(v for v in keras.tree.flatten(x) if v is not None).shape[0]
    _check_rows(rows)
    return rows


def _rows(data, start, stop):
    """Rows [start, stop) of every leaf of `data` (None stays None)."""
    return keras.tree.map_structure(
        lambda v: None if v is None else v[start:stop], data)


def _halves(x, y, sample_weight, h, b):
    """((x, y, sample_weight) of rows [0, h), the same of rows [h, b))."""
    return (_rows((x, y, sample_weight), 0, h),
            _rows((x, y, sample_weight), h, b))


def _half_weights(h, b):
    """(h / b, (b - h) / b) as float32 tensors."""
    h, b = keras.ops.cast(h, "float32"), keras.ops.cast(b, "float32")
    return h / b, (b - h) / b


def _mean(w1, a, w2, c):
    """w1 a + w2 c; None where both are None, zeros for one None."""
    if a is None and c is None:
        return None
    a = keras.ops.zeros_like(c) if a is None else a
    c = keras.ops.zeros_like(a) if c is None else c
    return (keras.ops.cast(w1, a.dtype) * a
            + keras.ops.cast(w2, c.dtype) * c)


def _mean_gradients(g1, g2, w1, w2):
    return [_mean(w1, a, w2, c) for a, c in zip(g1, g2)]


def _sq_norm(grads):
    """Sum over all gradients of their squared entries, float32."""
    return keras.ops.sum(keras.ops.stack(
        [keras.ops.sum(keras.ops.square(keras.ops.cast(g, "float32")))
         for g in grads if g is not None]))


def _concat(y_pred1, y_pred2):
    return keras.tree.map_structure(
        lambda a, c: keras.ops.concatenate([a, c], axis=0), y_pred1, y_pred2)


def _noise_logs(g1, g2, g, h, b, sq_scale=1.0):
    """The four `MEASURE_LOGS` values; `sq_scale` multiplies the squared
    norms (undoes a loss scaling of the gradients)."""
    hf, bf = keras.ops.cast(h, "float32"), keras.ops.cast(b, "float32")
    values = ((_sq_norm(g1) + _sq_norm(g2)) / 2 * sq_scale,
              _sq_norm(g) * sq_scale, 2 * hf * (bf - hf) / bf, bf)
    return dict(zip(MEASURE_LOGS, values))


def _forward(model, x):
    return model(x, training=True) if model._call_has_training_arg \
        else model(x)


def _half_loss(model, x, y, y_pred, sample_weight):
    return model._compute_loss(x=x, y=y, y_pred=y_pred,
                               sample_weight=sample_weight, training=True)


# TensorFlow: Keras' TensorFlowTrainer.train_step, once per half.


def _tensorflow_rows(x):
    """The batch's rows: a Python int when the shape is known, else a
    tensor that asserts it is at least 2."""
    import tensorflow as tf

    leaf = next(v for v in keras.tree.flatten(x) if v is not None)
    if leaf.shape[0] is not None:
        return _static_rows(x)
    rows = tf.shape(leaf)[0]
    check = tf.debugging.assert_greater_equal(
        rows, 2, message="The measuring train step needs batches (per "
        "replica) of at least 2 rows, split in two halves; drop a smaller "
        "remainder")
    with tf.control_dependencies([check]):
        return tf.identity(rows)


def _tensorflow_half(model, x, y, sample_weight):
    """(loss, y_pred, gradients) of one half."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        y_pred = _forward(model, x)
        loss = _half_loss(model, x, y, y_pred, sample_weight)
    return loss, y_pred, tape.gradient(loss, model.trainable_weights)


def _tensorflow_mean(w1, a, w2, c):
    """`_mean` that keeps two sparse gradients sparse: the rows of both,
    weighted (a row in both halves appears twice, which sums)."""
    import tensorflow as tf

    if isinstance(a, tf.IndexedSlices) and isinstance(c, tf.IndexedSlices):
        values = [tf.cast(w, v.dtype) * v for w, v in
                  ((w1, a.values), (w2, c.values))]
        return tf.IndexedSlices(tf.concat(values, 0),
                                tf.concat([a.indices, c.indices], 0),
                                a.dense_shape)
    dense = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices)
             else g for g in (a, c)]
    return _mean(w1, dense[0], w2, dense[1])


def _tensorflow_norm_parts(grads):
    """Tensors whose squared entries sum to |grads|^2: a sparse gradient's
    rows with each index's duplicates summed."""
    import tensorflow as tf

    parts = []
    for g in grads:
        if isinstance(g, tf.IndexedSlices):
            unique, position = tf.unique(g.indices)
            g = tf.math.unsorted_segment_sum(g.values, position,
                                             tf.shape(unique)[0])
        parts.append(g)
    return parts


def _tensorflow_step(self, data):
    """The measuring train step on TensorFlow (per replica under a
    tf.distribute strategy, whose 1 / replicas loss scaling the loss
    tracker and the squared norms undo)."""
    import tensorflow as tf

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    b = _tensorflow_rows(x)
    h = b // 2
    (l1, p1, g1), (l2, p2, g2) = (_tensorflow_half(self, *half) for half
                                  in _halves(x, y, sample_weight, h, b))
    w1, w2 = _half_weights(h, b)
    grads = [_tensorflow_mean(w1, a, w2, c) for a, c in zip(g1, g2)]
    self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    loss = _mean(w1, l1, w2, l2)
    self._loss_tracker.update_state(loss * tf.cast(replicas, loss.dtype),
                                    sample_weight=b)
    logs = self.compute_metrics(x, y, _concat(p1, p2),
                                sample_weight=sample_weight)
    g1, g2, grads = map(_tensorflow_norm_parts, (g1, g2, grads))
    return {**logs, **_noise_logs(g1, g2, grads, h, b, replicas ** 2)}


# JAX: Keras' JAXTrainer.train_step, stateless, once per half.


def _jax_step(self, state, data):
    """The measuring train step on JAX: the non-trainable and metrics
    variables thread from the first half's call into the second's."""
    import jax

    trainable, non_trainable, optimizer_variables, metrics = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    b = _static_rows(x)
    h = b // 2
    grad_fn = jax.value_and_grad(self.compute_loss_and_updates, has_aux=True)
    halves = []
    for hx, hy, hw in _halves(x, y, sample_weight, h, b):
        (_, (loss, y_pred, non_trainable, metrics)), grads = grad_fn(
            trainable, non_trainable, metrics, hx, hy, hw, training=True,
            optimizer_variables=optimizer_variables)
        halves.append((loss, y_pred, grads))
    (l1, p1, g1), (l2, p2, g2) = halves
    w1, w2 = _half_weights(h, b)
    grads = _mean_gradients(g1, g2, w1, w2)
    trainable, optimizer_variables = self.optimizer.stateless_apply(
        optimizer_variables, grads, trainable)
    logs, metrics = self._update_metrics_variables(
        metrics, _mean(w1, l1, w2, l2), x, y, _concat(p1, p2),
        sample_weight)
    state = (trainable, non_trainable, optimizer_variables, metrics)
    return {**logs, **_noise_logs(g1, g2, grads, h, b)}, state


# PyTorch: Keras' TorchTrainer.train_step, once per half.


def _torch_half(model, x, y, sample_weight):
    """(detached loss, y_pred, gradients) of one half, by backward."""
    y_pred = _forward(model, x)
    # Sets the previous half's .grad to None, not to zeros in place: the
    # list taken from it stays that half's gradient.
    model.zero_grad(set_to_none=True)
    loss = _half_loss(model, x, y, y_pred, sample_weight)
    loss.backward()
    return loss.detach(), y_pred, [v.value.grad
                                   for v in model.trainable_weights]


def _torch_step(self, data):
    """The measuring train step on PyTorch."""
    import torch

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    b = _static_rows(x)
    h = b // 2
    (l1, p1, g1), (l2, p2, g2) = (_torch_half(self, *half) for half
                                  in _halves(x, y, sample_weight, h, b))
    w1, w2 = _half_weights(h, b)
    grads = _mean_gradients(g1, g2, w1, w2)
    with torch.no_grad():
        self.optimizer.apply(grads, self.trainable_weights[:])
    self._loss_tracker.update_state(_mean(w1, l1, w2, l2), sample_weight=b)
    logs = self.compute_metrics(x, y, _concat(p1, p2),
                                sample_weight=sample_weight)
    return {**logs, **_noise_logs(g1, g2, grads, h, b)}
