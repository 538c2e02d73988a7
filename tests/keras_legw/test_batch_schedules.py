"""Batch-size schedules: the fixed ramp's lookup and errors, the adaptive
rule against a NumPy transcription, and exact state round trips."""

import math

import numpy as np
import pytest

import keras_legw
from keras_legw.batch_schedules import BatchRamp, NoiseBatchSchedule


def test_ramp_text_and_lookup():
    ramp = BatchRamp("0:128, 1:512,4:2048,10:8192")
    assert keras_legw.parse_batch_ramp("0:128,2.5:256") == ((0.0, 128),
                                                            (2.5, 256))
    assert [ramp.batch_size_for_epoch(e) for e in range(12)] == (
        [128] + [512] * 3 + [2048] * 6 + [8192] * 2)
    assert (ramp.base_batch_size, ramp.max_batch_size,
            ramp.start_batch_size) == (128, 8192, 128)
    # A stage from a fractional epoch applies from the next whole epoch.
    half = BatchRamp([(0, 8), (2.5, 16)])
    assert [half.batch_size_for_epoch(e) for e in range(4)] == [8, 8, 8, 16]
    assert repr(half) == "BatchRamp('0:8,2.5:16')"


@pytest.mark.parametrize("kwargs, message", [
    (dict(stages="0:128,1:64"), "^Argument `stages` must never shrink the "
     r"batch. Received: 64 at epoch 1 after 128 in stages='0:128,1:64'$"),
    (dict(stages="0:128,3:256,2:512"), "^Argument `stages` must list epochs "
     "in increasing order. Received: epoch 2 after 3"),
    (dict(stages="0:128,1:256", max_batch_size=64), "^Argument "
     "`max_batch_size` must be at least `base_batch_size` \\(128\\). "
     "Received: max_batch_size=64$"),
    (dict(stages="0:128,1:300", batch_multiple=8), "^Argument `stages` must "
     "hold multiples of batch_multiple=8, so that every device gets the same "
     "share. Received: 300 at epoch 1 in stages='0:128,1:300'$"),
    (dict(stages="0:128", base_batch_size=126, batch_multiple=4),
     "^Argument `base_batch_size` must be a multiple of batch_multiple=4"),
    (dict(stages="1:128"), "^Argument `stages` must start at epoch 0"),
    (dict(stages="0:128,1:512", max_batch_size=256), "^Argument `stages` "
     r"must keep every batch within \[base_batch_size, max_batch_size\] = "
     r"\[128, 256\]. Received: 512"),
    (dict(stages="0:64,1:128", base_batch_size=128), "within "
     r"\[base_batch_size, max_batch_size\] = \[128, 128\]. Received: 64"),
    (dict(stages="0:128;1:256"), "^Argument `batch_schedule` must be "
     "comma-separated `epoch:global_batch` pairs"),
    (dict(stages="0:12.5"), "^Argument `batch_schedule` must be"),
    (dict(stages=()), "^Argument `stages` must hold at least one"),
])
def test_bad_ramps_are_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchRamp(**kwargs)


