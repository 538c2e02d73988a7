"""ResNet-50 v1.5 on ImageNet with LEGW and LARS: the paper's CNN result.

The paper's Table 4 (90 epochs) is LEGW with base batch 512, base learning
rate 4 (2^2) and base warmup 10/64 = 0.15625 epochs, polynomial decay (power
2) to 0: at batch 32768 that is rate 32 (2^5) and 10 warmup epochs. These are
the defaults, so

    python -m models.resnet50 --batch_size=32768 --data_dir=/path/to/tfrecords

uses the paper's numbers with no other flag (on a TPU pod add
`--strategy=tpu --tpu=NAME --dtype=bfloat16 --jit_compile`). Expected
result: the paper reports about 76% top-1 at every batch up to 32K. Not run
here: this repository's machine has two CPU cores and no ImageNet.

Throughput only (random tensors on the device):

    python -m models.resnet50 --data=synthetic --batch_size=256 \\
        --dtype=bfloat16 --jit_compile --max_steps=100

Model: ResNet-50 v1.5 (stride 2 in the 3x3 convolution of the first block of
each stage, as in the MLPerf and NVIDIA references; 25,557,032 parameters),
written here rather than taken from `keras.applications.ResNet50`, which is
v1 (stride in the 1x1 convolution), so that the v1.5 layout and the layer
names that LARS's exclusions match are explicit. The last batch norm of each
residual block starts at zero (Goyal et al. 2017). Label smoothing 0.1;
weight decay and LARS's layer adaptation skip batch-norm and bias variables.
"""

import dataclasses
import os
from typing import Optional

import keras
import tensorflow as tf
from absl import app, flags

from keras_legw import LARS
from models import resnet50_input
from models.common import distribute, trainer
from models.common import flags as common_flags
from models.common.options import NON_NEGATIVE, POSITIVE, option
from models.resnet50_model import build_resnet50

BASE = dict(base_batch_size=512, base_learning_rate=4.0,
            base_warmup_epochs=10 / 64, epochs=90)
DTYPES = ("float32", "bfloat16", "float16")
DATA_SOURCES = ("tfrecord", "tfds", "synthetic")
EXCLUDED = ["batch_norm", "bias"]

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Options:
    """ResNet-50's own options, besides `common_flags.CommonOptions`."""

    data: str = option("tfrecord", "tfrecord (TPU reference format in "
                       "--data_dir), tfds (imagenet2012), or synthetic (random "
                       "tensors).", choices=DATA_SOURCES)
    dtype: str = option("float32", "Compute dtype; float16 adds dynamic loss "
                        "scaling.", choices=DTYPES)
    image_size: int = option(224, "Input resolution.", check=POSITIVE)
    weight_decay: float = option(1e-4, "LARS weight decay.",
                                 check=NON_NEGATIVE)
    label_smoothing: float = option(
        0.1, "Label smoothing.", check=(lambda v: 0 <= v < 1,
                                        "must be in [0, 1)"))
    label_offset: int = option(1, "Subtracted from TFRecord labels (1..1000 "
                               "in the TPU reference format).")
    num_train_examples: int = option(
        resnet50_input.NUM_TRAIN_EXAMPLES, "Training examples per epoch.",
        check=POSITIVE)
    num_eval_examples: Optional[int] = option(
        None, "Evaluation examples; default: the 50,000 of the validation "
        "set, and with --data=synthetic one evaluation batch (accuracy on "
        "random tensors means nothing).")
    eval_batch_size: Optional[int] = option(
        None, "Global evaluation batch; default 1024, and with "
        "--data=synthetic the training batch (at most 1024).")


