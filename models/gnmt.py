"""GNMT (Wu et al. 2016) translation, the LEGW paper's third LSTM application.

The model as used by the paper and by MLPerf: an LSTM encoder whose first
layer is bidirectional, an LSTM decoder whose first layer's output queries a
Bahdanau (additive, learned-scale) attention over the encoder outputs, the
attention context fed to every higher decoder layer, and residual connections
from the third layer on, in both stacks. `--config=gnmt4` is the MLPerf size
(4 layers of 1024 units) for accelerators; `--config=small` (2 layers of 256)
is for this CPU. Subword vocabularies (case-preserving WordPiece, one per
language) are built with keras-hub and cached in `model_dir`; the test split
is translated with keras-hub's `BeamSampler` and scored with keras-hub's
`Bleu` (SacreBLEU's 13a tokenization) on detokenized text.

Data: `--dataset=multi30k` (29,000 training pairs; German to English by
default; `../shared/data/translation` or downloaded) or `--dataset=wmt16`
(WMT16 through tensorflow-datasets, for real runs).

    python -m models.gnmt --config=small                    # base batch 128
    python -m models.gnmt --config=small --batch_size=512   # LEGW, 4x
    python -m models.gnmt --config=small --batch_size=1024 \
        --gradient_accumulation_steps=2                    # LEGW, 8x
    python -m models.gnmt --config=gnmt4 --dataset=wmt16 --strategy=mirrored

(A whole batch of 1024 needs more than 24 GiB on a CPU: the additive
attention holds batch x target x source x units floats several times for the
backward pass. Two micro-batches of 512 give the same update.)

Expected result: docs/results/gnmt.md (`make reproduce-sequence`,
`docs/results/gnmt_sweep.csv`).
"""

import dataclasses
import os
import re
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from models import gnmt_input
from models.common import checkpoints, distribute, trainer
from models.common import flags as common_flags
from models.common.options import NON_NEGATIVE, POSITIVE, option, optional

CONFIGS = {
    "small": dict(layers=2, units=256, dropout=0.1, vocabulary_size=8000,
                  max_length=64),
    "gnmt4": dict(layers=4, units=1024, dropout=0.2, vocabulary_size=32000,
                  max_length=80),
}
DATASETS = ("multi30k", "wmt16")
# Base hyperparameters at batch 128, tuned for Multi30k at 13 epochs
# (`bench.gnmt_tuning`: Adam 1e-2 and the small config's dropout 0.1 gave the
# best val BLEU of 4e-3, 6e-3, 1e-2 and 1.6e-2; MLPerf's 2e-3 and 0.2
# under-fit); the warmup is untuned.
BASE = dict(base_batch_size=128, base_learning_rate=1e-2,
            base_warmup_epochs=0.25, epochs=13)
CLIP_NORM = 5.0
EVAL_BATCH_PER_REPLICA = 100

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Options:
    """GNMT's own options, besides `common_flags.CommonOptions`."""

    config: str = option("small", "Model size.", choices=CONFIGS)
    dataset: str = option("multi30k", "Sentence pairs.", choices=DATASETS)
    source: str = option("de", "Source language (the other one is the "
                         "target).", choices=("de", "en"))
    beam_width: int = option(4, "Beams of the test translation.",
                             check=(lambda v: v >= 1, "must be >= 1"))
    length_penalty: float = option(
        0.0, "GNMT's length penalty alpha: the beam search's final "
        "hypotheses rank by log P / ((5 + length) / 6) ** alpha; 0 ranks by "
        "log P alone.", check=NON_NEGATIVE)
    dropout: Optional[float] = option(
        None, "Dropout rate of the embeddings and of every LSTM layer's "
        "output; default: the config's (0.1 for small).",
        check=optional((lambda v: 0 <= v < 1, "must be in [0, 1)")))
    num_train_pairs: Optional[int] = option(
        None, "Train on the first N pairs only (smoke runs).",
        check=optional(POSITIVE))
    num_test_pairs: Optional[int] = option(
        None, "Evaluate on the first N test pairs only.",
        check=optional(POSITIVE))


