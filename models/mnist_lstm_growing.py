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
"""

import argparse
import os
import time

import keras
import numpy as np

import keras_legw
from models import mnist_lstm_input
from models.mnist_lstm_model import (BASE, BASE_LEARNING_RATES, OPTIMIZERS,
                                     build_model, make_optimizer)

EVAL_BATCH = 1000


def load_arrays(data_dir=None, num_train_examples=None):
    """((x, y), (x_test, y_test)), float32 images in [0, 1], int32 labels."""
    (x, y), (x_test, y_test) = mnist_lstm_input.load_mnist(data_dir)
    if num_train_examples is not None:
        x, y = x[:num_train_examples], y[:num_train_examples]
    return ((x.astype("float32") / 255.0, y.astype("int32")),
            (x_test.astype("float32") / 255.0, y_test.astype("int32")))


FROZEN_RAMP = "0:256,1:1024,3:4096,6:8192"


def run(batch_schedule=FROZEN_RAMP,
        optimizer="lamb", rate_rule="sqrt", max_batch_size=None, seed=0,
        epochs=BASE["epochs"], decay_begin_epochs=None,
        noise_scale_multiplier=1.0, units=128, data_dir=None,
        backup_dir=None, num_train_examples=None, verbose=0):
    """Trains and returns a dict: test_accuracy, final_train_loss (the mean
    training loss of the last epoch), steps, examples, wall_seconds (from
    the start of fit), and per-epoch lists (batch_size, test_accuracy,
    learning_rate, noise_scale when measured)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Argument `optimizer` must be one of {OPTIMIZERS}."
                         f" Received: optimizer={optimizer!r}")
    keras.utils.set_random_seed(seed)
    (x, y), test = load_arrays(data_dir, num_train_examples)
    base = BASE["base_batch_size"]
    noise_kwargs = ({} if batch_schedule != "noise" else
                    dict(noise_scale_multiplier=noise_scale_multiplier))
    schedule = keras_legw.batch_schedule(batch_schedule, base, max_batch_size,
                                         **noise_kwargs)
    data = keras_legw.GrowingBatchDataset(x, y, schedule, seed=seed)
    base_lr = BASE_LEARNING_RATES[optimizer]
    rate = keras_legw.GrowingBatchRate(
        base_learning_rate=base_lr, base_batch_size=base,
        start_batch_size=schedule.start_batch_size,
        base_warmup_epochs=BASE["base_warmup_epochs"], total_epochs=epochs,
        rate_rule=rate_rule, decay_begin_epochs=decay_begin_epochs)
    model = build_model(units)
    # The batch's mean, as fit and measure_noise_scale expect (the zoo
    # trainer's make_loss is per example).
    model.compile(optimizer=make_optimizer(optimizer, base_lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True), metrics=["accuracy"],
                  jit_compile=keras.backend.backend() != "torch")
    callbacks = [keras_legw.GrowingBatch(data, rate, backup_dir=backup_dir)]
    if backup_dir:
        callbacks.append(keras.callbacks.BackupAndRestore(backup_dir))
    start = time.perf_counter()
    history = model.fit(data, epochs=int(np.ceil(epochs)),
                        validation_data=test, validation_batch_size=EVAL_BATCH,
                        callbacks=callbacks, shuffle=False,
                        verbose=verbose).history
    wall = time.perf_counter() - start
    return dict(test_accuracy=history["val_accuracy"][-1],
                final_train_loss=history["loss"][-1],
                steps=int(model.optimizer.iterations),
                examples=int(history["examples_seen"][-1]),
                wall_seconds=wall, batch_size=history["batch_size"],
                epoch_test_accuracy=history["val_accuracy"],
                learning_rate=history["learning_rate"],
                noise_scale=history.get("noise_scale", []))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_schedule", default=FROZEN_RAMP,
                        help="epoch:global_batch pairs, or 'noise'")
    parser.add_argument("--max_batch_size", type=int, default=None)
    parser.add_argument("--optimizer", default="lamb", choices=OPTIMIZERS)
    parser.add_argument("--rate_rule", default="sqrt",
                        choices=keras_legw.growing_batch.RATE_RULES)
    parser.add_argument("--decay_begin_epochs", type=float, default=None)
    parser.add_argument("--noise_scale_multiplier", type=float, default=1.0)
    parser.add_argument("--epochs", type=float, default=BASE["epochs"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data_dir", default=os.environ.get("LEGW_DATA_DIR"))
    parser.add_argument("--backup_dir", default=None)
    args = parser.parse_args(argv)
    try:
        results = run(verbose=1, **vars(args))
    except ValueError as error:
        parser.error(str(error))
    print(f"test_accuracy {results['test_accuracy']:.4f} after "
          f"{results['steps']} steps, batches {results['batch_size']}")


if __name__ == "__main__":
    main()
