"""PTB word-level language model (Zaremba et al. 2014), with LEGW.

The reference is the TensorFlow PTB tutorial: `--config=small` (2 LSTM
layers of 200 units, 20 unrolled steps, batch 20, SGD at rate 1.0, gradient
clipped to global norm 5, 13 epochs, the rate halved after each epoch from
the fifth on, weights uniform in +-0.1, no dropout; test perplexity about
115) and `--config=medium` (650 units, 35 steps, dropout 0.5, 39 epochs,
halving by 0.8 after epoch 6, weights +-0.05; about 82). The LSTM state is
carried from batch to batch on every replica, and zeroed at the start of each
epoch, as in the reference. `--schedule=reference` is the tutorial's rate;
`--schedule=legw` replaces it with LEGW from base batch 20 (warmup
`--base_warmup_epochs` x k, polynomial decay).

    python -m models.ptb_lstm --config=small --schedule=reference
    python -m models.ptb_lstm --config=small --batch_size=320   # LEGW, 16x

Expected result (seed 0, two-core CPU, `python -m bench.ptb_sweep
--epochs=3`, docs/results/ptb_sweep.csv): with `--epochs=3`, test perplexity
128.7 with `--schedule=reference` (the tutorial's first three epochs) and
127.6 with LEGW at batch 20; LEGW at 80 and 320 is far behind at that budget
(159.9, 333.7). The tutorial reports about 115 after its 13 epochs.

Evaluation reads the test split as 10 rows per replica with the state
carried across batches (the tutorial uses one row of one step; the numbers
differ slightly). Perplexity is exp(total cross-entropy / tokens), checked
against `keras_hub.metrics.Perplexity` in the tests.
"""

import dataclasses
import math
import os
from typing import Optional

import keras
import tensorflow as tf
from absl import app, flags

import keras_legw

from models import ptb_lstm_input
from models.common import checkpoints, distribute, input_pipeline, trainer
from models.common import flags as common_flags
from models.common.evaluation import Evaluator
from models.common.options import POSITIVE, option, optional

CONFIGS = {
    "small": dict(layers=2, units=200, num_steps=20, epochs=13,
                  decay_start=4, decay=0.5, init_scale=0.1, dropout=0.0),
    "medium": dict(layers=2, units=650, num_steps=35, epochs=39,
                   decay_start=6, decay=0.8, init_scale=0.05, dropout=0.5),
}
BASE = dict(base_batch_size=20, base_learning_rate=1.0,
            base_warmup_epochs=0.1, epochs=13)
CLIP_NORM = 5.0
SPLITS = ("train", "valid", "test")  # load_ptb's order
EVAL_ROWS_PER_REPLICA = 10

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Options:
    """PTB's own options, besides `common_flags.CommonOptions` (whose
    `--epochs` defaults to the config's)."""

    config: str = option("small", "Model size.", choices=CONFIGS)
    num_train_tokens: Optional[int] = option(
        None, "Train on the first N tokens only (smoke runs).",
        check=optional(POSITIVE), flag=False)
    num_test_tokens: Optional[int] = option(
        None, "Evaluate on the first N test tokens only.",
        check=optional(POSITIVE), flag=False)


def reference_schedule(config, base_learning_rate, batch_size, num_examples,
                       epochs):
    """The tutorial's rate as a plain Keras schedule: `base_learning_rate`,
    multiplied by `decay` after each epoch from `decay_start` on (no warmup,
    no batch scaling). Epoch e starts at step `whole_steps(e, N, B)`;
    `PiecewiseConstantDecay` switches after its boundary, hence the - 1."""
    starts = [keras_legw.whole_steps(e, num_examples, batch_size)
              for e in range(config["decay_start"], math.ceil(epochs))]
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [s - 1 for s in starts] or [0],
        [base_learning_rate * config["decay"] ** i
         for i in range(len(starts) + 1)] if starts else
        [base_learning_rate] * 2)