class GNMT(keras.Model):
    """Encoder, attention and decoder; `call((source, target_in))` gives the
    logits of every target position (teacher forcing), `encode` and
    `decode` serve step-by-step beam search. Decoder layer i starts from the
    final state of encoder layer i (TF NMT's GNMT, `pass_hidden_state`)."""

    def __init__(self, source_vocabulary_size, target_vocabulary_size, *,
                 layers, units, dropout, **kwargs):
        super().__init__(**kwargs)
        if layers < 2 or units % 2:
            raise ValueError("GNMT needs at least 2 layers and an even number "
                             f"of units. Received: layers={layers}, "
                             f"units={units}")
        self.units = units
        self.source_embedding = keras.layers.Embedding(
            source_vocabulary_size, units, name="source_embedding")
        self.target_embedding = keras.layers.Embedding(
            target_vocabulary_size, units, name="target_embedding")
        self.encoder_layers = [keras.layers.Bidirectional(
            keras.layers.LSTM(units // 2, return_sequences=True,
                              return_state=True),
            name="encoder_1")] + [
            keras.layers.LSTM(units, return_sequences=True, return_state=True,
                              name=f"encoder_{i + 1}")
            for i in range(1, layers)]
        self.decoder_layers = [
            keras.layers.LSTM(units, return_sequences=True, return_state=True,
                              name=f"decoder_{i + 1}") for i in range(layers)]
        self.query_projection = keras.layers.Dense(units, use_bias=False,
                                                   name="attention_query")
        self.key_projection = keras.layers.Dense(units, use_bias=False,
                                                 name="attention_key")
        self.attention = keras.layers.AdditiveAttention(use_scale=True,
                                                        name="attention")
        self.dropout = keras.layers.Dropout(dropout)
        self.logits = keras.layers.Dense(target_vocabulary_size, name="logits")

    def encode(self, source, training=False):
        """(outputs [b, s, units], attention keys [b, s, units], source mask
        [b, s] as 1.0 / 0.0, final states [h1, c1, h2, c2, ...] of the
        layers, the bidirectional layer's two directions concatenated)."""
        mask = tf.not_equal(source, gnmt_input.PAD_ID)
        x = self.dropout(self.source_embedding(source), training=training)
        states = []
        for i, layer in enumerate(self.encoder_layers):
            y, *final = layer(x, mask=mask, training=training)
            if i == 0:  # [h_fw, c_fw, h_bw, c_bw] -> [h, c]
                final = [tf.concat([final[0], final[2]], -1),
                         tf.concat([final[1], final[3]], -1)]
            states += final
            y = self.dropout(y, training=training)
            x = x + y if i >= 2 else y  # residual from the third layer on
        return x, self.key_projection(x), tf.cast(mask, x.dtype), states

    def decode(self, target_in, encoded, keys, source_mask, states,
               training=False):
        """(logits [b, t, vocabulary], new states [h1, c1, h2, c2, ...]),
        layer i starting from `states[2 i: 2 i + 2]` (the encoder's final
        states at a sentence's start)."""
        x = self.dropout(self.target_embedding(target_in), training=training)
        new_states, context = [], None
        for i, layer in enumerate(self.decoder_layers):
            inputs = x if i == 0 else tf.concat([x, context], axis=-1)
            y, h, c = layer(inputs, initial_state=states[2 * i:2 * i + 2],
                            training=training)
            new_states += [h, c]
            if i == 0:  # the bottom layer's output queries the attention
                context = self.attention(
                    [self.query_projection(y), encoded, keys],
                    mask=[None, tf.cast(source_mask, tf.bool)])
            y = self.dropout(y, training=training)
            x = x + y if i >= 2 else y
        return self.logits(x), new_states

    def call(self, inputs, training=False):
        source, target_in = inputs
        encoded, keys, mask, states = self.encode(source, training=training)
        return self.decode(target_in, encoded, keys, mask, states,
                           training=training)[0]


def build_model(config, source_vocabulary_size, target_vocabulary_size):
    """A built GNMT (its variables exist, so checkpoints can restore)."""
    model = GNMT(source_vocabulary_size, target_vocabulary_size,
                 layers=config["layers"], units=config["units"],
                 dropout=config["dropout"], name="gnmt")
    model((tf.ones((1, 2), tf.int32), tf.ones((1, 2), tf.int32)))
    return model


def length_normalizer(lengths, alpha):
    """GNMT's length penalty lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al.
    2016, eq. 14): a hypothesis of |Y| tokens, `[END]` included, ranks by
    log P(Y) / lp(Y). alpha = 0 ranks by log P(Y) alone, which favours
    short translations; larger alpha favours longer ones."""
    return ((5.0 + tf.cast(lengths, tf.float32)) / 6.0) ** alpha