def noise_rule_numpy(measurements, base, maximum, multiplier, every=1,
                     window=3, z=2.0, max_doublings=1):
    """The adaptive rule written out: each measured epoch's trace at z
    standard errors below over its |G|^2 at z above (0 for a trace not
    above 0, inf for |G|^2 not above 0), the lower median of the last
    `window` of them, the largest doubling of the base under multiplier
    times that, at most `max_doublings` above the current batch, never below
    it. Measurements are (|G|^2, tr) or (|G|^2, tr, var |G|^2, var tr).
    Returns the batch of each epoch, the first at the base."""
    candidates = []
    size = base
    while size < maximum:
        candidates.append(size)
        size *= 2
    candidates.append(maximum)
    bounds, batches = [], [base]
    for i, measurement in enumerate(measurements, start=1):
        grad_sq, trace, var_g, var_t = (*measurement, 0.0, 0.0)[:4]
        if np.all(np.isfinite([grad_sq, trace, var_g, var_t])):
            low_t = trace - z * np.sqrt(var_t)
            low_g = grad_sq + z * np.sqrt(var_g)
            bounds.append(0.0 if low_t <= 0 else
                          (np.inf if low_g <= 0 else low_t / low_g))
        current = batches[-1]
        if i % every == 0 and bounds:
            last = np.sort(bounds[-window:])
            target = multiplier * last[(len(last) - 1) // 2]
            at = candidates.index(current)
            limit = (maximum if max_doublings is None else
                     candidates[min(at + max_doublings, len(candidates) - 1)])
            fits = [c for c in candidates if c <= min(target, limit)]
            current = max([current] + fits[-1:])
        batches.append(current)
    return batches


def _run(schedule, measurements):
    batches = [schedule.batch_size_for_epoch(0)]
    for epoch, measurement in enumerate(measurements, start=1):
        schedule.observe(*measurement)
        batches.append(schedule.batch_size_for_epoch(epoch))
    return batches


OLD_RULE = dict(window=1, std_errors=0.0, max_doublings=None)


@pytest.mark.parametrize("multiplier, every, window, z, doublings", [
    (1.0, 1, 3, 2.0, 1), (1.0, 1, 1, 0.0, None), (4.0, 1, 4, 1.0, 2),
    (2.0, 3, 3, 2.0, 1), (1.0, 1, 5, 0.0, None)])
def test_noise_rule_matches_its_transcription(multiplier, every, window, z,
                                              doublings):
    """A noise scale growing 100x with 10x swings late, standard errors of
    a tenth to a half of the means, a non-finite epoch, a negative-|G|^2
    epoch and a negative trace among them."""
    rng = np.random.default_rng(0)
    noise = 200 * np.geomspace(1, 100, 24) * np.exp(rng.normal(0, 1.0, 24))
    spread = rng.uniform(0.1, 0.5, 24) ** 2
    measurements = [(1.0, float(b), float(v), float(v * b * b))
                    for b, v in zip(noise, spread)]
    measurements[5] = (math.nan, 3.0)
    measurements[9] = (-0.1, 500.0)
    measurements[12] = (1.0, -50.0, 0.01, 100.0)
    got = _run(NoiseBatchSchedule(128, 8192,
                                  noise_scale_multiplier=multiplier,
                                  decide_every_epochs=every, window=window,
                                  std_errors=z, max_doublings=doublings),
               measurements)
    want = noise_rule_numpy(measurements, 128, 8192, multiplier, every,
                            window, z, doublings)
    assert got == want
    assert got == sorted(got) and got[-1] >= 2048


def test_noise_rule_cases_by_hand():
    schedule = _unit_rule(100, 1000, batch_multiple=100,
                                  **OLD_RULE)
    assert schedule.candidates == (100, 200, 400, 800, 1000)
    assert math.isnan(schedule.noise_scale)
    schedule.observe(2.0, 900.0)         # B = 450: the largest under it
    assert schedule.batch_size == 400
    schedule.observe(2.0, 100.0)         # B = 50: never shrinks
    assert schedule.batch_size == 400
    schedule.observe(math.inf, 1.0)      # not finite: keeps the batch
    assert schedule.batch_size == 400
    schedule.observe(-1.0, 5.0)          # |G|^2 <= 0, trace > 0: the maximum
    assert schedule.batch_size == 1000 and schedule.noise_scale == math.inf
    assert [schedule.batch_size_for_epoch(e) for e in range(5)] == [
        100, 400, 400, 400, 1000]


def test_the_bound_the_median_and_the_doubling_limit_by_hand():
    schedule = _unit_rule(100, 1600, std_errors=2.0, window=3,
                                  max_doublings=1)
    # B = 900 / 2 = 450; L = (900 - 2 * 100) / (2 + 2 * 0.25) = 280.
    schedule.observe(2.0, 900.0, 0.25 ** 2, 100.0 ** 2)
    assert schedule.noise_scale == pytest.approx(450.0)
    assert schedule.noise_scale_lower_bound == pytest.approx(280.0)
    assert schedule.batch_size == 200     # 400 > 280
    schedule.observe(1.0, 10000.0)        # the lower median of 280 and 10^4
    assert schedule.noise_scale_lower_bound == pytest.approx(280.0)
    assert schedule.batch_size == 200
    schedule.observe(1.0, 5000.0)         # 280, 5000, 10^4: 5000, one step
    assert schedule.batch_size == 400
    schedule.observe(1.0, 50.0, 0.0, 60.0 ** 2)   # t - 2 se < 0: L_e = 0
    assert schedule.noise_scale_lower_bound == pytest.approx(5000.0)
    assert schedule.batch_size == 800
    schedule.observe(1.0, 60.0)           # 0, 60, 5000: 60, never shrinks
    assert schedule.batch_size == 800


def _closed_form_readings(rng, batch, true_noise, dim=64, steps=60):
    """Per-step squared norms of two half-batch gradients and their mean,
    drawn as a run at `batch` would: per-example gradients N(G, sigma^2 I)
    with |G|^2 = 1 and tr(Sigma) = `true_noise` (so B_noise is it)."""
    grad = np.full(dim, 1 / np.sqrt(dim))
    sigma = np.sqrt(true_noise / dim)
    halves = grad + rng.normal(0, sigma / np.sqrt(batch / 2),
                               size=(steps, 2, dim))
    small = np.mean(np.sum(halves ** 2, axis=-1), axis=1)
    big = np.sum(np.mean(halves, axis=1) ** 2, axis=-1)
    return small, big


def _unit_rule(*args, **kwargs):
    """A `NoiseBatchSchedule` whose multiplier and doublings a decision are
    1 unless given: these tests check the rule's mechanics, not its frozen
    defaults (`test_the_documented_defaults` does)."""
    rule = dict(noise_scale_multiplier=1.0, max_doublings=1)
    return NoiseBatchSchedule(*args, **{**rule, **kwargs})


def _closed_form_run(spike_epoch=None, **rule):
    """Epoch by epoch: the batch the schedule decided, the true noise scale
    (doubling every 3 epochs from 150), each epoch's readings through the
    engine's statistics (`StepStatistics`), and a 10x spike planted in the
    trace of one epoch's readings."""
    from keras_legw.batch_growth import StepStatistics
    rng = np.random.default_rng(3)
    schedule = _unit_rule(32, 4096, **rule)
    batches = [schedule.batch_size]
    for epoch in range(18):
        true_noise = 150 * 2 ** (epoch / 3)
        b = schedule.batch_size
        small, big = _closed_form_readings(rng, b, true_noise)
        if epoch == spike_epoch:                  # tr(Sigma) estimates x 10
            grad_sq, trace = keras_legw.noise_scale_estimates(small, big,
                                                              b / 2, b)
            small, big = grad_sq + 20 * trace / b, grad_sq + 10 * trace / b
        stats = StepStatistics()
        stats.add(*keras_legw.noise_scale_estimates(small, big, b / 2, b))
        schedule.observe(*stats.summary())
        batches.append(schedule.batch_size)
    return batches


@pytest.mark.parametrize("spike_epoch", [2, 3, 4, 5, 6])
def test_a_10x_spike_in_one_epoch_moves_the_batch_one_doubling_at_most(
        spike_epoch):
    """On readings drawn from a closed-form noise scale: the default rule
    stays at or below the true noise scale, and a 10x spike in one epoch's
    readings leaves every decision within one doubling of the unspiked
    run's (the median then follows the larger of the window's other two
    epochs). The old rule (that epoch's reading alone, any number of
    doublings) jumps 8x past."""
    clean = _closed_form_run()
    spiked = _closed_form_run(spike_epoch=spike_epoch)
    truth = [150 * 2 ** (e / 3) for e in range(18)]
    assert all(b <= t for b, t in zip(clean[1:], truth))
    assert clean[-1] >= 1024
    assert all(c <= s <= 2 * c for s, c in zip(spiked, clean))
    old_clean = _closed_form_run(**OLD_RULE)
    old_spiked = _closed_form_run(spike_epoch=spike_epoch, **OLD_RULE)
    after = spike_epoch + 1
    assert old_spiked[after] >= 8 * old_clean[after]


def test_smoothing_is_deprecated_and_says_so():
    with pytest.warns(DeprecationWarning, match="`smoothing` of "
                      "NoiseBatchSchedule is deprecated and ignored"):
        NoiseBatchSchedule(1, 64, smoothing=0.5)


def test_an_older_state_is_one_clear_error():
    with pytest.raises(ValueError, match="^NoiseBatchSchedule.set_state: "
                       "this state was written by an older keras_legw .* "
                       "Start the run again, or resume it with the version "
                       "that wrote it.$"):
        _unit_rule(1, 64).set_state(
            dict(batch_size=1, grad_sq_norm=0.0, trace_covariance=0.0,
                 weight=0.0, observed=0, decisions={"0": 1}))


def test_state_round_trip_resumes_the_same_decisions():
    rng = np.random.default_rng(1)
    measurements = [(1.0, float(v)) for v in rng.uniform(50, 5000, 12)]
    whole = _unit_rule(64, 4096)
    first = _run(whole, measurements)
    part = _unit_rule(64, 4096)
    _run(part, measurements[:5])
    resumed = _unit_rule(64, 4096)
    resumed.set_state(part.get_state())
    for g, t in measurements[5:]:
        resumed.observe(g, t)
    assert [resumed.batch_size_for_epoch(e) for e in range(13)] == first
    assert resumed.get_state() == whole.get_state()


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_batch_size=64), "^Argument `max_batch_size` must be at least "
     r"`base_batch_size` \(128\)"),
    (dict(window=0), "^Argument `window` must be a positive integer"),
    (dict(noise_scale_multiplier=0), "^Argument `noise_scale_multiplier` "
     "must be a positive number"),
    (dict(decide_every_epochs=0), "^Argument `decide_every_epochs` must be "
     "a positive integer"),
    (dict(batch_multiple=3), "^Argument `base_batch_size` must be a "
     "multiple of batch_multiple=3"),
    (dict(std_errors=-1), "^Argument `std_errors` must be a non-negative"),
    (dict(max_doublings=0), "^Argument `max_doublings` must be a positive "
     "integer"),
])
def test_bad_noise_schedules_are_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NoiseBatchSchedule(**{**dict(base_batch_size=128,
                                     max_batch_size=8192), **kwargs})


