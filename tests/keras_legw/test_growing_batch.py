"""The growing batch: the rate rule against its NumPy transcription and
LEGW, the data set's epochs, and `model.fit` with it on TensorFlow (in this
process), JAX and PyTorch (fresh processes): every step's rate and batch,
History, the progress bar, TensorBoard, a resume through BackupAndRestore in
the middle of the ramp, and two devices."""

import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_legw
from tests.conftest import (OTHER_BACKENDS, checks_on_backend,
                            two_cpu_mirrored_strategy)
from tests.keras_legw import backend_checks
from tests.keras_legw.reference import (growing_rate_numpy,
                                        growing_steps_numpy,
                                        least_squares_noise_scale,
                                        measure_noise_scale_numpy,
                                        plant_noise_spike)

RATES = [
    dict(base_learning_rate=0.002, base_batch_size=128, start_batch_size=128,
         base_warmup_epochs=0.2, total_epochs=25),
    dict(base_learning_rate=0.01, base_batch_size=128, start_batch_size=256,
         base_warmup_epochs=0.2, total_epochs=25, rate_rule="none",
         decay_begin_epochs=6.0),
    dict(base_learning_rate=0.1, base_batch_size=32, start_batch_size=32,
         base_warmup_epochs=1.0, total_epochs=10, rate_rule="linear",
         decay="cosine", decay_begin_epochs=4.0),
    dict(base_learning_rate=0.1, base_batch_size=32, start_batch_size=64,
         base_warmup_epochs=0.0, total_epochs=10, decay="constant"),
]


@pytest.mark.parametrize("kwargs", RATES)
def test_rate_matches_its_transcription(kwargs):
    rate = keras_legw.GrowingBatchRate(**kwargs)
    epochs = np.concatenate([np.linspace(0, kwargs["total_epochs"] + 2, 97),
                             [rate.warmup_epochs, rate.decay_begin]])
    for batch in (kwargs["base_batch_size"], 512, 8192):
        got = [float(rate(e, batch)) for e in epochs]
        want = [growing_rate_numpy(e, batch, **kwargs) for e in epochs]
        # float32: relative 2e-6, and 1e-6 of the peak near the decay's end.
        np.testing.assert_allclose(got, want, rtol=2e-6,
                                   atol=1e-6 * max(want))
    # Tensors in, a tensor of the same shape out.
    batches = np.full(epochs.shape, 512.0, "float32")
    want = [growing_rate_numpy(e, 512, **kwargs) for e in epochs]
    np.testing.assert_allclose(
        np.asarray(rate(epochs.astype("float32"), batches)), want,
        rtol=2e-6, atol=1e-6 * max(want))


def test_at_a_constant_batch_it_is_legw():
    """With D = W and the batch fixed at B_start, the rate at step s is
    `LEGW`'s at that batch (e = s * B / N)."""
    legw = keras_legw.LEGW(0.002, 128, 1024, 0.2, 60000, 25)
    rate = keras_legw.GrowingBatchRate(0.002, 128, 1024, 0.2, 25)
    steps = np.arange(0, legw.total_steps + 3)
    np.testing.assert_allclose(
        [float(rate(s * 1024 / 60000, 1024)) for s in steps],
        np.asarray(legw(steps)), rtol=2e-5, atol=1e-8)


