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


def noise_rule_numpy(measurements, base, maximum, smoothing, multiplier,
                     every=1):
    """The adaptive rule written out: bias-corrected EMAs of |G|^2 and
    tr(Sigma), their ratio, doublings of the base up to the maximum, the
    largest candidate under the target, never below the current batch.
    Returns the batch of each epoch, the first at the base."""
    candidates = []
    size = base
    while size < maximum:
        candidates.append(size)
        size *= 2
    candidates.append(maximum)
    g = t = w = 0.0
    batches = [base]
    for i, (grad_sq, trace) in enumerate(measurements, start=1):
        if math.isfinite(grad_sq) and math.isfinite(trace):
            g = smoothing * g + (1 - smoothing) * grad_sq
            t = smoothing * t + (1 - smoothing) * trace
            w = smoothing * w + (1 - smoothing)
        current = batches[-1]
        if i % every == 0 and w:
            noise = (t / g if g > 0 else (np.inf if t > 0 else np.nan))
            target = multiplier * noise
            if not np.isnan(target):
                fits = [c for c in candidates if c <= target]
                current = max([current] + fits[-1:])
        batches.append(current)
    return batches


def _run(schedule, measurements):
    batches = [schedule.batch_size_for_epoch(0)]
    for epoch, (grad_sq, trace) in enumerate(measurements, start=1):
        schedule.observe(grad_sq, trace)
        batches.append(schedule.batch_size_for_epoch(epoch))
    return batches


@pytest.mark.parametrize("smoothing, multiplier, every", [
    (0.5, 1.0, 1), (0.0, 1.0, 1), (0.8, 4.0, 1), (0.5, 2.0, 3)])
def test_noise_rule_matches_its_transcription(smoothing, multiplier, every):
    """A noise scale growing 100x with 10x swings late, a non-finite and a
    negative-|G|^2 epoch among them."""
    rng = np.random.default_rng(0)
    noise = 200 * np.geomspace(1, 100, 24) * np.exp(rng.normal(0, 1.0, 24))
    measurements = [(1.0, float(b)) for b in noise]
    measurements[5] = (math.nan, 3.0)
    measurements[9] = (-0.1, 500.0)
    got = _run(NoiseBatchSchedule(128, 8192, smoothing=smoothing,
                                  noise_scale_multiplier=multiplier,
                                  decide_every_epochs=every), measurements)
    want = noise_rule_numpy(measurements, 128, 8192, smoothing, multiplier,
                            every)
    assert got == want
    assert got == sorted(got) and got[-1] == 8192


def test_noise_rule_cases_by_hand():
    schedule = NoiseBatchSchedule(100, 1000, batch_multiple=100,
                                  smoothing=0.0)
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


def test_smoothing_is_the_ratio_of_bias_corrected_averages():
    schedule = NoiseBatchSchedule(1, 10 ** 6, smoothing=0.5)
    schedule.observe(1.0, 100.0)
    assert schedule.noise_scale == pytest.approx(100.0)  # bias-corrected
    schedule.observe(3.0, 900.0)
    # |G|^2: (0.25 + 1.5) / 0.75, tr: (25 + 450) / 0.75: ratio of averages.
    assert schedule.noise_scale == pytest.approx(475 / 1.75)


def test_state_round_trip_resumes_the_same_decisions():
    rng = np.random.default_rng(1)
    measurements = [(1.0, float(v)) for v in rng.uniform(50, 5000, 12)]
    whole = NoiseBatchSchedule(64, 4096)
    first = _run(whole, measurements)
    part = NoiseBatchSchedule(64, 4096)
    _run(part, measurements[:5])
    resumed = NoiseBatchSchedule(64, 4096)
    resumed.set_state(part.get_state())
    for epoch, (g, t) in enumerate(measurements[5:], start=6):
        resumed.observe(g, t)
    assert [resumed.batch_size_for_epoch(e) for e in range(13)] == first
    assert resumed.get_state() == whole.get_state()


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_batch_size=64), "^Argument `max_batch_size` must be at least "
     r"`base_batch_size` \(128\)"),
    (dict(smoothing=1.0), r"^Argument `smoothing` must be in \[0, 1\). "
     "Received: smoothing=1.0$"),
    (dict(noise_scale_multiplier=0), "^Argument `noise_scale_multiplier` "
     "must be a positive number"),
    (dict(decide_every_epochs=0), "^Argument `decide_every_epochs` must be "
     "a positive integer"),
    (dict(batch_multiple=3), "^Argument `base_batch_size` must be a "
     "multiple of batch_multiple=3"),
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
    with pytest.raises(ValueError, match=r"^Arguments \['smoothing'\] are "
                       "only for batch_schedule='noise'"):
        keras_legw.batch_schedule("0:128", 128, smoothing=0.5)