def test_batch_schedule_by_name():
    assert isinstance(keras_legw.batch_schedule("noise", 128, 1024),
                      NoiseBatchSchedule)
    ramp = keras_legw.batch_schedule("0:128,2:512", 128)
    assert ramp.batch_size_for_epoch(3) == 512
    with pytest.raises(ValueError, match="^Argument `max_batch_size` is "
                       "required with batch_schedule='noise'"):
        keras_legw.batch_schedule("noise", 128)
    with pytest.raises(ValueError, match=r"^Arguments \['window'\] are "
                       "only for batch_schedule='noise'"):
        keras_legw.batch_schedule("0:128", 128, window=2)


def test_the_candidates_end_at_the_maximum_once():
    assert NoiseBatchSchedule(128, 1024).candidates == (128, 256, 512, 1024)
    assert NoiseBatchSchedule(96, 96).candidates == (96,)


def test_the_documented_defaults():
    schedule = NoiseBatchSchedule(8, 64)
    assert (schedule.noise_scale_multiplier, schedule.decide_every_epochs,
            schedule.window, schedule.std_errors, schedule.max_doublings,
            schedule.batch_multiple) == (4.0, 1, 3, 2.0, 2, 1)
    ramp = BatchRamp("0:3,1:5")             # any batch splits over 1 device
    assert (ramp.batch_multiple, ramp.batch_size_for_epoch(1)) == (1, 5)
    assert BatchRamp("0:8").batch_size_for_epoch(0) == 8
    assert BatchRamp("0:8,1:8").batch_size_for_epoch(1) == 8  # may stay


