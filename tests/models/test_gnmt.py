"""GNMT: Multi30k loader, subword pipeline, decoder cache, beam search, BLEU,
and small runs on the real data."""

import collections
import itertools
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import gnmt
from models import gnmt_input
from models.common import data

TINY = dict(layers=3, units=8, dropout=0.0, vocabulary_size=200,
            max_length=24)
SENTENCES = ["a man rides a bike .", "two dogs play in the snow .",
             "a woman sings on a t-shirt stage .", "the man's dog runs ."] * 5


@pytest.fixture(autouse=True)
def tiny_config(monkeypatch):
    monkeypatch.setitem(gnmt.CONFIGS, "tiny", TINY)


def test_multi30k_loader_counts_and_alignment():
    splits = gnmt_input.load_multi30k("de", "en", download=False)
    counts = {split: (len(s), len(t)) for split, (s, t) in splits.items()}
    # Line counts from ../shared/data/translation/README.md.
    assert counts == {"train": (29000, 29000), "val": (1014, 1014),
                      "test_2016_flickr": (1000, 1000)}
    source, target = splits["test_2016_flickr"]
    assert target[0] == "A man in an orange hat starring at something."
    assert source[0].startswith("Ein Mann mit einem orangefarbenen Hut")
    with pytest.raises(ValueError, match="between de and en"):
        gnmt_input.load_multi30k("de", "fr", download=False)


def test_vocabulary_is_cached_and_checked(tmp_path):
    path = str(tmp_path / "vocabulary.en.txt")
    tokens = gnmt_input.vocabulary(SENTENCES, 100, path)
    assert tokens[:4] == gnmt_input.RESERVED_TOKENS
    assert "man" in tokens and "the" in tokens  # the most frequent words
    with open(path, "a", encoding="utf-8") as f:
        f.write("cached\n")  # a second call reads the file, not the text
    assert gnmt_input.vocabulary([], 100, path)[-1] == "cached"
    with open(path, "w", encoding="utf-8") as f:
        f.write("x\ny\n")
    with pytest.raises(ValueError, match="not a vocabulary of this model"):
        gnmt_input.vocabulary(SENTENCES, 100, path)


def test_encode_wraps_pads_and_cuts(tmp_path):
    tokens = gnmt_input.vocabulary(SENTENCES, 100,
                                          str(tmp_path / "v.txt"))
    tokenizer = gnmt_input.tokenizer(tokens)
    plain = [list(tokenizer(tf.constant([s]))[0]) for s in SENTENCES[:3]]
    ids, lengths, cut = gnmt_input.encode(tokenizer, SENTENCES[:3],
                                                 8, wrap=True)
    assert cut == sum(len(p) + 2 > 8 for p in plain) > 0
    for row, length, want in zip(ids, lengths, plain):
        wrapped = [gnmt_input.START_ID, *want,
                   gnmt_input.END_ID]
        if len(wrapped) > 8:
            wrapped = wrapped[:7] + [gnmt_input.END_ID]
        assert list(row[:length]) == wrapped
        assert not row[length:].any()
    assert ids.shape == (3, lengths.max())


def test_batches_are_cut_to_their_longest_pair():
    source = np.array([[5, 6, 0, 0], [5, 6, 7, 0], [5, 0, 0, 0]], np.int32)
    target = np.array([[2, 9, 3, 0, 0], [2, 9, 9, 9, 3], [2, 3, 0, 0, 0]],
                      np.int32)
    pairs = (source, (source > 0).sum(1), target, (target > 0).sum(1))
    context = tf.distribute.InputContext()
    batches = list(gnmt_input.eval_batches(pairs, 2, context)
                   .as_numpy_iterator())
    (src, target_in), target_out, mask = batches[0]
    assert src.shape == (2, 3) and target_in.shape == (2, 4)
    np.testing.assert_array_equal(target_in, target[:2, :-1])
    np.testing.assert_array_equal(target_out, target[:2, 1:])
    (src, target_in), _, mask = batches[1]  # pair 2 and a padding pair
    assert mask.tolist() == [1.0, 0.0] and src.shape == (2, 2)


def _tiny_model(seed=0, vocabulary=30):
    keras.utils.set_random_seed(seed)
    return gnmt.build_model(TINY, vocabulary, vocabulary)