def translate(model, source, *, beam_width, max_length, length_penalty=0.0):
    """Beam search with keras-hub's BeamSampler: target ids [b, max_length]
    starting with `[START]`. A beam that has produced `[END]` is only
    extended with padding at log-probability 0, so its score stays that of
    the finished sentence. The search ranks beams by log-probability; the
    `beam_width` hypotheses it ends with are then ranked by log-probability
    over `length_normalizer(length, length_penalty)`, length counting the
    generated tokens up to `[END]` (all of them for an unfinished beam)."""
    import keras_hub

    encoded, keys, mask, states = model.encode(source)
    batch = tf.shape(source)[0]
    cache = (encoded, keys, mask, *states)
    prompt = tf.concat([tf.fill([batch, 1], gnmt_input.START_ID),
                        tf.zeros([batch, max_length - 1], tf.int32)], axis=1)
    prompt_mask = tf.concat([tf.ones([batch, 1], tf.bool),
                             tf.zeros([batch, max_length - 1], tf.bool)], 1)
    vocabulary_size = model.logits.units
    only_padding = tf.where(
        tf.range(vocabulary_size) == gnmt_input.PAD_ID, 0.0, -1e9)

    def next_token_logits(prompt, cache, index):
        token = tf.gather(prompt, [index - 1], axis=1)
        encoded, keys, mask, *states = cache
        logits, states = model.decode(token, encoded, keys, mask, states)
        finished = tf.logical_or(
            tf.equal(token, gnmt_input.END_ID),
            tf.logical_and(tf.equal(token, gnmt_input.PAD_ID),
                           index > 1))
        logits = tf.where(finished, only_padding[None], logits[:, 0])
        return logits, None, (encoded, keys, mask, *states)

    sampler = keras_hub.samplers.BeamSampler(num_beams=beam_width,
                                             return_all_beams=True)
    beams, log_probs = sampler(next_token_logits, prompt, cache=cache,
                               index=1, mask=prompt_mask,
                               stop_token_ids=[gnmt_input.END_ID])
    # Generated tokens up to [END]: the non-padding ones after [START].
    lengths = tf.reduce_sum(tf.cast(
        tf.not_equal(beams[:, :, 1:], gnmt_input.PAD_ID), tf.int32), -1)
    best = tf.argmax(log_probs / length_normalizer(lengths, length_penalty),
                     axis=-1, output_type=tf.int32)
    return tf.gather(beams, best, axis=1, batch_dims=1)


def detokenize(target_tokenizer, ids):
    """Sentences of target ids (cut at `[END]`, without `[START]`): WordPiece
    detokenization, then hyphens and apostrophes rejoined (WordPiece splits
    them, SacreBLEU's 13a tokenization does not)."""
    rows = []
    for row in np.asarray(ids):
        row = row[row != gnmt_input.START_ID]
        ends = np.flatnonzero(row == gnmt_input.END_ID)
        row = row[:ends[0]] if len(ends) else row
        rows.append([int(t) for t in row if t != gnmt_input.PAD_ID])
    texts = target_tokenizer.detokenize(rows) if rows else []
    texts = [t.decode() if isinstance(t, bytes) else str(t) for t in texts]
    return [re.sub(r" ?([-']) ?", r"\1", t) for t in texts]


def bleu(references, translations):
    """Corpus BLEU (0-100) with keras-hub's Bleu (SacreBLEU 13a tokenizer,
    4-grams, no smoothing)."""
    import keras_hub

    metric = keras_hub.metrics.Bleu()
    metric.update_state(tf.constant(references)[:, None],
                        tf.constant(translations))
    return 100.0 * float(metric.result())


def evaluate_bleu(model, source_ids, references, target_tokenizer, *,
                  beam_width, max_length, length_penalty=0.0, batch_size=100):
    """Translates `source_ids` in batches; returns (BLEU, translations).
    Every batch keeps the full padded width of `source_ids`, so the beam
    search is traced once (the sampler's loop needs static shapes)."""
    step = tf.function(lambda source: translate(
        model, source, beam_width=beam_width, max_length=max_length,
        length_penalty=length_penalty))
    translations = []
    for start in range(0, len(source_ids), batch_size):
        source = tf.constant(source_ids[start:start + batch_size])
        translations += detokenize(target_tokenizer, step(source))
    return bleu(references, translations), translations