def test_a_target_exactly_at_a_candidate_takes_it():
    schedule = _unit_rule(100, 800, window=1, std_errors=0,
                                  max_doublings=None)
    schedule.observe(1.0, 400.0)
    assert schedule.batch_size == 400
    schedule.observe(1.0, 800.0)
    assert schedule.batch_size == 800


def test_a_trace_of_zero_or_a_tiny_one_and_a_zero_gradient():
    schedule = _unit_rule(1, 64, window=1, std_errors=0)
    schedule.observe(1.0, 0.0)              # no noise: 0, keeps the batch
    assert schedule.noise_scale == 0.0 and schedule.batch_size == 1
    schedule.observe(0.25, 0.5)             # B = 2: a trace under 1 counts
    assert schedule.noise_scale == 2.0 and schedule.batch_size == 2
    schedule.observe(0.0, 0.0)              # nothing measured: 0, kept
    assert schedule.noise_scale == 0.0 and schedule.batch_size == 2
    schedule.observe(0.0, 0.5)              # |G|^2 = 0: under the floor
    assert schedule.noise_scale == math.inf and schedule.batch_size == 4


def test_the_warning_points_at_the_caller():
    with pytest.warns(DeprecationWarning) as record:
        NoiseBatchSchedule(1, 64, smoothing=0.5)
    assert record[0].filename == __file__