def test_a_stage_boundary_keeps_the_epoch_and_jumps_the_peak_only():
    rate = keras_legw.GrowingBatchRate(0.002, 128, 128, 0.2, 25)
    before, after = float(rate(4.0, 1024)), float(rate(4.0, 2048))
    assert after / before == pytest.approx(np.sqrt(2.0), rel=1e-6)
    assert rate.peak_learning_rate(2048) == pytest.approx(0.002 * 4)
    assert rate.warmup_epochs == pytest.approx(0.2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(base_warmup_epochs=2.0, start_batch_size=2048), "^Argument "
     "`base_warmup_epochs` must give a warmup shorter than `total_epochs`: "
     "at start_batch_size=2048 it is 32 epochs"),
    (dict(decay_begin_epochs=0.1), r"^Argument `decay_begin_epochs` must be "
     r"in \[warmup_epochs, total_epochs\) = \[0.2, 25\). Received: "
     "decay_begin_epochs=0.1$"),
    (dict(decay_begin_epochs=25), "^Argument `decay_begin_epochs` must be "
     "in"),
    (dict(rate_rule="noise"), "^Argument `rate_rule` must be one of 'sqrt', "
     "'linear', 'none'. Received: rate_rule='noise'$"),
    (dict(decay="exponential"), "^Argument `decay` must be one of"),
    (dict(base_learning_rate=-1), "^Argument `base_learning_rate` must be "
     "a positive number"),
])
def test_bad_rates_are_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        keras_legw.GrowingBatchRate(**{**RATES[0], **kwargs})


def test_rate_config_round_trip():
    rate = keras_legw.GrowingBatchRate(**RATES[1])
    again = keras_legw.GrowingBatchRate.from_config(rate.get_config())
    assert again.get_config() == rate.get_config() == {
        **dict(rate_rule="sqrt", decay="polynomial", power=2.0,
               decay_begin_epochs=None), **RATES[1]}