def make_task(train_pairs, test_pairs, config, vocabulary_sizes,
              eval_batch_size, seed):
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction=None)

    def per_example_loss(target_out, logits):
        """Cross-entropy summed over each sentence's tokens."""
        mask = tf.cast(tf.not_equal(target_out, gnmt_input.PAD_ID),
                       tf.float32)
        return tf.reduce_sum(cross_entropy(target_out, logits) * mask, axis=-1)

    def eval_sums(model, batch):
        inputs, target_out, pair_mask = batch
        logits = model(inputs, training=False)
        mask = tf.cast(tf.not_equal(target_out, gnmt_input.PAD_ID),
                       tf.float32) * pair_mask[:, None]
        return {"cross_entropy": tf.reduce_sum(
                    cross_entropy(target_out, logits) * mask),
                "tokens": tf.reduce_sum(mask)}

    return trainer.Task(
        build_model=lambda: build_model(config, *vocabulary_sizes),
        per_example_loss=per_example_loss,
        train_dataset=lambda context, batch_size, epoch, offset:
            gnmt_input.train_batches(
                train_pairs, batch_size, seed,
                epoch * len(train_pairs[0]) + offset, context),
        eval_dataset=lambda context: gnmt_input.eval_batches(
            test_pairs, eval_batch_size, context),
        eval_sums=eval_sums,
        eval_metrics=lambda sums: {"test_perplexity": float(
            np.exp(sums["cross_entropy"] / sums["tokens"]))},
        # Throughput in tokens: source and target of the mean training pair
        # (the target without [START]).
        example_name="tokens",
        example_size=float(train_pairs[1].mean() + train_pairs[3].mean() - 1),
    )


SPLITS = ("train", "val", "test")


def target_language(source):
    """The other language of the de/en pair."""
    return "en" if source == "de" else "de"


def vocabulary_path(model_dir, language):
    """Where a run caches its vocabulary of `language`."""
    return os.path.join(model_dir, f"vocabulary.{language}.txt")


def load_pairs(dataset, source, data_dir):
    """{train, val, test: (source sentences, target sentences)}; Multi30k's
    test is test_2016_flickr, WMT16's val is newstest2015."""
    target = target_language(source)
    if dataset == "multi30k":
        splits = gnmt_input.load_multi30k(source, target, data_dir)
        return {"train": splits["train"], "val": splits["val"],
                "test": splits["test_2016_flickr"]}
    if dataset == "wmt16":
        splits = gnmt_input.load_wmt16(source, target, data_dir)
        return {"train": splits["train"], "val": splits["validation"],
                "test": splits["test"]}
    raise ValueError(f"Flag --dataset must be one of {', '.join(DATASETS)}. "
                     f"Received: {dataset!r}")


def translate_trained(model_dir, split, *, config="small",
                      dataset="multi30k", source="de", data_dir=None,
                      num_pairs=None, beam_width=4, length_penalty=0.0):
    """(BLEU, translations) of `split` ("val" or "test") by the trained run
    in `model_dir`: its cached vocabularies and its newest checkpoint, decoded
    as `run` decodes the test split (`num_pairs`: the first N pairs only).
    For choosing decoding settings (the length penalty, on "val") without
    training again."""
    if split not in SPLITS[1:]:
        raise ValueError(f"Argument `split` must be one of {SPLITS[1:]}. "
                         f"Received: split={split!r}")
    settings = CONFIGS[config]
    tokenizers = []
    for language in (source, target_language(source)):
        path = vocabulary_path(model_dir, language)
        if not os.path.exists(path):
            raise ValueError(f"{path} does not exist: pass the --model_dir "
                             "of a trained GNMT run.")
        tokenizers.append(gnmt_input.tokenizer(
            gnmt_input.read_vocabulary(path)))
    model = build_model(settings, tokenizers[0].vocabulary_size(),
                        tokenizers[1].vocabulary_size())
    checkpoints.restore_model_variables(model, model_dir)
    sources, references = [side[:num_pairs] for side in
                           load_pairs(dataset, source, data_dir)[split]]
    source_ids = gnmt_input.encode(tokenizers[0], sources,
                                   settings["max_length"], wrap=False)[0]
    return evaluate_bleu(model, source_ids, references, tokenizers[1],
                         beam_width=beam_width,
                         max_length=settings["max_length"],
                         length_penalty=length_penalty)