@pytest.mark.parametrize("kwargs, message", [
    (dict(stages="0:8", base_batch_size=0), "^Argument `base_batch_size` "
     "must be a positive integer"),
    (dict(stages="0:8", max_batch_size=0), "^Argument `max_batch_size` must "
     "be a positive integer"),
    (dict(stages="0:8", batch_multiple=0), "^Argument `batch_multiple` must "
     "be a positive integer"),
    (dict(stages="0:8", max_batch_size=12, batch_multiple=8), "^Argument "
     "`max_batch_size` must be a multiple of batch_multiple=8"),
    (dict(stages="0:0"), "^Argument `batch in stages` must be a positive "
     "integer"),
    (dict(stages="0:8,1:16,1:32"), "^Argument `stages` must list epochs in "
     "increasing order. Received: epoch 1 after 1"),
])
def test_each_bound_names_its_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchRamp(**kwargs)


def test_the_noise_schedule_names_its_batch_multiple():
    with pytest.raises(ValueError, match="^Argument `batch_multiple` must "
                       "be a positive integer"):
        NoiseBatchSchedule(8, 64, batch_multiple=0)


def test_batch_schedule_passes_every_argument_on():
    ramp = keras_legw.batch_schedule("0:3,1:6", 1, 12)
    assert (ramp.base_batch_size, ramp.max_batch_size,
            ramp.batch_multiple) == (1, 12, 1)
    split = keras_legw.batch_schedule("0:4,1:8", 4, batch_multiple=4)
    assert split.batch_multiple == 4
    noise = keras_legw.batch_schedule("noise", 4, 64, 4, window=2)
    assert (noise.batch_multiple, noise.window) == (4, 2)
    with pytest.raises(ValueError, match="^Argument `max_batch_size` is "
                       "required with batch_schedule='noise'. Received: "
                       "None$"):
        keras_legw.batch_schedule("noise", 4)