def build_model(config, vocabulary_size, batch_size):
    """Inputs [tokens, reset, h1, c1, h2, c2, ...]; outputs [logits, new
    states...]. `reset` (1 at an epoch's first batch) zeroes the state."""
    init = keras.initializers.RandomUniform(-config["init_scale"],
                                            config["init_scale"])
    units, steps = config["units"], config["num_steps"]
    tokens = keras.Input((steps,), batch_size=batch_size, dtype="int32")
    reset = keras.Input((1,), batch_size=batch_size)
    states = [keras.Input((units,), batch_size=batch_size)
              for _ in range(2 * config["layers"])]
    x = keras.layers.Embedding(vocabulary_size, units,
                               embeddings_initializer=init)(tokens)
    x = keras.layers.Dropout(config["dropout"])(x)
    keep = 1.0 - reset
    new_states = []
    for layer in range(config["layers"]):
        h, c = states[2 * layer] * keep, states[2 * layer + 1] * keep
        x, h, c = keras.layers.LSTM(
            units, return_sequences=True, return_state=True,
            kernel_initializer=init, recurrent_initializer=init,
            bias_initializer=init, unit_forget_bias=False,
            name=f"lstm_{layer + 1}")(x, initial_state=[h, c])
        x = keras.layers.Dropout(config["dropout"])(x)
        new_states += [h, c]
    logits = keras.layers.Dense(vocabulary_size, kernel_initializer=init,
                                bias_initializer=init, name="logits")(x)
    return keras.Model([tokens, reset, *states], [logits, *new_states],
                       name="ptb_lstm")


