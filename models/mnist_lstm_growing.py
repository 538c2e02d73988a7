"""MNIST-LSTM through `model.fit` with a growing batch, on any Keras backend.

The library's path (`keras_legw.GrowingBatch`), with the zoo's MNIST-LSTM
model and base hyperparameters (tuned at batch 128 only). Command:

    python -m models.mnist_lstm_growing     # LAMB, 0:256,1:1024,3:4096,6:8192
    KERAS_BACKEND=jax python -m models.mnist_lstm_growing \\
        --batch_schedule=noise --max_batch_size=8192

Expected result of the default (the configuration frozen by `python -m
bench.growing_batch`, docs/results/growing_batch.csv, two-core CPU): test
accuracy 0.9891 (seed 0) and 0.9880 (seed 1) after 550 steps, at 8192 from
epoch 6 of 25.

The options are the fields of `Options`, each defined once: the flags are
generated from them and `run(**kwargs)` takes them by the same names, with
the same checks. A bad flag or option ends the script with exit status 2
and one line (`error: ...`).
"""

import dataclasses
import time
from typing import Optional

import keras
import numpy as np
from absl import app, flags

import keras_legw
from models import mnist_lstm_input
from models.common import flags as common_flags
from models.common.flags import NoiseOptions, noise_kwargs
from models.common.options import (NON_NEGATIVE, POSITIVE, POSITIVE_INTEGER,
                                   check_fields, define_flags, from_flags,
                                   option, optional, split)
from models.mnist_lstm_model import (BASE, BASE_LEARNING_RATES, OPTIMIZERS,
                                     build_model, make_optimizer)

EVAL_BATCH = 1000
FROZEN_RAMP = "0:256,1:1024,3:4096,6:8192"

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Options(NoiseOptions):
    """The script's options: its flags, and `run`'s keyword arguments."""

    batch_schedule: str = option(
        FROZEN_RAMP, "'epoch:global_batch,...' (a fixed ramp, e.g. "
        "0:128,1:512,4:2048) or 'noise' (the batch follows the gradient "
        "noise scale measured from the training steps, from the base batch "
        "128 up to --max_batch_size).")
    max_batch_size: Optional[int] = option(
        None, "The largest batch (required with --batch_schedule=noise).",
        check=optional(POSITIVE_INTEGER))
    optimizer: str = option(
        "lamb", "Optimizer, at its base learning rate tuned at batch 128: "
        + ", ".join(f"{k} {v:g}" for k, v in BASE_LEARNING_RATES.items())
        + ".", choices=OPTIMIZERS)
    rate_rule: str = option(
        "sqrt", "How the peak learning rate follows the batch "
        "(keras_legw.GrowingBatchRate): sqrt (LEGW), linear, or none (the "
        "base rate at every batch).",
        choices=keras_legw.growing_batch.RATE_RULES)
    decay_begin_epochs: Optional[float] = option(
        None, "Epoch where the decay begins; default: the end of the "
        "warmup.", check=optional(NON_NEGATIVE))
    epochs: float = option(BASE["epochs"], "Training epochs.", check=POSITIVE)
    seed: int = option(0, "Random seed (weights and data order).")
    data_dir: Optional[str] = option(
        None, "Folder with an mnist/ subfolder; default: $LEGW_DATA_DIR, "
        "then the Keras cache, then download.")
    backup_dir: Optional[str] = option(
        None, "keras.callbacks.BackupAndRestore's folder: a run restarted on "
        "it resumes, in the middle of the ramp too.")
    num_train_examples: Optional[int] = option(
        None, "Train on the first N training images only (smoke runs).",
        check=optional(POSITIVE))
    units: int = option(128, "LSTM units.", check=POSITIVE)
    verbose: int = option(0, "fit's progress output (0: none).", flag=False)


def load_arrays(data_dir=None, num_train_examples=None):
    """((x, y), (x_test, y_test)), float32 images in [0, 1], int32 labels."""
    (x, y), (x_test, y_test) = mnist_lstm_input.load_mnist(data_dir)
    if num_train_examples is not None:
        if num_train_examples > len(y):
            raise ValueError(
                f"Flag --num_train_examples must be in [1, {len(y)}]. "
                f"Received: {num_train_examples}")
        x, y = x[:num_train_examples], y[:num_train_examples]
    return ((x.astype("float32") / 255.0, y.astype("int32")),
            (x_test.astype("float32") / 255.0, y_test.astype("int32")))


def run(**kwargs):
    """Trains and returns a dict: test_accuracy, final_train_loss (the mean
    training loss of the last epoch), steps, examples, wall_seconds (from
    the start of fit), and per-epoch lists (batch_size, test_accuracy,
    learning_rate, noise_scale when measured). `kwargs`: the fields of
    `Options` by name; an unknown one is a TypeError, a bad value one
    ValueError naming its flag (before the data loads, but for
    num_train_examples beyond the training set)."""
    (kwargs,) = split(kwargs, Options)
    o = Options(**kwargs)
    check_fields(o)
    keras.utils.set_random_seed(o.seed)
    base = BASE["base_batch_size"]
    try:
        schedule = keras_legw.batch_schedule(o.batch_schedule, base,
                                             o.max_batch_size,
                                             **noise_kwargs(o))
    except ValueError as error:
        raise ValueError(f"Flag --batch_schedule={o.batch_schedule}: "
                         f"{error}") from None
    base_lr = BASE_LEARNING_RATES[o.optimizer]
    rate = keras_legw.GrowingBatchRate(
        base_learning_rate=base_lr, base_batch_size=base,
        start_batch_size=schedule.start_batch_size,
        base_warmup_epochs=BASE["base_warmup_epochs"], total_epochs=o.epochs,
        rate_rule=o.rate_rule, decay_begin_epochs=o.decay_begin_epochs)
    (x, y), test = load_arrays(o.data_dir, o.num_train_examples)
    data = keras_legw.GrowingBatchDataset(x, y, schedule, seed=o.seed)
    model = build_model(o.units)
    # The batch's mean, as fit and measure_noise_scale expect (the zoo
    # trainer's make_loss is per example).
    model.compile(optimizer=make_optimizer(o.optimizer, base_lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True), metrics=["accuracy"],
                  jit_compile=keras.backend.backend() != "torch")
    callbacks = [keras_legw.GrowingBatch(data, rate,
                                         backup_dir=o.backup_dir)]
    if o.backup_dir:
        callbacks.append(keras.callbacks.BackupAndRestore(o.backup_dir))
    start = time.perf_counter()
    history = model.fit(data, epochs=int(np.ceil(o.epochs)),
                        validation_data=test, validation_batch_size=EVAL_BATCH,
                        callbacks=callbacks, shuffle=False,
                        verbose=o.verbose).history
    wall = time.perf_counter() - start
    return dict(test_accuracy=history["val_accuracy"][-1],
                final_train_loss=history["loss"][-1],
                steps=int(model.optimizer.iterations),
                examples=int(history["examples_seen"][-1]),
                wall_seconds=wall, batch_size=history["batch_size"],
                epoch_test_accuracy=history["val_accuracy"],
                learning_rate=history["learning_rate"],
                noise_scale=history.get("noise_scale", []))


def main(argv):
    del argv
    results = common_flags.exit_on_error(run, **from_flags(FLAGS, Options),
                                         verbose=1)
    print(f"test_accuracy {results['test_accuracy']:.4f} after "
          f"{results['steps']} steps, batches {results['batch_size']}")


if __name__ == "__main__":
    define_flags(Options)
    app.run(main, flags_parser=common_flags.parse_flags)
