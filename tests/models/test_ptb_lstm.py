"""PTB language model: loader, stream layout, carried state, perplexity,
schedule, and small runs on the real data."""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from models import ptb_lstm
from models import ptb_lstm_input
from models.common import input_pipeline
from tests.models import multi_worker

TINY = dict(layers=2, units=8, num_steps=5, epochs=2, decay_start=1,
            decay=0.5, init_scale=0.1, dropout=0.0)


def test_loader_matches_the_tutorial_reader():
    train, valid, test, vocabulary = ptb_lstm_input.load_ptb(download=False)
    # Counts from ../shared/data/ptb/README.md (tokens + <eos> per line).
    assert (len(train), len(valid), len(test)) == (929589, 73760, 82430)
    assert len(vocabulary) == 10000
    assert vocabulary[:4] == ["the", "<unk>", "<eos>", "N"]
    assert train.max() == 9999 and train.dtype == np.int32


def test_stream_layout_and_replica_rows():
    ids = np.arange(100, dtype=np.int32)  # 4 rows of 25 tokens
    context = tf.distribute.InputContext(1, 0, 2)  # replica 1 of 2
    batches = list(input_pipeline.sequence_batches(ids, 4, 3, 0, context)
                   .take(6).as_numpy_iterator())
    rows = ids.reshape(4, 25)
    # Elements alternate replica 0, replica 1; replica 1 owns rows 2-3.
    (tokens, reset), targets = batches[1]
    np.testing.assert_array_equal(tokens, rows[2:4, 0:3])
    np.testing.assert_array_equal(targets, rows[2:4, 1:4])
    assert reset.tolist() == [[1.0], [1.0]]
    (tokens, reset), _ = batches[3]  # step 1: next columns, no reset
    np.testing.assert_array_equal(tokens, rows[2:4, 3:6])
    assert reset.tolist() == [[0.0], [0.0]]
    # (25 - 1) // 3 = 8 steps per pass; resuming at step 9 = pass 2, step 1.
    resumed = next(input_pipeline.sequence_batches(ids, 4, 3, 9, context)
                   .skip(1).as_numpy_iterator())
    np.testing.assert_array_equal(resumed[0][0], rows[2:4, 3:6])


def test_carried_state_equals_one_long_sequence():
    """Two batches of T tokens with the state carried give the logits of one
    pass over the 2T tokens; reset = 1 restarts from zeros."""
    keras.utils.set_random_seed(0)
    model = ptb_lstm.build_model(TINY, 50, None)
    long = ptb_lstm.build_model(dict(TINY, num_steps=10), 50, None)
    long.set_weights(model.get_weights())
    tokens = tf.constant(np.random.default_rng(0).integers(0, 50, (3, 10)))
    zeros = [tf.zeros((3, 8))] * 4
    ones, no_reset = tf.ones((3, 1)), tf.zeros((3, 1))
    first = model([tokens[:, :5], ones, *zeros])
    second = model([tokens[:, 5:], no_reset, *first[1:]])
    whole = long([tokens, ones, *zeros])[0]
    np.testing.assert_allclose(np.concatenate([first[0], second[0]], axis=1),
                               whole, rtol=1e-5, atol=1e-6)
    restarted = model([tokens[:, :5], ones, *first[1:]])[0]
    np.testing.assert_allclose(restarted, first[0], rtol=1e-6)


def test_perplexity_matches_keras_hub():
    keras.utils.set_random_seed(1)
    task = ptb_lstm.make_task(np.arange(200) % 50, np.arange(200) % 50, TINY,
                              50, 1)
    model = task.build_model()
    context = tf.distribute.InputContext()
    batch = next(iter(task.eval_dataset(context)))
    sums, _ = task.eval_sums(model, batch, task.initial_state(False))
    ours = task.eval_metrics({k: float(v) for k, v in sums.items()})
    metric = keras_hub.metrics.Perplexity(from_logits=True)
    (tokens, reset), targets = batch
    logits = model([tokens, reset, *task.initial_state(False)])[0]
    metric.update_state(targets, logits)
    assert ours["test_perplexity"] == pytest.approx(float(metric.result()),
                                                    rel=1e-5)


def test_reference_schedule_is_the_tutorials():
    config = ptb_lstm.CONFIGS["small"]
    schedule = ptb_lstm.reference_schedule(config, 1.0, 20, 46460, 13)
    for epoch in range(13):
        step = epoch * 2323  # steps per epoch at batch 20
        want = 1.0 * 0.5 ** max(epoch + 1 - 4, 0)  # tutorial's lr_decay
        assert float(schedule(step)) == pytest.approx(want), epoch


