"""MNIST with one LSTM layer: the first application of the LEGW paper.

Each 28x28 image is read as 28 time steps of 28 pixels by one LSTM layer of
128 units, followed by a softmax over the 10 classes. The base
hyperparameters were chosen at batch 128 (docs/results/mnist-lstm.md, "Base
hyperparameters for MNIST-LSTM"); at any other batch LEGW scales them with no retuning.

Command (the README's `make demo`; 64x the base batch):

    python -m models.mnist_lstm --batch_size=8192

Expected result (seed 0, measured by `make reproduce` on a two-core CPU,
`docs/results/mnist_lstm_sweep.csv`): test accuracy 0.983 after 25 epochs =
184 steps, in about 4 minutes of training; the same command at
`--batch_size=128` reaches 0.990 in 11,719 steps.

Other examples:

    python -m models.mnist_lstm --batch_size=128 --model_dir=runs/b128
    python -m models.mnist_lstm --batch_size=512 --strategy=mirrored \\
        --num_cpu_devices=2 --max_steps=20
"""

import dataclasses
import os
from typing import Optional

import tensorflow as tf
from absl import app, flags

from models import mnist_lstm_input
from models.common import distribute, input_pipeline, trainer
from models.common import flags as common_flags
from models.common.options import POSITIVE, option, optional
from models.mnist_lstm_model import (ADAMW_WEIGHT_DECAY, BASE,
                                     BASE_LEARNING_RATES, OPTIMIZERS,
                                     build_model, make_loss, make_optimizer)

EVAL_BATCH_PER_REPLICA = 1000

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Options:
    """MNIST-LSTM's own options, besides `common_flags.CommonOptions`."""

    optimizer: str = option(
        "adam", f"adam; adamw (decoupled weight decay {ADAMW_WEIGHT_DECAY:g}); "
        "lamb (keras.optimizers.Lamb); lars (keras_legw.LARS, momentum 0.9, "
        "trust coefficient 0.001); momentum (SGD with momentum 0.9). Base "
        "learning rates: " + ", ".join(
            f"{k} {v:g}" for k, v in BASE_LEARNING_RATES.items()) + ".",
        choices=OPTIMIZERS)
    units: int = option(128, "LSTM units.", check=POSITIVE)
    label_smoothing: float = option(
        0.0, "Label smoothing of the cross-entropy, in [0, 1).",
        check=(lambda v: 0 <= v < 1, "must be in [0, 1)"))
    num_train_examples: Optional[int] = option(
        None, "Train on the first N training images only (smoke runs).",
        check=optional(POSITIVE))


def make_task(train, test, *, units, eval_batch_size, seed,
              label_smoothing=0.0):
    """The trainer's view of MNIST: in-memory uint8 images, indexed batches."""

    train_images = tf.constant(train[0])
    train_labels = tf.constant(train[1])
    test_images = tf.constant(test[0])
    test_labels = tf.constant(test[1])

    def images(source, index):
        return tf.cast(tf.gather(source, index), tf.float32) / 255.0

    def train_dataset(context, batch_size, epoch, offset):
        num_examples = len(train[1])
        return (input_pipeline.replica_index_batches(
                    num_examples, batch_size, seed,
                    epoch * num_examples + offset, context)
                .map(lambda i: (images(train_images, i),
                                tf.gather(train_labels, i)))
                .prefetch(tf.data.AUTOTUNE))

    def eval_dataset(context):
        return (input_pipeline.padded_eval_batches(
                    len(test[1]), eval_batch_size, context)
                .map(lambda i, m: (images(test_images, i),
                                   tf.gather(test_labels, i), m))
                .prefetch(tf.data.AUTOTUNE))

    loss = make_loss(label_smoothing)
    return trainer.Task(
        build_model=lambda: build_model(units),
        per_example_loss=loss,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        eval_sums=trainer.accuracy_eval,
        eval_metrics=lambda sums: {
            "test_accuracy": sums["correct"] / sums["count"]},
    )


def default_model_dir(schedule, batch_size, seed):
    return os.path.join("runs", f"mnist_lstm_{schedule}_b{batch_size}_s{seed}")


def run(**kwargs):
    """Trains MNIST-LSTM and returns the stats dict (also in
    `model_dir/results.json`), with `test_accuracy`. `kwargs`: `Options` and
    `common_flags.CommonOptions` by name; the base hyperparameters default to
    `BASE` and the base rate to the optimizer's."""
    own, options = common_flags.run_options(
        Options, dict(BASE, base_learning_rate=None), kwargs)
    if options.base_learning_rate is None:
        options = dataclasses.replace(
            options, base_learning_rate=BASE_LEARNING_RATES[own.optimizer])
    tf_strategy = distribute.make_strategy(options.strategy, options.tpu,
                                           options.num_cpu_devices)
    common_flags.set_seed(options.seed, options.deterministic)
    model_dir = options.model_dir or default_model_dir(
        options.schedule, options.batch_size, options.seed)
    train, test = mnist_lstm_input.load_mnist(options.data_dir)
    if own.num_train_examples is not None:
        if own.num_train_examples > len(train[1]):
            raise ValueError(
                f"Flag --num_train_examples must be in [1, {len(train[1])}]. "
                f"Received: {own.num_train_examples}")
        train = tuple(part[:own.num_train_examples] for part in train)
    num_examples = len(train[1])
    schedule = common_flags.schedule_of(options, num_examples)
    task = make_task(
        train, test, units=own.units, eval_batch_size=EVAL_BATCH_PER_REPLICA
        * tf_strategy.num_replicas_in_sync, seed=options.seed,
        label_smoothing=own.label_smoothing)
    results, _ = common_flags.train(
        task, options, strategy=tf_strategy, schedule=schedule,
        make_optimizer=lambda: make_optimizer(own.optimizer, schedule),
        num_examples=num_examples, model_dir=model_dir)
    return results


def main(argv):
    del argv
    common_flags.run_script(
        run, common_flags.flag_kwargs(Options),
        default_model_dir(FLAGS.schedule, FLAGS.batch_size, FLAGS.seed),
        lambda r: f"test_accuracy {r['test_accuracy']:.4f} after {r['steps']} "
                  f"steps ({r['epochs']:.2f} epochs)")


if __name__ == "__main__":
    common_flags.define_script_flags(Options, dict(BASE,
                                                   base_learning_rate=None))
    app.run(main, flags_parser=common_flags.parse_flags)