def test_step_by_step_decoding_equals_teacher_forcing():
    """The cached states of the beam search give the logits of the full
    teacher-forced pass; padding in the source changes nothing."""
    model = _tiny_model()
    rng = np.random.default_rng(0)
    source = tf.constant(rng.integers(4, 30, (3, 6)), tf.int32)
    target = tf.constant(rng.integers(4, 30, (3, 5)), tf.int32)
    whole = model((source, target))
    encoded, keys, mask, states = model.encode(source)
    for t in range(5):
        logits, states = model.decode(target[:, t:t + 1], encoded, keys, mask,
                                      states)
        np.testing.assert_allclose(logits[:, 0], whole[:, t], rtol=1e-5,
                                   atol=1e-5)
    padded = tf.concat([source, tf.zeros((3, 4), tf.int32)], axis=1)
    np.testing.assert_allclose(model((padded, target)), whole, rtol=1e-5,
                               atol=1e-5)


def _greedy(model, source, max_length):
    """Greedy decoding by hand: argmax of each step's logits."""
    encoded, keys, mask, states = model.encode(source)
    token = tf.fill((source.shape[0], 1), gnmt_input.START_ID)
    out = [token[:, 0].numpy()]
    for _ in range(max_length - 1):
        logits, states = model.decode(token, encoded, keys, mask, states)
        token = tf.argmax(logits, axis=-1, output_type=tf.int32)
        out.append(token[:, 0].numpy())
    return np.stack(out, axis=1)


def test_beam_of_one_is_greedy_and_finished_beams_pad():
    model = _tiny_model(vocabulary=12)
    # A strong [END] bias makes sentences finish early.
    bias = model.logits.bias.numpy()
    bias[gnmt_input.END_ID] += 0.02
    model.logits.bias.assign(bias)
    source = tf.constant(np.random.default_rng(1).integers(4, 12, (4, 5)),
                         tf.int32)
    beam = gnmt.translate(model, source, beam_width=1, max_length=7).numpy()
    greedy = _greedy(model, source, 7)
    for row_beam, row_greedy in zip(beam, greedy):
        ends = np.flatnonzero(row_greedy == gnmt_input.END_ID)
        stop = ends[0] + 1 if len(ends) else 7
        np.testing.assert_array_equal(row_beam[:stop], row_greedy[:stop])
        assert not row_beam[stop:].any()  # padding after [END]
    wide = gnmt.translate(model, source, beam_width=3, max_length=7).numpy()
    assert wide.shape == (4, 7) and (wide[:, 0] == 2).all()


def _exhaustive_best(model, source, vocabulary, steps, alpha=0.0):
    """The most likely `steps` tokens after [START] for each source row, by
    scoring every sequence: the sum of the log-softmax of each step's logits,
    where after [END] or a generated padding token only padding may follow,
    at log-probability 0; divided by GNMT's ((5 + length) / 6) ** alpha,
    length = the tokens up to the first [END] (included) or padding
    (excluded)."""
    sequences = np.array(list(itertools.product(range(vocabulary),
                                                repeat=steps)))
    lengths = np.full(len(sequences), steps)
    for i, sequence in enumerate(sequences):
        stops = np.flatnonzero(np.isin(sequence, [gnmt_input.END_ID,
                                                   gnmt_input.PAD_ID]))
        if len(stops):
            lengths[i] = stops[0] + (sequence[stops[0]] == gnmt_input.END_ID)
    best = []
    for row in range(source.shape[0]):
        src = tf.repeat(source[row:row + 1], len(sequences), axis=0)
        encoded, keys, mask, states = model.encode(src)
        token = tf.fill((len(sequences), 1), gnmt_input.START_ID)
        score = np.zeros(len(sequences))
        finished = np.zeros(len(sequences), bool)
        for t in range(steps):
            logits, states = model.decode(token, encoded, keys, mask, states)
            log_p = tf.nn.log_softmax(logits[:, 0]).numpy()
            chosen = sequences[:, t]
            step = log_p[np.arange(len(sequences)), chosen]
            padding = chosen == gnmt_input.PAD_ID
            score += np.where(finished, np.where(padding, 0.0, -np.inf), step)
            finished |= np.isin(chosen, [gnmt_input.END_ID,
                                         gnmt_input.PAD_ID])
            token = tf.constant(chosen[:, None], tf.int32)
        best.append(sequences[np.argmax(score / ((5 + lengths) / 6) ** alpha)])
    return np.stack(best)


