"""Subword vocabularies and batches for sentence-pair (translation) data.

Each language gets a WordPiece vocabulary built with keras-hub's
`compute_word_piece_vocabulary` from the training sentences and cached in
`model_dir` (a resumed run reads the same vocabulary back). Sentences are
case-preserving WordPiece ids, target sentences wrapped in `[START]` ...
`[END]`; id 0 is padding. Batches follow the deterministic, resumable order of
`input_pipeline` and are cut to the longest sentence in each replica's batch.
"""

import os

import numpy as np
import tensorflow as tf

from models.common import input_pipeline

PAD, UNK, START, END = "[PAD]", "[UNK]", "[START]", "[END]"
RESERVED_TOKENS = [PAD, UNK, START, END]
PAD_ID, START_ID, END_ID = 0, 2, 3


def vocabulary(sentences, size, path):
    """The WordPiece vocabulary in `path` if it exists, else one of at most
    `size` tokens computed from `sentences` and written there (one token a
    line). The reserved tokens come first: `[PAD]`=0, `[UNK]`=1,
    `[START]`=2, `[END]`=3."""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            tokens = f.read().splitlines()
        if tokens[:len(RESERVED_TOKENS)] != RESERVED_TOKENS:
            raise ValueError(f"{path} is not a vocabulary of this model: its "
                             f"first tokens are {tokens[:4]}, expected "
                             f"{RESERVED_TOKENS}. Delete it or use another "
                             "--model_dir.")
        return tokens
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


def train_batches(pairs, global_batch_size, seed, start_step, context):
    """Per-replica ((source, target_in), target_out) training batches.
    `pairs` = (source_ids, source_lengths, target_ids, target_lengths)."""
    tensors = [tf.constant(a) for a in pairs]
    return (input_pipeline.replica_index_batches(
                len(pairs[0]), global_batch_size, seed, start_step, context)
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