def _run(tmp_path, name, **kwargs):
    kwargs = dict(dict(batch_size=8, epochs=1, max_steps=6, config="small",
                       num_train_tokens=4000, num_test_tokens=2000,
                       num_cpu_devices=2, deterministic=True, verbose=0),
                  **kwargs)
    return ptb_lstm.run(model_dir=str(tmp_path / name), **kwargs)


def _assert_same_weights(dir_a, dir_b):
    """The model variables of the newest checkpoints in two runs agree
    within float tolerance (sums in another order)."""
    reader = [tf.train.load_checkpoint(str(d / "checkpoints"))
              for d in (dir_a, dir_b)]
    names = [n for n in reader[0].get_variable_to_shape_map()
             if n.startswith("model_variables/")]
    assert names
    for name in names:
        np.testing.assert_allclose(reader[0].get_tensor(name),
                                   reader[1].get_tensor(name),
                                   rtol=1e-4, atol=1e-6, err_msg=name)


def test_two_replicas_carry_their_rows_like_one(tmp_path):
    """Each replica carries the state of its own rows: two replicas give the
    weights of one (same global batches, clipping after the all-reduce)."""
    mirrored = _run(tmp_path, "m", strategy="mirrored")
    single = _run(tmp_path, "d", strategy="default")
    assert mirrored["steps"] == single["steps"] == 6
    # (Evaluation uses 10 rows per replica, so the perplexities differ.)
    assert 1 < single["test_perplexity"] < 10000
    assert single["tokens_per_second"] == pytest.approx(
        single["examples_per_second"] * 20)
    for name in ("m", "d"):
        assert (tmp_path / name / "results.json").exists()
    _assert_same_weights(tmp_path / "m", tmp_path / "d")


def test_two_workers_carry_their_rows_like_one_device(tmp_path):
    """Two worker processes (MultiWorkerMirroredStrategy, one device each,
    where `strategy.run` hands a replica's state back unwrapped) train to
    the weights of one device at the same global batch."""
    workers = multi_worker.start_workers(["-c", (
        "from models import ptb_lstm; ptb_lstm.run(strategy='multi_worker', "
        f"model_dir={str(tmp_path / 'w')!r}, batch_size=8, epochs=1, "
        "max_steps=6, config='small', num_train_tokens=4000, "
        "num_test_tokens=2000, deterministic=True, verbose=0)")])
    multi_worker.wait_for_both(workers)
    _run(tmp_path, "d", strategy="default")
    _assert_same_weights(tmp_path / "w", tmp_path / "d")


def test_a_trained_runs_perplexity_again_on_test_and_on_valid(tmp_path):
    """Its checkpoint evaluated again on test gives the perplexity the
    trainer reported at the end of the run; valid is another split; a split
    that cannot be evaluated is refused."""
    results = _run(tmp_path, "t", strategy="default")
    model_dir = str(tmp_path / "t")
    again = ptb_lstm.perplexity_of_trained(model_dir, "test", num_tokens=2000)
    assert again == pytest.approx(results["test_perplexity"], rel=1e-5)
    valid = ptb_lstm.perplexity_of_trained(model_dir, "valid",
                                           num_tokens=2000)
    assert 1 < valid < 10000 and valid != pytest.approx(again, rel=1e-3)
    with pytest.raises(ValueError, match="`split` must be one of"):
        ptb_lstm.perplexity_of_trained(model_dir, "train")
    with pytest.raises(ValueError, match="not a checkpoint of this model"):
        ptb_lstm.perplexity_of_trained(model_dir, "valid", config="medium")
    with pytest.raises(ValueError, match="No checkpoint in"):
        ptb_lstm.perplexity_of_trained(str(tmp_path), "valid")


def test_noise_scale_on_two_replicas_leaves_training_unchanged(tmp_path):
    """The noise scale of a stateful, clipped model on two replicas (each
    carries its rows' state): measuring it changes no weight, and one
    replica, which would split the batch, is refused."""
    measured = _run(tmp_path, "n", strategy="mirrored", noise_scale=True)
    _run(tmp_path, "p", strategy="mirrored")
    assert measured["noise_scale"] > 0
    reader = [tf.train.load_checkpoint(str(tmp_path / n / "checkpoints"))
              for n in ("n", "p")]
    for name in reader[0].get_variable_to_shape_map():
        if name.startswith("model_variables/"):
            np.testing.assert_allclose(reader[0].get_tensor(name),
                                       reader[1].get_tensor(name),
                                       rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="carries its state"):
        _run(tmp_path, "o", strategy="default", noise_scale=True)


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_gradient_accumulation_splits_the_carried_state_by_rows(tmp_path,
                                                                strategy):
    """With micro-batches each takes its rows' carried state and returns
    their new state (rows are independent sequences), so two micro-batches
    train exactly like the whole batch: same weights, same perplexity."""
    whole = _run(tmp_path, "whole", strategy=strategy)
    pieces = _run(tmp_path, "acc", strategy=strategy,
                  gradient_accumulation_steps=2)
    assert pieces["test_perplexity"] == pytest.approx(
        whole["test_perplexity"], rel=1e-5)
    _assert_same_weights(tmp_path / "whole", tmp_path / "acc")