@pytest.mark.parametrize("case", ["full_length", "finishing"])
def test_wide_beam_finds_the_exhaustive_best(case):
    """With a beam as wide as every hypothesis of the last step but one
    (6^2 = 36 over a 6-token vocabulary), beam search is exact: it must
    return the sequence that scores best over all 6^3. "full_length" makes
    [END] and padding unlikely, so scores of whole sentences decide (and a
    beam of one misses the best); "finishing" makes [END] likely, so the
    zero-cost padding of finished beams decides."""
    END, PAD = gnmt_input.END_ID, gnmt_input.PAD_ID
    model = _tiny_model(seed=5 if case == "full_length" else 4, vocabulary=6)
    bias = model.logits.bias.numpy()
    if case == "full_length":
        bias[[END, PAD]] -= 4.0
        model.logits.kernel.assign(model.logits.kernel.numpy() * 3.0)
    else:
        bias[END] += 0.3
    model.logits.bias.assign(bias)
    source = tf.constant(np.random.default_rng(3).integers(4, 6, (4, 4)),
                         tf.int32)
    beam = gnmt.translate(model, source, beam_width=36, max_length=4).numpy()
    expected = _exhaustive_best(model, source, 6, 3)
    np.testing.assert_array_equal(beam[:, 1:], expected)
    narrow = gnmt.translate(model, source, beam_width=1, max_length=4)
    if case == "full_length":
        assert (expected != narrow.numpy()[:, 1:]).any()
        assert not np.isin(expected, [END, PAD]).any()
    else:
        assert (expected[:, 0] == END).all() and not expected[:, 1:].any()


def test_length_penalty_ranks_every_hypothesis_as_gnmt_does():
    """A beam of 6^3 = 216 ends holding every 3-token hypothesis, so ranking
    them by log P / ((5 + length) / 6) ** alpha must give the exhaustive
    best under that score: here the empty translation at alpha 0, one
    [END] at alpha 1, three words at alpha 4."""
    model = _tiny_model(seed=4, vocabulary=6)
    source = tf.constant(np.random.default_rng(3).integers(4, 6, (4, 4)),
                         tf.int32)
    chosen = {}
    for alpha in (0.0, 1.0, 4.0):
        beam = gnmt.translate(model, source, beam_width=216, max_length=4,
                              length_penalty=alpha).numpy()
        chosen[alpha] = beam[:, 1:]
        np.testing.assert_array_equal(
            chosen[alpha], _exhaustive_best(model, source, 6, 3, alpha))
    assert not chosen[0.0].any()
    assert (chosen[1.0][:, 0] == gnmt_input.END_ID).all()
    assert not np.isin(chosen[4.0], [gnmt_input.END_ID,
                                     gnmt_input.PAD_ID]).any()
    np.testing.assert_allclose(
        gnmt.length_normalizer(np.array([1, 7]), 0.6).numpy(),
        [1.0, 2.0 ** 0.6])


def test_bleu_evaluation_over_batches_of_any_length(tmp_path):
    """Several batches, sentences of different lengths, a short last batch:
    one translation a sentence, and translating them one by one agrees."""
    model = _tiny_model(vocabulary=12)
    tokens = gnmt_input.RESERVED_TOKENS + list("abcdefgh")
    tokenizer = gnmt_input.tokenizer(tokens)
    rng = np.random.default_rng(2)
    source = np.zeros((5, 7), np.int32)
    for i, length in enumerate((7, 2, 5, 3, 6)):
        source[i, :length] = rng.integers(4, 12, length)
    references = ["a b", "c", "d e f", "g", "h a"]
    score, translations = gnmt.evaluate_bleu(
        model, source, references, tokenizer, beam_width=2, max_length=6,
        batch_size=2)
    assert len(translations) == 5 and 0 <= score <= 100
    one_by_one = [gnmt.detokenize(tokenizer, gnmt.translate(
        model, tf.constant(source[i:i + 1]), beam_width=2, max_length=6))[0]
        for i in range(5)]
    assert translations == one_by_one


