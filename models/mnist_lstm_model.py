"""MNIST-LSTM's model, loss, optimizers and tuned base hyperparameters, in
Keras alone (no TensorFlow import): `models.mnist_lstm` trains them with the
zoo's trainer, and `bench.gpu_report` with `model.fit` on any backend."""

import keras

import keras_legw

# Base hyperparameters, tuned at batch 128 only (docs/results/mnist-lstm.md);
# the base learning rate is the optimizer's own (BASE_LEARNING_RATES).
BASE = dict(base_batch_size=128, base_warmup_epochs=0.2, epochs=25)
# Peak rates at batch 128, each tuned there only, over at most 3 values at 25
# epochs, seed 0 (`python -m bench.mnist_recipes`,
# docs/results/mnist_lstm_recipes.csv): adam 0.002 (of 0.002 and 0.001,
# docs/results/mnist_lstm_base_tuning.csv), adamw 0.004 (of 0.002, 0.004),
# lamb 0.01 (of 0.003, 0.01, 0.03), lars 2 (of 0.5, 2, 8), momentum 0.8 (of
# 0.05, 0.2, 0.8).
BASE_LEARNING_RATES = dict(adam=0.002, adamw=0.004, lamb=0.01, lars=2.0,
                           momentum=0.8)
OPTIMIZERS = tuple(BASE_LEARNING_RATES)
ADAMW_WEIGHT_DECAY = 0.004  # Keras' AdamW default (decoupled, times the rate)


def build_model(units):
    """One LSTM layer of `units` over the 28 rows, then 10 logits."""
    return keras.Sequential([
        keras.Input((28, 28)),
        keras.layers.LSTM(units),
        keras.layers.Dense(10),
    ], name="mnist_lstm")


def make_optimizer(name, schedule):
    """The optimizer `name` (one of OPTIMIZERS) driven by `schedule`."""
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=schedule)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=schedule,
                                      weight_decay=ADAMW_WEIGHT_DECAY)
    if name == "lamb":
        return keras.optimizers.Lamb(learning_rate=schedule)
    if name == "lars":
        return keras_legw.LARS(learning_rate=schedule, momentum=0.9)
    if name == "momentum":
        return keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    raise ValueError(f"Flag --optimizer must be one of {', '.join(OPTIMIZERS)}. "
                     f"Received: {name!r}")


def make_loss(label_smoothing):
    """Per-example cross-entropy on logits; `label_smoothing` mixes the
    one-hot target with the uniform distribution over the 10 classes."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"Flag --label_smoothing must be in [0, 1). "
                         f"Received: {label_smoothing}")
    if not label_smoothing:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                          reduction=None)
    smoothed = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=label_smoothing, reduction=None)
    return lambda labels, logits: smoothed(
        keras.ops.one_hot(keras.ops.cast(labels, "int32"), 10), logits)


def profile_task(rows=4096, seed=0):
    """(compiled model, x, y) for `python -m keras_legw profile --task
    models.mnist_lstm_model:profile_task`: the zoo's model and Adam at its
    base rate, on `rows` random images of MNIST's shape and random labels
    (step times do not depend on the values)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    model = build_model(128)
    model.compile(make_optimizer("adam", BASE_LEARNING_RATES["adam"]),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return (model, rng.random((rows, 28, 28), dtype=np.float32),
            rng.integers(0, 10, rows))
