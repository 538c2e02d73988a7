"""The trainer's growing batch (`trainer.train(growth=...)`) on synthetic
tasks whose weights record what training did, against closed forms."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_legw
from models.common import input_pipeline, trainer
from models.common.batch_growth import (Growth, accumulation_steps,
                                        make_broadcast)
from tests.conftest import two_cpu_mirrored_strategy
from tests.models.synthetic_tasks import (DIM, NOISE_STD, least_squares_task,
                                         regularized_linear_task)
from tests.keras_legw.reference import (least_squares_noise_scale,
                                        plant_noise_spike)


def _strategy(name):
    return (two_cpu_mirrored_strategy() if name == "mirrored"
            else tf.distribute.get_strategy())


def _rate(rule="linear", base_lr=0.5, base_batch=4, start=4, warmup=0.0,
          epochs=3, decay="constant"):
    return keras_legw.GrowingBatchRate(
        base_learning_rate=base_lr, base_batch_size=base_batch,
        start_batch_size=start, base_warmup_epochs=warmup,
        total_epochs=epochs, rate_rule=rule, decay=decay)


def _growth(text, rate, epochs, **kwargs):
    return Growth(schedule=keras_legw.batch_schedule(text, 4), rate=rate,
                  epochs=epochs, text=text, **kwargs)


def _sgd(growth, num_examples):
    """SGD at the growing rate of its first batch (the trainer sets the
    rate at each later one)."""
    return lambda: keras.optimizers.SGD(growth.start_rate(num_examples))


def _counting_task(num_examples, seed=0):
    """Example i's loss is w_i (an embedding row): one SGD step at rate r and
    batch B moves w_i by -r x (times i is in the batch) / B."""

    def train_dataset(context, batch_size, epoch, offset):
        return input_pipeline.replica_index_batches(
            num_examples, batch_size, seed, epoch * num_examples + offset,
            context).map(lambda i: (i, tf.zeros_like(i, tf.float32)))

    return trainer.Task(
        build_model=lambda: keras.Sequential([
            keras.Input((), dtype="int64"),
            keras.layers.Embedding(num_examples, 1,
                                   embeddings_initializer="zeros")]),
        per_example_loss=lambda labels, out: out[:, 0] + 0.0 * labels,
        train_dataset=train_dataset,
        eval_dataset=lambda context: input_pipeline.padded_eval_batches(
            4, 4, context).map(lambda i, m: (i, i, m)),
        eval_sums=lambda model, b: {"count": tf.reduce_sum(b[2])},
        eval_metrics=lambda sums: {"count": sums["count"]})


def _stream(num_examples, seed, count):
    """The first `count` items of the training stream, one at a time."""
    items = input_pipeline.global_index_batches(num_examples, 1, seed, 0)
    return np.concatenate([b.numpy() for b in items.take(count)])


@pytest.mark.parametrize("num_examples", [64, 60])  # 60: steps straddle passes
@pytest.mark.parametrize("strategy_name", ["default", "mirrored"])
def test_each_pass_is_each_example_once_across_batch_changes(
        tmp_path, num_examples, strategy_name):
    """Batch 4, then 8, then 16 (one epoch each), the rate B/4 x 0.5: each
    example seen moves its weight by exactly -0.5 / 4, so the weights count
    the examples seen. They equal the counts of the stream's first X items,
    X the examples the trainer reports, and the first 2N of those hold every
    example exactly twice: each epoch is each example once, across the
    changes. The history records each epoch's batch, steps and examples."""
    growth = _growth("0:4,1:8,2:16", _rate(), epochs=3)
    results, model = trainer.train(
        _counting_task(num_examples), strategy=_strategy(strategy_name),
        make_optimizer=_sgd(growth, num_examples),
        num_examples=num_examples, model_dir=str(tmp_path), growth=growth,
        verbose=0)
    steps = [-(-num_examples // 4)]  # epoch 0: ceil(N / 4) steps of 4
    seen = steps[0] * 4
    for batch, end in ((8, 2), (16, 3)):
        steps.append(-(-(end * num_examples - seen) // batch))
        seen += steps[-1] * batch
    assert [h["batch_size"] for h in results["history"]] == [4, 8, 16]
    assert [h["step"] for h in results["history"]] == list(np.cumsum(steps))
    assert results["examples"] == seen == results["history"][-1]["examples"]
    assert results["batch_sizes"] == [4, 8, 16]
    counts = np.bincount(_stream(num_examples, 0, seen),
                         minlength=num_examples)
    np.testing.assert_allclose(-model.get_weights()[0][:, 0] * 8, counts,
                               rtol=1e-5)
    two_epochs = np.bincount(_stream(num_examples, 0, 2 * num_examples))
    np.testing.assert_array_equal(two_epochs, 2)


def _sum_of_rates_task():
    """loss = w for every example: one SGD step moves w by -rate."""
    return trainer.Task(
        build_model=lambda: keras.Sequential([
            keras.Input((1,)), keras.layers.Dense(
                1, use_bias=False, kernel_initializer="zeros")]),
        per_example_loss=lambda labels, out: out[:, 0] + 0.0 * labels,
        train_dataset=lambda context, batch_size, epoch, offset:
            tf.data.Dataset.from_tensors(
                (tf.ones([context.get_per_replica_batch_size(batch_size), 1]),
                 tf.zeros([context.get_per_replica_batch_size(
                     batch_size)]))).repeat(),
        eval_dataset=lambda context: input_pipeline.padded_eval_batches(
            2, 2, context).map(lambda i, m: (tf.ones([tf.size(i), 1]),
                                             tf.zeros([tf.size(i)]), m)),
        eval_sums=lambda model, b: {"count": tf.reduce_sum(b[2])},
        eval_metrics=lambda sums: {"count": sums["count"]})


def _numpy_rate(e, batch, base_lr=0.1, base_batch=4, start=4, warmup_0=0.5,
                total=3.0, power=2.0):
    """GrowingBatchRate's formula, transcribed: sqrt rule, LEGW warmup of
    the start batch, polynomial decay to 0 from the warmup's end."""
    warmup = warmup_0 * start / base_batch
    peak = base_lr * np.sqrt(batch / base_batch)
    if e < warmup:
        return peak * e / warmup
    t = (min(e, total) - warmup) / (total - warmup)
    return peak * (1.0 - t) ** power


@pytest.mark.parametrize("strategy_name", ["default", "mirrored"])
def test_every_steps_rate_is_the_growing_rate_at_its_epoch_and_batch(
        tmp_path, strategy_name):
    """w after training is minus the sum of the rates of all steps; each
    step's rate is the NumPy transcription at e = examples seen / N before
    the step and the step's batch (N = 20, so steps straddle epochs)."""
    n = 20
    rate = _rate("sqrt", base_lr=0.1, warmup=0.5, epochs=3,
                 decay="polynomial")
    growth = _growth("0:4,1:8,2:16", rate, 3)
    results, model = trainer.train(
        _sum_of_rates_task(), strategy=_strategy(strategy_name),
        make_optimizer=_sgd(growth, n), num_examples=n,
        model_dir=str(tmp_path), growth=growth,
        steps_per_loop=3, verbose=0)
    want, seen, batches = 0.0, 0, []
    for epoch, batch in ((0, 4), (1, 8), (2, 16)):
        while seen < (epoch + 1) * n:
            want += _numpy_rate(seen / n, batch)
            seen += batch
            batches.append(batch)
    assert results["steps"] == len(batches)
    assert model.get_weights()[0][0, 0] == pytest.approx(-want, rel=1e-5)


def test_rate_at_batch_is_the_growing_rate_along_the_steps():
    rate = _rate("sqrt", base_lr=0.1, warmup=0.5, epochs=3,
                 decay="polynomial")
    at_batch = keras_legw.RateAtBatch(rate, 8, 20, start_step=5,
                                      start_epoch=1.0)
    for step in (5, 6, 9):
        e = 1.0 + (step - 5) * 8 / 20
        assert float(at_batch(step)) == pytest.approx(_numpy_rate(e, 8),
                                                      rel=1e-6)
    config = at_batch.get_config()
    again = keras_legw.RateAtBatch(**config)
    assert float(again(7)) == float(at_batch(7))
    with pytest.raises(ValueError, match="Argument `growing_rate` must be a "
                                         "GrowingBatchRate"):
        keras_legw.RateAtBatch(0.1, 8, 20)


N_LSQ = 4096


def _least_squares_task(delta, seed=0, n=N_LSQ, early_optimum=None):
    return least_squares_task(delta, n, seed, eval_examples=64,
                              early_optimum=early_optimum)


@pytest.mark.parametrize("strategy_name", ["default", "mirrored"])
def test_a_resume_mid_ramp_ends_with_the_uninterrupted_weights(
        tmp_path, strategy_name):
    """Stopped inside epoch 1 (after the change to 64) and at the next
    batch's first step, then resumed: the same weights, bit for bit, as one
    uninterrupted run, and the same history."""
    delta = np.random.default_rng(3).normal(size=DIM).astype(np.float32)
    rate = _rate("sqrt", base_lr=0.02, base_batch=32, start=32, warmup=0.5,
                 epochs=3, decay="polynomial")

    n = 3000  # B / N is not a power of two: the rate's float rounding
    # depends on where it is anchored (where the batch began)

    def run(model_dir, max_steps=None):
        growth = Growth(keras_legw.batch_schedule("0:32,1:64,2:256", 32),
                        rate, 3, "0:32,1:64,2:256")
        return trainer.train(
            _least_squares_task(delta, n=n), strategy=_strategy(strategy_name),
            make_optimizer=_sgd(growth, n), num_examples=n,
            model_dir=str(model_dir), growth=growth,
            max_steps=max_steps, steps_per_loop=16, verbose=0)

    whole, whole_model = run(tmp_path / "whole")
    ends = [h["step"] for h in whole["history"]]
    for stop in (ends[0] + 20, ends[1]):  # inside epoch 1; epoch 2's start
        run(tmp_path / "split", max_steps=stop)
    resumed, model = run(tmp_path / "split")
    assert resumed["resumed_from_step"] == ends[1]
    assert [h["batch_size"] for h in whole["history"]] == [32, 64, 256]
    np.testing.assert_array_equal(model.get_weights()[0],
                                  whole_model.get_weights()[0])
    assert not np.allclose(model.get_weights()[0][:, 0], delta)  # it trained
    cut = [h for h in resumed["history"] if h["step"] != ends[0] + 20]
    assert [(h["step"], h["batch_size"], h["examples"]) for h in cut] == [
        (h["step"], h["batch_size"], h["examples"]) for h in whole["history"]]


def test_a_resume_on_another_number_of_replicas_continues_the_ramp(tmp_path):
    delta = np.random.default_rng(4).normal(size=DIM).astype(np.float32)
    growth = Growth(keras_legw.batch_schedule("0:32,1:64", 32),
                    _rate(base_lr=0.01, base_batch=32, start=32, epochs=2),
                    2, "0:32,1:64")
    common = dict(make_optimizer=_sgd(growth, N_LSQ), num_examples=N_LSQ, model_dir=str(tmp_path), growth=growth,
                  verbose=0)
    trainer.train(_least_squares_task(delta), strategy=_strategy("default"),
                  max_steps=140, **common)
    results, _ = trainer.train(_least_squares_task(delta),
                               strategy=_strategy("mirrored"), **common)
    assert results["num_replicas"] == 2 and results["resumed_from_step"] == 140
    assert results["steps"] == 128 + 64
    assert [h["batch_size"] for h in results["history"]][-1] == 64


# The rule at multiplier 1 and one doubling a decision: these tests check
# its mechanics, not the frozen defaults.
UNIT_RULE = dict(noise_scale_multiplier=1.0, max_doublings=1)


@pytest.mark.parametrize("strategy_name", ["default", "mirrored"])
def test_the_noise_schedule_follows_the_closed_form_noise_scale(
        tmp_path, strategy_name):
    """Weights frozen (rate 1e-12) at w* + delta, so B_noise is the closed
    form (94 here) in each epoch's second half; its first half has another
    optimum, far off (a far larger gradient: in closed form B_noise is
    about 11 there, and about 11 over the whole epoch). Told the second
    half's estimates, the noise schedule moves one doubling a decision
    (16, 32) to the largest doubling below 94, 64 (a replica's half against
    the batch, or two halves on one)."""
    n = 32768
    delta = np.full(DIM, 0.055, np.float32)
    expected = least_squares_noise_scale(DIM, float(delta @ delta), NOISE_STD)
    assert 64 < expected < 128
    schedule = keras_legw.NoiseBatchSchedule(16, 256, **UNIT_RULE)
    growth = Growth(schedule, _rate(base_lr=1e-12, base_batch=16, start=16,
                                    epochs=3), 3, "noise")
    results, model = trainer.train(
        _least_squares_task(delta, n=n, early_optimum=np.full(DIM, -1.0)),
        strategy=_strategy(strategy_name), make_optimizer=_sgd(growth, n),
        num_examples=n, model_dir=str(tmp_path), growth=growth,
        steps_per_loop=512, verbose=0)
    np.testing.assert_allclose(model.get_weights()[0][:, 0], delta, rtol=1e-5)
    assert [h["batch_size"] for h in results["history"]] == [16, 32, 64]
    assert schedule.noise_scale == pytest.approx(expected, rel=0.15)


@pytest.mark.parametrize("strategy_name", ["default", "mirrored"])
def test_micro_batches_add_the_regularization_once_across_a_batch_change(
        tmp_path, strategy_name):
    """A kernel regularizer, batch 4 then 8 (micro-batches of at most 1 row
    per replica), a constant rate: the weights are the NumPy updates of each
    whole batch's mean loss plus the regularization once per step."""
    rng = np.random.default_rng(5)
    x_all = rng.normal(size=(8, 3)).astype(np.float32)
    y_all = rng.normal(size=8).astype(np.float32)
    w0 = np.array([0.5, -1.0, 2.0], np.float32)
    l2, lr = 0.3, 0.1
    task = regularized_linear_task(
        x_all, y_all, w0, l2, lambda context, batch_size, epoch, offset:
            input_pipeline.replica_index_batches(
                8, batch_size, 1, epoch * 8 + offset, context).map(
                    lambda i: (tf.gather(x_all, i), tf.gather(y_all, i))))
    growth = Growth(keras_legw.batch_schedule("0:4,1:8", 4),
                    _rate("none", base_lr=lr, epochs=2), 2, "0:4,1:8",
                    max_replica_batch_size=1)
    results, model = trainer.train(
        task, strategy=_strategy(strategy_name),
        make_optimizer=_sgd(growth, 8), num_examples=8,
        model_dir=str(tmp_path), growth=growth, verbose=0)
    assert [h["batch_size"] for h in results["history"]] == [4, 8]
    order = _stream(8, 1, 16)
    x, y, w = (a.astype(np.float64) for a in (x_all, y_all, w0))
    for rows in (order[:4], order[4:8], order[8:16]):
        xb, yb = x[rows], y[rows]
        w = w - lr * (xb.T @ (xb @ w - yb) / len(rows) + 2 * l2 * w)
    np.testing.assert_allclose(model.get_weights()[0][:, 0], w, rtol=1e-5)


@pytest.mark.parametrize("strategy_name", ["default", "mirrored"])
def test_broadcast_gives_the_chiefs_float64_values_unchanged(strategy_name):
    """The adaptive decision's inputs come back bit for bit: not summed over
    the replicas, not rounded to float32 (1/3 and 1e300 are not float32s)."""
    values = [1 / 3, 1e300, -2.5e-7, 0.0]
    assert make_broadcast(_strategy(strategy_name))(values) == values


def test_accumulation_steps_split_a_share_into_micro_batches_that_fit():
    assert accumulation_steps(1024, 2, 1, None) == 1
    assert accumulation_steps(1024, 2, 1, 512) == 1
    assert accumulation_steps(1024, 2, 1, 128) == 4
    assert accumulation_steps(1024, 2, 1, 100) == 8  # 512 / 8 = 64 rows
    assert accumulation_steps(96, 1, 1, 40) == 3  # 32-row micro-batches
    assert accumulation_steps(96, 1, 1, 40, halves=2) == 2  # 2 x 2 x 24
    assert accumulation_steps(64, 1, 4, 64) == 4  # never below the minimum
    assert accumulation_steps(13, 1, 1, 4) == 13  # a prime: rows of 1


def test_bad_combinations_are_one_clear_error(tmp_path):
    growth = _growth("0:4,1:8", _rate(epochs=2), 2)
    common = dict(strategy=tf.distribute.get_strategy(),
                  make_optimizer=_sgd(growth, 8), num_examples=8, model_dir=str(tmp_path), verbose=0)
    with pytest.raises(ValueError, match="not both"):
        trainer.train(_counting_task(8), growth=growth, global_batch_size=4,
                      **common)
    with pytest.raises(ValueError, match="needs global_batch_size and "
                                         "total_steps, or growth"):
        trainer.train(_counting_task(8), global_batch_size=4, **common)
    with pytest.raises(ValueError, match="cannot be combined"):
        trainer.train(_counting_task(8), growth=growth, adaptive_schedule=(
            keras_legw.AutoWarmupSchedule(10)), **common)
    with pytest.raises(ValueError, match="learning_rate=growth.start_rate"):
        trainer.train(_counting_task(8), growth=growth, **dict(
            common, make_optimizer=lambda: keras.optimizers.SGD(0.1)))
    with pytest.raises(ValueError, match="must be divisible by the number "
                                         "of replicas, 2"):
        trainer.train(_counting_task(8), growth=_growth(
            "0:4,1:9", _rate(epochs=2), 2), **dict(
                common, strategy=two_cpu_mirrored_strategy()))


def test_a_10x_spike_in_one_epoch_does_not_move_the_trainers_batch(
        tmp_path, monkeypatch):
    """As the closed-form test, four epochs, with every trace estimate of
    the second epoch 10x: the decisions are the unspiked ones (16, 32, 64,
    64: the lower median of two epochs is the smaller). Planted, the old
    rule (one epoch's reading, any number of doublings) jumps to 256."""
    plant_noise_spike(monkeypatch, epoch=1)
    n = 32768
    delta = np.full(DIM, 0.055, np.float32)
    growth = Growth(keras_legw.NoiseBatchSchedule(16, 256, **UNIT_RULE),
                    _rate(base_lr=1e-12, base_batch=16, start=16, epochs=4),
                    4, "noise")
    results, _ = trainer.train(
        _least_squares_task(delta, n=n), strategy=_strategy("default"),
        make_optimizer=_sgd(growth, n), num_examples=n,
        model_dir=str(tmp_path), growth=growth, steps_per_loop=512,
        verbose=0)
    assert [h["batch_size"] for h in results["history"]] == [16, 32, 64, 64]
    spike, after = (results["history"][i]["noise_scale"] for i in (1, 2))
    assert spike > 5 * after        # the spike reached the engine


def test_a_batch_above_the_training_set_is_one_clear_error(tmp_path):
    """A ramp to 16 over 8 examples would train two epochs a step and run
    past the epochs asked for: refused before any training."""
    growth = _growth("0:4,1:16", _rate(epochs=2), 2)
    with pytest.raises(ValueError, match=r"^Flag --batch_schedule=0:4,1:16: "
                       "a global batch of 16 is more than the 8 training "
                       "examples of an epoch"):
        trainer.train(_counting_task(8), growth=growth,
                      strategy=tf.distribute.get_strategy(),
                      make_optimizer=_sgd(growth, 8), num_examples=8,
                      model_dir=str(tmp_path), verbose=0)
    assert not (tmp_path / "checkpoints").exists()


def test_a_growing_run_resumed_for_another_length_is_refused(tmp_path):
    def run(epochs, **kwargs):
        growth = _growth("0:4,1:8", _rate(epochs=epochs), epochs)
        return trainer.train(_counting_task(8), growth=growth,
                             strategy=tf.distribute.get_strategy(),
                             make_optimizer=_sgd(growth, 8), num_examples=8,
                             model_dir=str(tmp_path), verbose=0, **kwargs)

    run(2, max_steps=1)
    with pytest.raises(ValueError, match="^This run's epochs is 3, but the "
                       "checkpoints in .* belong to a run of 2 epochs"):
        run(3)
    assert run(2)[0]["resumed_from_step"] == 1