def model_settings(config, dropout=None):
    """The `CONFIGS` entry `config`, its dropout replaced by `dropout` unless
    that is None."""
    settings = dict(CONFIGS[config])
    if dropout is not None:
        settings["dropout"] = dropout
    return settings


def default_model_dir(config, schedule, batch_size, seed):
    return os.path.join("runs", f"gnmt_{config}_{schedule}_b{batch_size}_s{seed}")


def run(**kwargs):
    """Trains GNMT, translates the test split with beam search and returns
    the stats dict (also in `model_dir/results.json`) with `test_bleu`,
    `test_perplexity` and `tokens_per_second` (source and target tokens,
    `[END]` included, per second of training). `kwargs`: `Options` and
    `common_flags.CommonOptions` by name; the base hyperparameters default
    to `BASE`."""
    own, options = common_flags.run_options(Options, BASE, kwargs)
    settings, source = model_settings(own.config, own.dropout), own.source
    tf_strategy = distribute.make_strategy(options.strategy, options.tpu,
                                           options.num_cpu_devices)
    common_flags.set_seed(options.seed, options.deterministic)
    model_dir = options.model_dir or default_model_dir(
        own.config, options.schedule, options.batch_size, options.seed)
    text = load_pairs(own.dataset, source, options.data_dir)
    train_text = [side[:own.num_train_pairs] for side in text["train"]]
    test_text = [side[:own.num_test_pairs] for side in text["test"]]
    tokenizers, train_pairs, test_pairs = [], [], []
    for side, language in enumerate((source, target_language(source))):
        tokens = gnmt_input.vocabulary(
            train_text[side], settings["vocabulary_size"],
            vocabulary_path(model_dir, language))
        tokenizers.append(gnmt_input.tokenizer(tokens))
        for text_split, pairs in ((train_text, train_pairs),
                                  (test_text, test_pairs)):
            ids, lengths, _ = gnmt_input.encode(
                tokenizers[side], text_split[side], settings["max_length"],
                wrap=side == 1)
            pairs += [ids, lengths]
    num_examples = len(train_pairs[0])
    schedule = common_flags.schedule_of(options, num_examples)
    task = make_task(
        train_pairs, test_pairs, settings,
        [tokenizers[0].vocabulary_size(), tokenizers[1].vocabulary_size()],
        EVAL_BATCH_PER_REPLICA * tf_strategy.num_replicas_in_sync,
        options.seed)
    results, model = common_flags.train(
        task, options, strategy=tf_strategy, schedule=schedule,
        make_optimizer=lambda: keras.optimizers.Adam(learning_rate=schedule),
        num_examples=num_examples, model_dir=model_dir,
        global_clipnorm=CLIP_NORM)
    results["test_bleu"] = None  # translated by the chief only
    if distribute.is_chief(tf_strategy):
        results["test_bleu"], translations = evaluate_bleu(
            model, test_pairs[0], test_text[1], tokenizers[1],
            beam_width=own.beam_width, max_length=settings["max_length"],
            length_penalty=own.length_penalty)
        with open(os.path.join(model_dir, "translations.txt"), "w",
                  encoding="utf-8") as f:
            f.write("\n".join(translations) + "\n")
        checkpoints.write_json(os.path.join(model_dir, checkpoints.RESULTS_FILE),
                           results)
    return results


def summary(results):
    bleu_text = ("test_bleu: see the chief's results.json"
                 if results["test_bleu"] is None
                 else f"test_bleu {results['test_bleu']:.2f}")
    return (f"{bleu_text}, test_perplexity {results['test_perplexity']:.2f} "
            f"after {results['steps']} steps ({results['epochs']:.2f} epochs)")


def main(argv):
    del argv
    common_flags.run_script(
        run, common_flags.flag_kwargs(Options),
        default_model_dir(FLAGS.config, FLAGS.schedule, FLAGS.batch_size,
                          FLAGS.seed),
        summary)


if __name__ == "__main__":
    common_flags.define_script_flags(Options, BASE)
    app.run(main, flags_parser=common_flags.parse_flags)
