"""Sentence pairs for GNMT: the Multi30k and WMT16 loaders, subword
vocabularies and batches.

Each language gets a WordPiece vocabulary built with keras-hub's
`compute_word_piece_vocabulary` from the training sentences and cached in
`model_dir` (a resumed run reads the same vocabulary back). Sentences are
case-preserving WordPiece ids, target sentences wrapped in `[START]` ...
`[END]`; id 0 is padding. Batches follow the deterministic, resumable order of
`input_pipeline` and are cut to the longest sentence in each replica's batch.
"""

import gzip
import os

import numpy as np
import tensorflow as tf

from models.common import input_pipeline
from models.common.data import DataError, fetch

PAD, UNK, START, END = "[PAD]", "[UNK]", "[START]", "[END]"
RESERVED_TOKENS = [PAD, UNK, START, END]
PAD_ID, START_ID, END_ID = 0, 2, 3


def vocabulary(sentences, size, path):
    """The WordPiece vocabulary in `path` if it exists, else one of at most
    `size` tokens computed from `sentences` and written there (one token a
    line). The reserved tokens come first: `[PAD]`=0, `[UNK]`=1,
    `[START]`=2, `[END]`=3."""
    if os.path.exists(path):
        return read_vocabulary(path)
    import keras_hub

    tokens = keras_hub.tokenizers.compute_word_piece_vocabulary(
        tf.data.Dataset.from_tensor_slices(sentences).batch(1000), size,
        reserved_tokens=RESERVED_TOKENS)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    os.replace(tmp, path)
    return tokens


def read_vocabulary(path):
    """The tokens of a vocabulary file written by `vocabulary`."""
    with open(path, encoding="utf-8") as f:
        tokens = f.read().splitlines()
    if tokens[:len(RESERVED_TOKENS)] != RESERVED_TOKENS:
        raise ValueError(f"{path} is not a vocabulary of this model: its "
                         f"first tokens are {tokens[:4]}, expected "
                         f"{RESERVED_TOKENS}. Delete it or use another "
                         "--model_dir.")
    return tokens


def tokenizer(tokens):
    """A case-preserving keras-hub WordPieceTokenizer over `tokens`."""
    import keras_hub

    return keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=tokens, oov_token=UNK, lowercase=False)


def encode(tokenize, sentences, max_length, wrap):
    """Token ids of `sentences`, padded to the longest (at most `max_length`
    ids; longer ones are cut). `wrap` adds `[START]` and `[END]`.

    Returns:
        (ids [n, length] int32, lengths [n] int32, number cut).
    """
    rows = []
    for start in range(0, len(sentences), 4096):
        # keras-hub hands back Python lists of ids.
        rows += [list(row) for row in
                 tokenize(tf.constant(sentences[start:start + 4096]))]
    if wrap:
        rows = [[START_ID, *row, END_ID] for row in rows]
    cut = sum(len(row) > max_length for row in rows)
    if wrap:  # keep [END] on cut sentences: they still end
        rows = [row[:max_length - 1] + [END_ID] if len(row) > max_length
                else row for row in rows]
    else:
        rows = [row[:max_length] for row in rows]
    lengths = np.array([len(row) for row in rows], np.int32)
    ids = np.zeros((len(rows), lengths.max(initial=1)), np.int32)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
    return ids, lengths, cut


def _pair(source, source_lengths, target, target_lengths, index):
    """((source, target_in), target_out) of the sentences `index`, cut to
    the longest in the batch."""
    source_length = tf.reduce_max(tf.gather(source_lengths, index))
    target_length = tf.reduce_max(tf.gather(target_lengths, index))
    source = tf.gather(source, index)[:, :source_length]
    target = tf.gather(target, index)[:, :target_length]
    return (source, target[:, :-1]), target[:, 1:]


def train_batches(pairs, global_batch_size, seed, start_example, context):
    """Per-replica ((source, target_in), target_out) training batches from
    item `start_example` of the stream of passes.
    `pairs` = (source_ids, source_lengths, target_ids, target_lengths)."""
    tensors = [tf.constant(a) for a in pairs]
    return (input_pipeline.replica_index_batches(
                len(pairs[0]), global_batch_size, seed, start_example,
                context)
            .map(lambda index: _pair(*tensors, index))
            .prefetch(tf.data.AUTOTUNE))


def eval_batches(pairs, global_batch_size, context):
    """Per-replica ((source, target_in), target_out, mask) batches over every
    pair once; padding pairs have mask 0."""
    tensors = [tf.constant(a) for a in pairs]
    return (input_pipeline.padded_eval_batches(
                len(pairs[0]), global_batch_size, context)
            .map(lambda index, mask: (*_pair(*tensors, index), mask))
            .prefetch(tf.data.AUTOTUNE))


MULTI30K_URL = ("https://raw.githubusercontent.com/multi30k/dataset/master/"
                "data/task1/raw/")
MULTI30K_FILES = {
    "train.en.gz":
        "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.de.gz":
        "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "val.en.gz":
        "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.de.gz":
        "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "test_2016_flickr.en.gz":
        "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.de.gz":
        "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
}
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr")


def _read_lines(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def load_multi30k(source="de", target="en", data_dir=None, download=True):
    """Multi30k task 1 (Elliott et al. 2016), raw untokenized text, from the
    `translation` dataset folder.

    Returns:
        {split: (source_sentences, target_sentences)} for the splits train
        (29,000 pairs), val (1,014) and test_2016_flickr (1,000).
    """
    if {source, target} != {"de", "en"}:
        raise ValueError("Multi30k translates between de and en. Received: "
                         f"source={source!r}, target={target!r}")
    splits = {}
    for split in MULTI30K_SPLITS:
        sides = []
        for language in (source, target):
            name = f"{split}.{language}.gz"
            sides.append(_read_lines(fetch(
                "translation", name, MULTI30K_FILES[name], MULTI30K_URL,
                data_dir, download)))
        if len(sides[0]) != len(sides[1]):
            raise DataError(f"Multi30k {split}: {len(sides[0])} {source} lines "
                            f"but {len(sides[1])} {target} lines.")
        splits[split] = tuple(sides)
    return splits


def load_wmt16(source="de", target="en", data_dir=None):
    """WMT16 English-German through tensorflow-datasets
    (`wmt16_translate/de-en`: newstest2015 as validation, newstest2016 as
    test), downloaded and prepared by TFDS into `data_dir` (default: TFDS's
    own folder). Same return layout as `load_multi30k`, splits train,
    validation and test. Needs `pip install tensorflow-datasets` and the
    network on first use."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError("--dataset=wmt16 reads WMT16 through "
                        "tensorflow-datasets, which is not installed: run "
                        "`pip install tensorflow-datasets`.") from None
    splits = {}
    for split in ("train", "validation", "test"):
        rows = tfds.as_numpy(tfds.load("wmt16_translate/de-en", split=split,
                                       data_dir=data_dir))
        pairs = [(row[source].decode(), row[target].decode()) for row in rows]
        splits[split] = ([s for s, _ in pairs], [t for _, t in pairs])
    return splits