def test_bad_config_and_too_little_data(tmp_path):
    with pytest.raises(ValueError, match="--config must be one of"):
        _run(tmp_path, "a", config="large")
    with pytest.raises(ValueError, match="too few for 8 rows"):
        ptb_lstm.run(batch_size=8, num_train_tokens=100, num_cpu_devices=2,
                     model_dir=str(tmp_path / "b"), verbose=0)


def test_trainer_carries_the_state_from_batch_to_batch(tmp_path):
    """The trainer's loss over 4 steps at a rate too small to move a weight
    equals a hand-written loop that feeds each batch the previous batch's
    final state (a reset of 1 only at the first), and not a loop that starts
    every batch from zeros."""
    from models.common import trainer

    keras.utils.set_random_seed(2)
    ids = np.random.default_rng(2).integers(0, 50, 400).astype(np.int32)
    # Weights of scale 1 make the state's effect on the loss large.
    task = ptb_lstm.make_task(ids, ids, dict(TINY, init_scale=1.0), 50, 1)
    results, model = trainer.train(
        task, strategy=tf.distribute.get_strategy(),
        make_optimizer=lambda: keras.optimizers.SGD(1e-30),
        global_batch_size=4, num_examples=4 * 4 * TINY["num_steps"],
        total_steps=4, model_dir=str(tmp_path), steps_per_loop=4, verbose=0)
    assert results["steps"] == 4

    def mean_loss(carry):
        state, losses = task.initial_state(True, 4), []
        batches = task.train_dataset(tf.distribute.InputContext(), 4, 0,
                                     0).take(4)
        for (tokens, reset), targets in batches:
            outputs = model([tokens, reset, *state], training=True)
            losses.append(float(tf.reduce_sum(
                task.per_example_loss(targets, outputs[0]))) / 4)
            state = list(outputs[1:]) if carry else task.initial_state(True,
                                                                       4)
        return np.mean(losses)

    carried, zeros = mean_loss(True), mean_loss(False)
    assert abs(carried - zeros) > 1e-3 * carried  # the state matters here
    assert results["final_loss"] == pytest.approx(carried, rel=1e-5)


def test_a_batch_change_starts_the_new_rows_from_zeros_at_a_pass_start(
        tmp_path):
    """Batch 4 for epoch 0 (19 steps of 4 rows), then 8 (9 steps of 8 rows:
    a pass at 8 rows is another layout of the tokens). The change comes at
    the pass start, where the reference zeroes the state (reset 1), and the
    trainer starts the 8 new rows from zeros: epoch 1's loss equals a hand
    loop over the 8-row layout from zeros, carrying the state after that."""
    import keras_legw
    from models.common import trainer
    from models.common.batch_growth import Growth

    keras.utils.set_random_seed(2)
    ids = np.random.default_rng(2).integers(0, 50, 400).astype(np.int32)
    task = ptb_lstm.make_task(ids, ids, dict(TINY, init_scale=1.0), 50, 1)
    steps = {b: input_pipeline.stream_rows(ids, b, TINY["num_steps"])[1]
             for b in (4, 8)}
    assert steps == {4: 19, 8: 9}
    growth = Growth(keras_legw.batch_schedule("0:4,1:8", 4),
                    keras_legw.GrowingBatchRate(1e-30, 4, 4, 0.0, 2), 2,
                    "0:4,1:8")

    def num_examples(batch):
        return steps[batch] * batch

    results, model = trainer.train(
        task, strategy=tf.distribute.get_strategy(),
        make_optimizer=lambda: keras.optimizers.SGD(growth.start_rate(
            num_examples)), num_examples=num_examples,
        model_dir=str(tmp_path), growth=growth, steps_per_loop=50, verbose=0)
    assert [(h["step"], h["batch_size"], h["examples"])
            for h in results["history"]] == [(19, 4, 76), (28, 8, 148)]

    def mean_loss(carry):
        state, losses = task.initial_state(True, 8), []
        batches = task.train_dataset(tf.distribute.InputContext(), 8, 1, 0)
        for (tokens, reset), targets in batches.take(9):
            outputs = model([tokens, reset, *state], training=True)
            losses.append(float(tf.reduce_sum(
                task.per_example_loss(targets, outputs[0]))) / 8)
            state = list(outputs[1:]) if carry else task.initial_state(True,
                                                                       8)
        return np.mean(losses)

    carried = mean_loss(True)
    assert abs(carried - mean_loss(False)) > 1e-3 * carried
    assert results["final_loss"] == pytest.approx(carried, rel=1e-5)