def profile_task(rows=320, seed=0, data_dir=None):
    """(compiled model, x, y) for `python -m keras_legw profile --task
    models.ptb_lstm:profile_task`: PTB-small's model with its logits as the
    only output and its state inputs fed zeros (a zero state costs the
    compute of a carried one), SGD at rate 1 with the trainer's global
    clipnorm, on `rows` sequences of random tokens."""
    import numpy as np

    config = CONFIGS["small"]
    vocabulary = len(ptb_lstm_input.load_ptb(data_dir)[3])
    full = build_model(config, vocabulary, None)
    model = keras.Model(full.inputs, full.outputs[0])
    model.compile(keras.optimizers.SGD(1.0, global_clipnorm=CLIP_NORM),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng, steps = np.random.default_rng(seed), config["num_steps"]
    zeros = [np.zeros((rows, config["units"]), np.float32)
             for _ in range(2 * config["layers"])]
    x = [rng.integers(0, vocabulary, (rows, steps)).astype(np.int32),
         np.zeros((rows, 1), np.float32), *zeros]
    return model, x, rng.integers(0, vocabulary, (rows, steps))


def make_task(train_ids, test_ids, config, vocabulary_size, replicas):
    """The trainer's view of PTB. A batch of B is B rows of the token
    stream (`input_pipeline.stream_rows`), so a pass at another batch is
    another layout of the same tokens: a batch changes only at a pass's
    start, where the state is zeroed anyway (`reset`), and the trainer
    starts it from zeros with the new rows."""
    units = config["units"]
    eval_rows = EVAL_ROWS_PER_REPLICA * replicas
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction=None)

    def initial_state(training, batch_size=None):
        rows = batch_size // replicas if training else EVAL_ROWS_PER_REPLICA
        return [tf.zeros([rows, units]) for _ in range(2 * config["layers"])]

    def eval_sums(model, batch, state):
        (tokens, reset), targets = batch
        outputs = model([tokens, reset, *state], training=False)
        loss = cross_entropy(targets, outputs[0])
        return ({"cross_entropy": tf.reduce_sum(loss),
                 "tokens": tf.cast(tf.size(targets), tf.float32)},
                list(outputs[1:]))

    return trainer.Task(
        build_model=lambda: build_model(config, vocabulary_size, None),
        # Zaremba et al.: cross-entropy summed over the unrolled steps.
        per_example_loss=lambda targets, logits: tf.reduce_sum(
            cross_entropy(targets, logits), axis=-1),
        # A pass at batch B is exactly its steps: `offset` is B x steps.
        train_dataset=lambda context, batch_size, epoch, offset:
            input_pipeline.sequence_batches(
                train_ids, batch_size, config["num_steps"],
                offset // batch_size, context).prefetch(tf.data.AUTOTUNE),
        eval_dataset=lambda context: input_pipeline.sequence_batches(
            test_ids, eval_rows, config["num_steps"], 0, context,
            repeat=False),
        eval_sums=eval_sums,
        eval_metrics=lambda sums: {
            "test_perplexity": float(
                tf.exp(sums["cross_entropy"] / sums["tokens"]))},
        example_name="tokens",
        example_size=config["num_steps"],
        initial_state=initial_state,
    )


def perplexity_of_trained(model_dir, split, *, config="small", data_dir=None,
                          num_tokens=None):
    """Perplexity of `split` ("valid" or "test") under the trained run in
    `model_dir`: its newest checkpoint's weights, evaluated as `run`
    evaluates the test split (10 rows, the state carried from zeros;
    `num_tokens`: the split's first N tokens only). For choosing the base
    on valid without training again."""
    if split not in SPLITS[1:]:
        raise ValueError(f"Argument `split` must be one of {SPLITS[1:]}. "
                         f"Received: split={split!r}")
    settings = CONFIGS[config]
    splits = ptb_lstm_input.load_ptb(data_dir)
    ids = splits[SPLITS.index(split)][:num_tokens]
    task = make_task(splits[0], ids, settings, len(splits[3]), 1)
    model = task.build_model()
    checkpoints.restore_model_variables(model, model_dir)
    evaluate = Evaluator(task, tf.distribute.get_strategy(), model)
    return evaluate()["test_perplexity"]


def default_model_dir(config, schedule, batch_size, seed):
    return os.path.join("runs",
                        f"ptb_{config}_{schedule}_b{batch_size}_s{seed}")


def run(**kwargs):
    """Trains the PTB language model and returns the stats dict (also in
    `model_dir/results.json`) with `test_perplexity` and `tokens_per_second`
    (`examples_per_second` counts sequences of `num_steps` tokens).
    `kwargs`: `Options` and `common_flags.CommonOptions` by name; the base
    hyperparameters default to `BASE` and `epochs` to the config's;
    `schedule="reference"` is the tutorial's rate."""
    own, options = common_flags.run_options(
        Options, lambda own: dict(BASE, epochs=CONFIGS[own.config]["epochs"]),
        kwargs, extra_schedules=("reference",))
    config, settings = own.config, CONFIGS[own.config]
    tf_strategy = distribute.make_strategy(options.strategy, options.tpu,
                                           options.num_cpu_devices)
    common_flags.set_seed(options.seed, options.deterministic)
    model_dir = options.model_dir or default_model_dir(
        config, options.schedule, options.batch_size, options.seed)
    train_ids, _, test_ids, vocabulary = ptb_lstm_input.load_ptb(options.data_dir)
    train_ids = train_ids[:own.num_train_tokens]
    test_ids = test_ids[:own.num_test_tokens]

    def num_examples(batch_size):
        """Sequences per epoch: a pass at `batch_size` rows."""
        return batch_size * input_pipeline.stream_rows(
            train_ids, batch_size, settings["num_steps"])[1]

    if options.schedule == "reference":
        schedule = reference_schedule(settings, options.base_learning_rate,
                                      options.batch_size,
                                      num_examples(options.batch_size),
                                      options.epochs)
    else:
        schedule = common_flags.schedule_of(options, num_examples)
    task = make_task(train_ids, test_ids, settings, len(vocabulary),
                     tf_strategy.num_replicas_in_sync)
    results, _ = common_flags.train(
        task, options, strategy=tf_strategy, schedule=schedule,
        make_optimizer=lambda: keras.optimizers.SGD(learning_rate=schedule),
        num_examples=num_examples, model_dir=model_dir,
        global_clipnorm=CLIP_NORM)
    return results


def main(argv):
    del argv
    kwargs = common_flags.flag_kwargs(Options)
    if FLAGS["epochs"].using_default_value:
        del kwargs["epochs"]  # the config's
    common_flags.run_script(
        run, kwargs,
        default_model_dir(FLAGS.config, FLAGS.schedule, FLAGS.batch_size,
                          FLAGS.seed),
        lambda r: f"test_perplexity {r['test_perplexity']:.2f} after "
                  f"{r['steps']} steps ({r['epochs']:.2f} epochs)")


if __name__ == "__main__":
    common_flags.define_script_flags(Options, BASE,
                                     extra_schedules=("reference",))
    app.run(main, flags_parser=common_flags.parse_flags)