def _reference_bleu(references, translations):
    """Corpus BLEU-4 (Papineni et al. 2002) over whitespace tokens."""
    matches, possible = np.zeros(4), np.zeros(4)
    ref_length = hyp_length = 0
    for ref, hyp in zip(references, translations):
        ref, hyp = ref.split(), hyp.split()
        ref_length, hyp_length = ref_length + len(ref), hyp_length + len(hyp)
        for n in range(1, 5):
            r = collections.Counter(tuple(ref[i:i + n])
                                    for i in range(len(ref) - n + 1))
            h = collections.Counter(tuple(hyp[i:i + n])
                                    for i in range(len(hyp) - n + 1))
            matches[n - 1] += sum(min(c, r[g]) for g, c in h.items())
            possible[n - 1] += max(len(hyp) - n + 1, 0)
    precision = np.exp(np.mean(np.log(matches / possible)))
    penalty = min(1.0, math.exp(1 - ref_length / hyp_length))
    return 100 * precision * penalty


def test_bleu_matches_the_formula():
    references = ["a man is riding a red bike down the street",
                  "two dogs are playing in the white snow"]
    translations = ["a man is riding a bike down the street",
                    "two dogs play in the snow together"]
    assert gnmt.bleu(references, translations) == pytest.approx(
        _reference_bleu(references, translations), rel=1e-5)
    assert gnmt.bleu(references, references) == pytest.approx(100.0)


def test_detokenize_cuts_at_end_and_rejoins(tmp_path):
    tokens = gnmt_input.vocabulary(SENTENCES, 100,
                                          str(tmp_path / "v.txt"))
    tokenizer = gnmt_input.tokenizer(tokens)
    ids, _, cut = gnmt_input.encode(tokenizer, SENTENCES[2:4], 64,
                                           wrap=True)
    assert cut == 0
    ids = np.concatenate([ids, np.full((2, 2), 7, np.int32)], axis=1)
    ids[ids == 0] = 9  # tokens after [END] are ignored
    assert gnmt.detokenize(tokenizer, ids) == SENTENCES[2:4]


def _run(tmp_path, name, **kwargs):
    kwargs = dict(dict(batch_size=16, epochs=1, max_steps=4, config="tiny",
                       num_train_pairs=512, num_test_pairs=24, beam_width=2,
                       steps_per_loop=2, num_cpu_devices=2, deterministic=True, verbose=0),
                  **kwargs)
    return gnmt.run(model_dir=str(tmp_path / name), **kwargs)


def test_small_run_resumes_and_matches_two_replicas(tmp_path):
    first = _run(tmp_path, "d", max_steps=2)
    assert first["steps"] == 2
    resumed = _run(tmp_path, "d")
    assert resumed["resumed_from_step"] == 2 and resumed["steps"] == 4
    mirrored = _run(tmp_path, "m", strategy="mirrored")
    assert 0 <= resumed["test_bleu"] <= 100
    assert 1 < resumed["test_perplexity"] < 1000
    assert resumed["tokens_per_second"] > resumed["examples_per_second"] > 0
    saved = json.loads((tmp_path / "d" / "results.json").read_text())
    assert saved["test_bleu"] == resumed["test_bleu"]
    lines = (tmp_path / "d" / "translations.txt").read_text().splitlines()
    assert len(lines) == 24
    assert (tmp_path / "d" / "vocabulary.de.txt").exists()
    # Same global batches: two replicas (each cutting its half to its own
    # longest pair) train like one device. Adam's per-element normalisation
    # turns float round-off in near-zero gradients into lr-sized weight
    # differences, so the losses (of steps 3-4) are compared, not weights.
    assert mirrored["final_loss"] == pytest.approx(resumed["final_loss"],
                                                   rel=1e-4)
    assert mirrored["test_perplexity"] == pytest.approx(
        resumed["test_perplexity"], rel=1e-3)
    # The trained run decodes again from its checkpoint and vocabularies
    # alone, to the same translations and BLEU.
    again, translations = gnmt.translate_trained(
        str(tmp_path / "d"), "test", config="tiny", num_pairs=24,
        beam_width=2)
    assert translations == lines and again == resumed["test_bleu"]