def make_optimizer(schedule, weight_decay, dtype):

    optimizer = LARS(schedule, momentum=0.9, weight_decay=weight_decay,
                     exclude_from_weight_decay=EXCLUDED,
                     exclude_from_layer_adaptation=EXCLUDED)
    if dtype == "float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def make_task(*, data, data_dir, image_size, eval_batch_size, num_eval_examples, label_smoothing,
              label_offset, seed):

    if data == "tfrecord":
        train_files = resnet50_input.record_files(data_dir, "train")
        eval_files = resnet50_input.record_files(data_dir, "validation")
        resnet50_input.check_first_record(train_files, label_offset)

    def dataset(context, training, global_batch_size=None):
        batch = context.get_per_replica_batch_size(
            global_batch_size if training else eval_batch_size)
        common = dict(image_size=image_size, per_replica_batch=batch, seed=seed,
                      eval_examples=None if training else num_eval_examples)
        if data == "synthetic":
            return resnet50_input.synthetic_dataset(input_context=context,
                                                    **common)
        if data == "tfds":
            return resnet50_input.tfds_dataset(
                split="train" if training else "validation", training=training,
                input_context=context, data_dir=data_dir, **common)
        return resnet50_input.tfrecord_dataset(
            train_files if training else eval_files, training=training,
            input_context=context, label_offset=label_offset, **common)

    cross_entropy = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=label_smoothing, reduction=None)
    return trainer.Task(
        build_model=lambda: build_resnet50(image_size,
                                           resnet50_input.NUM_CLASSES),
        per_example_loss=lambda labels, logits: cross_entropy(
            tf.one_hot(labels, resnet50_input.NUM_CLASSES), logits),
        # The stream of a TFRecord/TFDS input restarts its shuffle on resume
        # rather than replaying the exact order (as MNIST does).
        train_dataset=lambda context, batch_size, epoch, offset: dataset(
            context, True, batch_size),
        eval_dataset=lambda context: dataset(context, False),
        eval_sums=trainer.accuracy_eval,
        eval_metrics=lambda sums: {
            "top1_accuracy": sums["correct"] / max(sums["count"], 1.0),
            "eval_examples": sums["count"]},
        example_name="images",
    )


def eval_sizes(data, batch_size, eval_batch_size, num_eval_examples):
    """(eval_batch_size, num_eval_examples) with their defaults filled in:
    1024 and the validation set's 50,000 for real data; for synthetic data
    one batch of the training size (at most 1024)."""
    synthetic = data == "synthetic"
    if eval_batch_size is None:
        eval_batch_size = min(batch_size, 1024) if synthetic else 1024
    if num_eval_examples is None:
        num_eval_examples = (eval_batch_size if synthetic
                             else resnet50_input.NUM_EVAL_EXAMPLES)
    for name, value in (("eval_batch_size", eval_batch_size),
                        ("num_eval_examples", num_eval_examples)):
        if value < 1:
            raise ValueError(f"Flag --{name} must be a positive integer. "
                             f"Received: {value}")
    return eval_batch_size, num_eval_examples


def default_model_dir(batch_size, seed):
    return os.path.join("runs", f"resnet50_b{batch_size}_s{seed}")


def run(**kwargs):
    """Trains ResNet-50 and returns the stats dict (also in
    `model_dir/results.json`) with `images_per_second` and `top1_accuracy`.
    `kwargs`: `Options` and `common_flags.CommonOptions` by name; the base
    hyperparameters default to `BASE` (the paper's Table 4)."""
    own, options = common_flags.run_options(Options, BASE, kwargs)
    data, dtype = own.data, own.dtype
    eval_batch_size, num_eval_examples = eval_sizes(
        data, options.batch_size, own.eval_batch_size, own.num_eval_examples)
    if data == "tfrecord" and not options.data_dir:
        raise ValueError("--data=tfrecord needs --data_dir, the folder of the "
                         "train-* and validation-* TFRecord files.")
    tf_strategy = distribute.make_strategy(options.strategy, options.tpu,
                                           options.num_cpu_devices)
    replicas = tf_strategy.num_replicas_in_sync
    if eval_batch_size % replicas:
        raise ValueError(f"Flag --eval_batch_size={eval_batch_size} must be "
                         f"divisible by the number of replicas, {replicas}.")
    common_flags.set_seed(options.seed, options.deterministic)
    keras.mixed_precision.set_dtype_policy(
        "float32" if dtype == "float32" else f"mixed_{dtype}")
    model_dir = options.model_dir or default_model_dir(options.batch_size,
                                                       options.seed)
    schedule = common_flags.schedule_of(options, own.num_train_examples)
    task = make_task(data=data, data_dir=options.data_dir,
                     image_size=own.image_size,
                     eval_batch_size=eval_batch_size,
                     num_eval_examples=num_eval_examples,
                     label_smoothing=own.label_smoothing,
                     label_offset=own.label_offset, seed=options.seed)
    try:
        results, _ = common_flags.train(
            task, options, strategy=tf_strategy, schedule=schedule,
            make_optimizer=lambda: make_optimizer(schedule, own.weight_decay,
                                                  dtype),
            num_examples=own.num_train_examples, model_dir=model_dir)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    return results


def main(argv):
    del argv
    common_flags.run_script(
        run, common_flags.flag_kwargs(Options),
        default_model_dir(FLAGS.batch_size, FLAGS.seed),
        lambda r: f"top1_accuracy {r['top1_accuracy']:.4f}, "
                  f"{r['images_per_second']:.1f} images/s, {r['steps']} steps")


if __name__ == "__main__":
    common_flags.define_script_flags(Options, BASE)
    app.run(main, flags_parser=common_flags.parse_flags)
