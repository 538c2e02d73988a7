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

import os

import keras
import tensorflow as tf
from absl import app, flags

from keras_legw import LARS
from models import resnet50_input
from models.common import distribute, trainer
from models.common import flags as common_flags
from models.resnet50_model import build_resnet50

BASE = dict(base_batch_size=512, base_learning_rate=4.0,
            base_warmup_epochs=10 / 64, epochs=90)
DTYPES = ("float32", "bfloat16", "float16")
DATA_SOURCES = ("tfrecord", "tfds", "synthetic")
EXCLUDED = ["batch_norm", "bias"]

FLAGS = flags.FLAGS


def define_flags():
    """The script's flags: the common ones with this application's defaults,
    and its own. Called by `__main__` only, so that several scripts can be
    imported in one process (tests, benchmarks)."""
    common_flags.define_common_flags(**BASE)
    flags.DEFINE_enum("data", "tfrecord", list(DATA_SOURCES),
                      "tfrecord (TPU reference format in --data_dir), tfds "
                      "(imagenet2012), or synthetic (random tensors).")
    flags.DEFINE_enum("dtype", "float32", list(DTYPES),
                      "Compute dtype; float16 adds dynamic loss scaling.")
    flags.DEFINE_integer("image_size", 224, "Input resolution.")
    flags.DEFINE_float("weight_decay", 1e-4, "LARS weight decay.")
    flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing.")
    flags.DEFINE_integer("label_offset", 1,
                         "Subtracted from TFRecord labels (1..1000 in the TPU "
                         "reference format).")
    flags.DEFINE_integer("num_train_examples", resnet50_input.NUM_TRAIN_EXAMPLES,
                         "Training examples per epoch.")
    flags.DEFINE_integer("num_eval_examples", None,
                         "Evaluation examples; default: the 50,000 of the "
                         "validation set, and with --data=synthetic one "
                         "evaluation batch (accuracy on random tensors means "
                         "nothing).")
    flags.DEFINE_integer("eval_batch_size", None,
                         "Global evaluation batch; default 1024, and with "
                         "--data=synthetic the training batch (at most 1024).")


def make_optimizer(schedule, weight_decay, dtype):

    optimizer = LARS(schedule, momentum=0.9, weight_decay=weight_decay,
                     exclude_from_weight_decay=EXCLUDED,
                     exclude_from_layer_adaptation=EXCLUDED)
    if dtype == "float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def make_task(*, data, data_dir, image_size, global_batch_size,
              eval_batch_size, num_eval_examples, label_smoothing,
              label_offset, seed):

    if data == "tfrecord":
        train_files = resnet50_input.record_files(data_dir, "train")
        eval_files = resnet50_input.record_files(data_dir, "validation")
        resnet50_input.check_first_record(train_files, label_offset)

    def dataset(context, training):
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
        train_dataset=lambda context, start_step: dataset(context, True),
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


def run(*, data="tfrecord", dtype="float32", image_size=224, weight_decay=1e-4,
        label_smoothing=0.1, label_offset=1,
        num_train_examples=resnet50_input.NUM_TRAIN_EXAMPLES,
        num_eval_examples=None, eval_batch_size=None, **options):
    """Trains ResNet-50 and returns the stats dict (also in
    `model_dir/results.json`) with `images_per_second` and `top1_accuracy`.
    `options`: the common ones (`common_flags.CommonOptions`), the base
    hyperparameters defaulting to `BASE` (the paper's Table 4)."""
    options = common_flags.CommonOptions.of(BASE, options)
    if dtype not in DTYPES:
        raise ValueError(f"Flag --dtype must be one of {', '.join(DTYPES)}. "
                         f"Received: {dtype!r}")
    if data not in DATA_SOURCES:
        raise ValueError(f"Flag --data must be one of "
                         f"{', '.join(DATA_SOURCES)}. Received: {data!r}")
    eval_batch_size, num_eval_examples = eval_sizes(
        data, options.batch_size, eval_batch_size, num_eval_examples)
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
    schedule = common_flags.schedule_of(options, num_train_examples)
    task = make_task(data=data, data_dir=options.data_dir,
                     image_size=image_size,
                     global_batch_size=options.batch_size,
                     eval_batch_size=eval_batch_size,
                     num_eval_examples=num_eval_examples,
                     label_smoothing=label_smoothing,
                     label_offset=label_offset, seed=options.seed)
    try:
        results, _ = common_flags.train(
            task, options, strategy=tf_strategy, schedule=schedule,
            make_optimizer=lambda: make_optimizer(schedule, weight_decay,
                                                  dtype),
            num_examples=num_train_examples, model_dir=model_dir)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    return results


def main(argv):
    del argv
    kwargs = dict(common_flags.common_run_kwargs(FLAGS), data=FLAGS.data,
                  dtype=FLAGS.dtype, image_size=FLAGS.image_size,
                  weight_decay=FLAGS.weight_decay,
                  label_smoothing=FLAGS.label_smoothing,
                  label_offset=FLAGS.label_offset,
                  num_train_examples=FLAGS.num_train_examples,
                  num_eval_examples=FLAGS.num_eval_examples,
                  eval_batch_size=FLAGS.eval_batch_size)
    common_flags.run_script(
        run, kwargs, default_model_dir(FLAGS.batch_size, FLAGS.seed),
        lambda r: f"top1_accuracy {r['top1_accuracy']:.4f}, "
                  f"{r['images_per_second']:.1f} images/s, {r['steps']} steps")


if __name__ == "__main__":
    define_flags()
    app.run(main)