def test_dropout_option_reaches_the_model_and_leaves_the_config(
        tmp_path, monkeypatch):
    built = []
    build_model = gnmt.build_model

    def spy(config, *sizes):
        built.append(config["dropout"])
        return build_model(config, *sizes)

    monkeypatch.setattr(gnmt, "build_model", spy)
    _run(tmp_path, "dropout", dropout=0.35, max_steps=1)
    assert built and set(built) == {0.35}
    assert gnmt.CONFIGS["tiny"]["dropout"] == TINY["dropout"] != 0.35
    assert gnmt.model_settings("tiny")["dropout"] == TINY["dropout"]


def test_translate_trained_needs_a_trained_run(tmp_path):
    with pytest.raises(ValueError, match="vocabulary.de.txt does not exist"):
        gnmt.translate_trained(str(tmp_path), "val")
    with pytest.raises(ValueError, match="`split` must be one of"):
        gnmt.translate_trained(str(tmp_path), "train")
    for language in ("de", "en"):
        gnmt_input.vocabulary(SENTENCES, 100,
                              str(tmp_path / f"vocabulary.{language}.txt"))
    with pytest.raises(ValueError, match="No checkpoint in"):
        gnmt.translate_trained(str(tmp_path), "val", config="tiny")


def test_bad_arguments_and_missing_data(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="--config must be one of"):
        _run(tmp_path, "a", config="huge")
    with pytest.raises(ValueError, match="--beam_width must be >= 1"):
        _run(tmp_path, "b", beam_width=0)
    with pytest.raises(ValueError, match=r"--dropout must be in \[0, 1\)"):
        _run(tmp_path, "c", dropout=1.0)
    with pytest.raises(ValueError, match="at least 2 layers"):
        gnmt.GNMT(10, 10, layers=1, units=8, dropout=0.0)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "nothing"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(data.DataError, match="train.de.gz of translation"):
        gnmt_input.load_multi30k(download=False)


def test_wmt16_without_tensorflow_datasets_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(data.DataError, match="pip install tensorflow-datasets"):
        gnmt_input.load_wmt16()


def test_script_without_data_exits_with_one_clear_error(tmp_path):
    env = dict(os.environ, LEGW_DATA_DIR=str(tmp_path / "none"),
               HOME=str(tmp_path), https_proxy="http://127.0.0.1:9",
               HTTPS_PROXY="http://127.0.0.1:9")
    result = subprocess.run(
        [sys.executable, "-m", "models.gnmt", "--data_dir=/nonexistent",
         f"--model_dir={tmp_path / 'run'}", "--max_steps=1"],
        capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    assert "train.de.gz of translation not found in /nonexistent/translation" \
        in result.stderr
    assert "Traceback" not in result.stderr


def test_bleu_equals_sacrebleu_on_multi30k_references():
    """Our corpus BLEU (keras-hub's Bleu: 13a tokenization, case-sensitive,
    4-grams, no smoothing) against sacrebleu's default corpus_bleu, so the
    published numbers compare with Multi30k papers: the test_2016_flickr
    references against copies with words dropped and neighbours swapped."""
    import sacrebleu

    references = list(gnmt_input.load_multi30k(
        "de", "en", download=False)["test_2016_flickr"][1])
    rng = np.random.default_rng(0)
    for drop in (0.1, 0.4):
        hypotheses = []
        for sentence in references:
            words = [w for w in sentence.split() if rng.random() > drop]
            if len(words) > 3:
                i = rng.integers(len(words) - 1)
                words[i], words[i + 1] = words[i + 1], words[i]
            hypotheses.append(" ".join(words) or sentence.split()[0])
        ours = gnmt.bleu(references, hypotheses)
        theirs = sacrebleu.corpus_bleu(hypotheses, [references]).score
        assert 5 < theirs < 80
        assert ours == pytest.approx(theirs, abs=0.01)
    lowered = [s.lower() for s in references]  # case matters, as in sacrebleu
    assert gnmt.bleu(references, lowered) == pytest.approx(
        sacrebleu.corpus_bleu(lowered, [references]).score, abs=0.01)