def test_each_epoch_holds_every_example_once():
    x = np.arange(50)[:, None].astype("float32")
    y = np.arange(50)
    data = keras_legw.GrowingBatchDataset(
        x, y, keras_legw.BatchRamp("0:4,1:16"), seed=1)
    # Keras' look before the first epoch: two sizes, batch dimension free.
    assert [len(data[i][1]) for i in range(2)] == [4, 3]
    orders = []
    for epoch, batch in ((0, 4), (1, 16), (2, 16)):
        data.set_epoch(epoch, batch)
        assert len(data) == -(-50 // batch)
        seen = np.concatenate([data[i][1] for i in range(len(data))])
        assert sorted(seen) == list(range(50))
        assert len(data[len(data) - 1][1]) == 50 - batch * (len(data) - 1)
        np.testing.assert_array_equal(data[0][0][:, 0], data[0][1])
        orders.append(seen)
    assert not np.array_equal(orders[1], orders[2])  # a new order per epoch
    data.set_epoch(2, 16)
    np.testing.assert_array_equal(
        np.concatenate([data[i][1] for i in range(len(data))]), orders[2])
    dropped = keras_legw.GrowingBatchDataset(
        x, y, keras_legw.BatchRamp("0:16"), drop_remainder=True)
    dropped.set_epoch(0, 16)
    assert len(dropped) == 3
    with pytest.raises(IndexError):
        dropped[3]


def test_data_set_and_callback_errors():
    x, y = np.zeros((40, 2)), np.zeros(40)
    with pytest.raises(ValueError, match="^Argument `batch_schedule` must "
                       "not go past the 40 examples. Received: "
                       "max_batch_size=64$"):
        keras_legw.GrowingBatchDataset(x, y, keras_legw.BatchRamp("0:8,1:64"))
    with pytest.raises(ValueError, match="^Arguments `x` and `y` must hold"):
        keras_legw.GrowingBatchDataset(x, y[:5], keras_legw.BatchRamp("0:8"))
    data = keras_legw.GrowingBatchDataset(
        x, y, keras_legw.NoiseBatchSchedule(8, 32))
    rate = keras_legw.GrowingBatchRate(0.1, 8, 8, 0.5, 4)
    with pytest.warns(DeprecationWarning, match="^Arguments "
                      "`noise_batch_size` and `noise_estimates` of "
                      "GrowingBatch are deprecated and ignored"):
        keras_legw.GrowingBatch(data, rate, noise_batch_size=80)
    with pytest.raises(ValueError, match=r"^Argument `late_fraction` must be "
                       r"in \[0, 1\). Received: late_fraction=1$"):
        keras_legw.GrowingBatch(data, rate, late_fraction=1)
    with pytest.raises(ValueError, match="^Argument `dataset` must be a "
                       "GrowingBatchDataset. Received: tuple$"):
        keras_legw.GrowingBatch((x, y), rate)
    with pytest.raises(ValueError, match="^Argument `learning_rate` must be "
                       "a GrowingBatchRate. Received: LEGW$"):
        keras_legw.GrowingBatch(data, keras_legw.LEGW(0.1, 8, 8, 0.5, 40, 4))


def _fit(model, data, rate, **kwargs):
    return model.fit(data, epochs=backend_checks.EPOCHS, verbose=0,
                     callbacks=[keras_legw.GrowingBatch(data, rate)],
                     **kwargs)


def test_fit_refuses_a_schedule_and_a_shuffling_fit():
    x, y = backend_checks.least_squares_data()
    rate = keras_legw.GrowingBatchRate(**backend_checks.RATE)
    model = backend_checks.least_squares_model(np.zeros(4))
    model.compile(keras.optimizers.SGD(keras_legw.LEGW(0.1, 8, 8, 0.5, 240,
                                                       4)), "mse")
    data = keras_legw.GrowingBatchDataset(x, y, keras_legw.BatchRamp("0:8"))
    with pytest.raises(ValueError, match="^GrowingBatch sets the optimizer's "
                       "learning rate itself: build the optimizer with a "
                       "float learning rate, not the schedule LEGW.$"):
        _fit(model, data, rate, shuffle=False)
    model = backend_checks.least_squares_model(np.zeros(4))
    keras.utils.set_random_seed(0)
    with pytest.raises(ValueError, match=r"^fit shuffled the "
                       r"GrowingBatchDataset's batches \(it asked for "
                       r"batches \[\d+.*\] first\): pass shuffle=False to fit."):
        _fit(model, data, rate)


def check_growing_fit(out, kind, batch_multiple=1):
    """What every backend must show: the steps' rates are the rule at the
    examples seen before each, each epoch's batch is the schedule's, the
    step count is exact, and a run crashed after epoch 1 and resumed ends
    with the uninterrupted run's weights, History and step count."""
    whole, resumed = out["uninterrupted"], out["resumed"]
    batches = [int(b) for b in whole["history"]["batch_size"]]
    if kind == "ramp":
        assert batches == [8, 24, 80, 80]
    else:
        assert batches == sorted(batches) and batches[0] == 8
        assert batches[-1] > 8 and all(b % 2 == 0 for b in batches)
    n = backend_checks.NUM_EXAMPLES
    want = growing_steps_numpy(batches, n)
    assert [b for _, b in whole["steps"]] == [b for _, b in want]
    # float32 keras.ops: the decay's (1 - t) loses relative precision near
    # the end, so the smallest rates also get an absolute tolerance (a few
    # float32 ulps of the base rate, 0.05).
    np.testing.assert_allclose(
        [r for r, _ in whole["steps"]],
        [growing_rate_numpy(e, b, **backend_checks.RATE) for e, b in want],
        rtol=1e-6, atol=1e-8)
    assert whole["iterations"] == len(want)
    assert whole["history"]["examples_seen"] == [n * (e + 1) for e in
                                                 range(len(batches))]
    assert whole["history"]["learning_rate"][-1] == pytest.approx(
        whole["steps"][-1][0])
    assert resumed["history"]["batch_size"] == whole["history"][
        "batch_size"][2:]
    assert resumed["steps"] == whole["steps"][-len(resumed["steps"]):]
    assert resumed["iterations"] == whole["iterations"]
    np.testing.assert_allclose(resumed["weights"], whole["weights"],
                               rtol=1e-6)
    if kind == "noise":
        assert len(whole["history"]["noise_scale"]) == len(batches)
        assert resumed["history"]["noise_scale"] == whole["history"][
            "noise_scale"][2:]


@pytest.mark.parametrize("kind", ["ramp", "noise"])
def test_fit_on_tensorflow(kind):
    check_growing_fit(backend_checks.growing_batch(kind), kind)


def _on_backend(backend, *checks, extra_env=None):
    return checks_on_backend("tests.keras_legw.backend_checks", backend, *checks,
                             extra_env=extra_env)


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_fit_and_the_noise_scale_on_another_backend(backend):
    """The fit checks (a ramp and the noise schedule) and the noise-scale
    check of this module, on JAX and on PyTorch (one process each)."""
    out = _on_backend(backend, "growing_ramp", "growing_noise", "noise_scale")
    for kind in ("ramp", "noise"):
        check_growing_fit(out[f"growing_{kind}"], kind)
    check_noise_scale(out["noise_scale"])


def test_fit_under_jax_data_parallel_on_two_devices():
    out = _on_backend("jax", "data_parallel", extra_env=dict(
        XLA_FLAGS="--xla_force_host_platform_device_count=2"))["data_parallel"]
    assert out["devices"] == 2
    n = backend_checks.NUM_EXAMPLES
    want = growing_steps_numpy([8, 24, 80, 80], n)
    np.testing.assert_allclose(
        [r for r, _ in out["steps"]],
        [growing_rate_numpy(e, b, **backend_checks.RATE) for e, b in want],
        rtol=1e-6)
    assert out["iterations"] == len(want)
    assert out["history"]["loss"][-1] < 0.3 < out["history"]["loss"][0]


def test_fit_under_mirrored_strategy_on_two_cpus():
    x, y = backend_checks.least_squares_data()
    with two_cpu_mirrored_strategy().scope():
        model = backend_checks.least_squares_model(np.full(4, 0.5))
    data = keras_legw.GrowingBatchDataset(
        x, y, keras_legw.BatchRamp(backend_checks.RAMP, batch_multiple=2))
    history = _fit(model, data, keras_legw.GrowingBatchRate(
        **backend_checks.RATE), shuffle=False).history
    assert history["batch_size"] == [8, 24, 80, 80]
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 46
    assert history["loss"][-1] < 0.3 < history["loss"][0]


def test_progress_bar_counts_each_epochs_batches(capsys):
    x, y = backend_checks.least_squares_data()
    data = keras_legw.GrowingBatchDataset(
        x, y, keras_legw.BatchRamp(backend_checks.RAMP))
    model = backend_checks.least_squares_model(np.zeros(4))
    model.fit(data, epochs=3, verbose=1, shuffle=False, callbacks=[
        keras_legw.GrowingBatch(data, keras_legw.GrowingBatchRate(
            **backend_checks.RATE))])
    out = capsys.readouterr().out
    for epoch, batches in enumerate((30, 10, 3)):
        section = out.split(f"Epoch {epoch + 1}/3")[1].split("Epoch ")[0]
        assert f"{batches}/{batches}" in section
        assert "/30" not in section or batches == 30
    assert "ran out of data" not in out


def test_tensorboard_records_the_batch_and_the_rate(tmp_path):
    x, y = backend_checks.least_squares_data()
    data = keras_legw.GrowingBatchDataset(
        x, y, keras_legw.BatchRamp(backend_checks.RAMP))
    model = backend_checks.least_squares_model(np.zeros(4))
    growing = keras_legw.GrowingBatch(data, keras_legw.GrowingBatchRate(
        **backend_checks.RATE))
    model.fit(data, epochs=3, verbose=0, shuffle=False, callbacks=[
        growing, keras.callbacks.TensorBoard(str(tmp_path))])
    values = {}
    for path in glob.glob(str(tmp_path / "train" / "events*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag.startswith("epoch_"):
                    values.setdefault(value.tag, []).append(
                        float(tf.make_ndarray(value.tensor)))
    assert values["epoch_batch_size"] == [8, 24, 80]
    want = [growing_rate_numpy(e, b, **backend_checks.RATE)
            for e, b in growing_steps_numpy([8, 24, 80], 240)]
    np.testing.assert_allclose(values["epoch_learning_rate"],
                               [want[29], want[39], want[42]], rtol=1e-6)


def check_noise_scale(out):
    """The closed form of Gaussian least squares (within 15% of its 200
    draws), the exact transcription, and NoiseScaleCallback's log."""
    closed_form = least_squares_noise_scale(8, 8 * 0.2 ** 2, 0.5)
    assert out["closed"][0] == pytest.approx(closed_form, rel=0.15)
    assert out["closed"][1] == pytest.approx(4 * 8 * 0.2 ** 2, rel=0.15)
    x, y = backend_checks.least_squares_data(4, n=96, dim=3)
    want = measure_noise_scale_numpy(
        x, y, (np.ones(3) + np.array([0.2, -0.4, 0.1]))[:, None], 4, 32,
        3, 7)
    np.testing.assert_allclose(out["exact"], want, rtol=1e-4)
    assert out["callback_steps"] == [4, 8, 12, 16]
    assert out["callback_logged"] == [out["callback_measured"][1],
                                      out["callback_measured"][3]]


def test_noise_scale_on_tensorflow():
    check_noise_scale(backend_checks.noise_scale())


def _frozen_least_squares_fit(n=8192):
    """fit's own noise-scale steps on least squares held at a closed-form
    noise scale (weights frozen by a rate of 1e-12): 5 + s^2 d / |delta|^2
    = 94 here; the rule at multiplier 1, one doubling a decision. Returns
    History."""
    dim = backend_checks.DIM
    delta = np.full(dim, np.sqrt(1 / 89 / dim))
    assert least_squares_noise_scale(dim, delta @ delta, 0.5) == \
        pytest.approx(94)
    x, y = backend_checks.least_squares_data(0, n=n)
    model = backend_checks.least_squares_model(delta)
    data = keras_legw.GrowingBatchDataset(
        x, y, keras_legw.NoiseBatchSchedule(
            16, 256, noise_scale_multiplier=1.0, max_doublings=1), seed=1)
    rate = keras_legw.GrowingBatchRate(1e-12, 16, 16, 0.0, 4)
    return model.fit(data, epochs=4, verbose=0, shuffle=False, callbacks=[
        keras_legw.GrowingBatch(data, rate)]).history


def test_a_10x_spike_in_one_epoch_does_not_move_fits_batch(monkeypatch):
    """With every trace estimate of the second epoch 10x, fit's decisions
    are the unspiked run's (the rule and the trainer's test of it:
    tests/models/test_growing_trainer.py), and every epoch's noise scale
    from the steps is near the closed form but the spiked one."""
    clean = _frozen_least_squares_fit()
    plant_noise_spike(monkeypatch, epoch=1)
    spiked = _frozen_least_squares_fit()
    assert spiked["batch_size"] == clean["batch_size"]
    assert clean["batch_size"][:2] == [16, 32]
    np.testing.assert_allclose(clean["noise_scale"], 94, rtol=0.45)
    assert spiked["noise_scale"][1] > 5 * clean["noise_scale"][1]


def test_only_the_late_steps_run_the_measuring_step():
    """240 examples at batch 8: the steps ending past 120 of each epoch, 15
    of its 30, log the squared norms (a callback listed before GrowingBatch
    sees them); the others run Keras' own step. After fit, Keras' own."""
    seen = []

    class Seen(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append("noise_small_sq" in logs)

    x, y = backend_checks.least_squares_data()
    model = backend_checks.least_squares_model(np.zeros(backend_checks.DIM))
    data = keras_legw.GrowingBatchDataset(
        x, y, keras_legw.NoiseBatchSchedule(8, 8))
    model.fit(data, epochs=2, verbose=0, shuffle=False, callbacks=[
        Seen(), keras_legw.GrowingBatch(
            data, keras_legw.GrowingBatchRate(0.01, 8, 8, 0.0, 2))])
    assert seen == ([False] * 15 + [True] * 15) * 2
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert sorted(history) == ["loss"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(stages=None), r"^Argument `stages` must be the text "
     r"'0:128,1:512,4:2048' or \(epoch, global_batch\) pairs .* Received: "
     "stages=None$"),
    (dict(stages=128), "^Argument `stages` must be the text .* Received: "
     "stages=128$"),
    (dict(stages=[(0, 8, 1)]), "^Argument `stages` must be the text"),
    (dict(stages=[("a", 8)]), "^Argument `stages` must be the text"),
])
def test_a_ramp_that_is_no_text_or_pairs_is_one_clear_error(kwargs,
                                                           message):
    with pytest.raises(ValueError, match=message):
        keras_legw.BatchRamp(**kwargs)


@pytest.mark.parametrize("schedule", [None, "0:8,1:16", 8])
def test_a_data_set_without_a_schedule_is_one_clear_error(schedule):
    x, y = np.zeros((40, 2)), np.zeros(40)
    with pytest.raises(ValueError, match="^Argument `batch_schedule` must be "
                       "a batch schedule .* Received: batch_schedule="):
        keras_legw.GrowingBatchDataset(x, y, schedule)


def test_the_rate_names_its_start_batch():
    with pytest.raises(ValueError, match="^Argument `start_batch_size` must "
                       "be a positive number. Received: start_batch_size=-1"):
        keras_legw.GrowingBatchRate(0.1, 8, -1, 0.5, 4)


def test_multi_input_data_sets_count_rows_not_inputs():
    x = [np.zeros((40, 2)), np.ones((40, 3))]
    ramp = keras_legw.BatchRamp("0:8")
    data = keras_legw.GrowingBatchDataset(x, np.zeros(40), ramp)
    assert data.num_examples == 40
    data.set_epoch(0, 8)
    (a, b), _ = data[1]
    assert a.shape == (8, 2) and b.shape == (8, 3)
    named = keras_legw.GrowingBatchDataset(
        {"a": np.zeros((40, 2)), "b": np.zeros((40, 1))}, np.zeros(40), ramp)
    assert named.num_examples == 40
    with pytest.raises(ValueError, match=r"^Argument `x` must hold the same "
                       r"number of examples in each of its arrays. Received: "
                       r"\[30, 40\]$"):
        keras_legw.GrowingBatchDataset([np.zeros((40, 2)), np.zeros((30, 2))],
                                       np.zeros(40), ramp)


def test_fit_on_other_data_than_the_data_set_is_one_clear_error():
    """fit(x, y, batch_size=...) beside a GrowingBatch: the data set is
    never asked for a batch, and the batches, rates and examples it would
    report are not what fit trains."""
    x, y = backend_checks.least_squares_data()
    model = backend_checks.least_squares_model(np.zeros(backend_checks.DIM))
    data = keras_legw.GrowingBatchDataset(x, y, keras_legw.BatchRamp("0:8"))
    rate = keras_legw.GrowingBatchRate(0.01, 8, 8, 0.0, 2)
    with pytest.raises(ValueError, match="^fit is training on other data "
                       "than the GrowingBatchDataset given to GrowingBatch"):
        model.fit(x, y, batch_size=64, epochs=2, verbose=0,
                  callbacks=[keras_legw.GrowingBatch(data, rate)])


def test_a_backup_in_the_middle_of_an_epoch_is_refused(tmp_path):
    """BackupAndRestore(save_freq=N) beside GrowingBatch: Keras would restart
    the epoch from its first batch with mid-epoch weights. Refused at its
    first save; a rerun on that backup is refused too."""
    x, y = backend_checks.least_squares_data()
    data = keras_legw.GrowingBatchDataset(x, y, keras_legw.BatchRamp("0:8"))
    rate = keras_legw.GrowingBatchRate(0.01, 8, 8, 0.0, 2)
    for _ in range(2):
        model = backend_checks.least_squares_model(
            np.zeros(backend_checks.DIM))
        with pytest.raises(ValueError, match="^GrowingBatch resumes at epoch "
                           "ends only, but the backup in .* was saved after "
                           "batch 4 of epoch 0"):
            model.fit(data, epochs=2, verbose=0, shuffle=False, callbacks=[
                keras_legw.GrowingBatch(data, rate, backup_dir=str(tmp_path)),
                keras.callbacks.BackupAndRestore(str(tmp_path),
                                                 save_freq=5)])
