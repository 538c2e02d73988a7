"""The growing-batch engine (`keras_legw.batch_growth`), pure NumPy: where
training stands on both paths' epochs, which steps the adaptive schedule is
told, the statistics it gets against a transcription, and exact resumes."""

import math

import numpy as np
import pytest

import keras_legw
from keras_legw.batch_growth import BatchGrowth, StepStatistics
from tests.keras_legw.reference import growing_rate_numpy

RATE = dict(base_learning_rate=0.05, base_batch_size=8, start_batch_size=8,
            base_warmup_epochs=0.5, total_epochs=4)


def _engine(schedule="0:8,1:16", num_examples=60, **kwargs):
    if isinstance(schedule, str):
        schedule = keras_legw.BatchRamp(schedule)
    return BatchGrowth(schedule, keras_legw.GrowingBatchRate(**RATE),
                       num_examples, **kwargs)


def test_the_trainer_stream_counts_passes_and_the_straddle():
    engine = _engine()
    assert engine.steps_to_epoch_end() == 8
    assert not engine.advance(7 * 8)  # 56 of 60
    assert engine.steps_to_epoch_end() == 1
    assert engine.advance(8)  # 64: pass 1, offset 4, now at batch 16
    assert (engine.epoch, engine.offset, engine.examples) == (1, 4, 64)
    assert engine.position == pytest.approx(1 + 4 / 60)
    assert engine.batch_size == 16 and engine.steps_to_epoch_end() == 4
    assert engine.steps_left(4) == math.ceil((3 * 60 - 4) / 16)


def test_fit_passes_end_with_their_smaller_last_batch():
    engine = _engine()
    for rows in [8] * 7 + [4]:
        ended = engine.advance(rows)
    assert ended and (engine.epoch, engine.offset) == (1, 0)
    assert engine.examples == 60 and engine.position == 1.0


def test_the_rate_is_the_rule_at_the_position_and_the_batch():
    engine = _engine()
    engine.advance(7 * 8 + 8)
    assert engine.learning_rate() == pytest.approx(
        growing_rate_numpy(64 / 60, 16, **RATE), rel=1e-6)
    start = engine.start_batch(step=8)
    assert start == dict(batch_size=16, step=8, epoch=pytest.approx(64 / 60))
    engine.advance(16)
    assert engine.start_batch(step=9) is start   # the same batch: kept


def test_only_the_steps_that_end_past_the_late_fraction_are_told():
    """A pass of 60 at batch 8: steps end at 8, 16, ..., 56, then 64; past
    half (30) are those ending at 32, ..., 64: five of the eight."""
    rng = np.random.default_rng(0)
    small, big = rng.uniform(2, 3, 8), rng.uniform(1, 1.5, 8)
    engine = _engine(keras_legw.NoiseBatchSchedule(8, 64, window=1))
    engine.observe_steps(small[:3], big[:3], 4, 8)
    engine.advance(24)
    engine.observe_steps(small[3:], big[3:], 4, 8)
    g = (8 * big - 4 * small) / 4
    t = (small - big) / (1 / 4 - 1 / 8)
    late = slice(3, 8)
    want = [5, g[late].sum(), t[late].sum(), (g[late] ** 2).sum(),
            (t[late] ** 2).sum()]
    np.testing.assert_allclose(engine.statistics.sums, want, rtol=1e-12)


def test_fit_steps_of_their_own_sizes():
    """One step at a time with its own rows and half sizes (fit's smaller
    last batch of 4: halves of 2)."""
    engine = _engine(late_fraction=0.0)
    engine.observe_steps(3.0, 1.0, 2, 4, step_examples=4)
    np.testing.assert_allclose(
        engine.statistics.sums[1:3],
        [(4 * 1.0 - 2 * 3.0) / 2, (3.0 - 1.0) / (1 / 2 - 1 / 4)])


def test_the_epoch_end_tells_the_means_and_their_standard_errors():
    calls = []

    class Recorder(keras_legw.NoiseBatchSchedule):
        def observe(self, *args):
            calls.append(args)
            super().observe(*args)

    engine = _engine(Recorder(8, 64), late_fraction=0.0)
    rng = np.random.default_rng(1)
    small, big = rng.uniform(2, 3, 7), rng.uniform(1, 1.5, 7)
    engine.observe_steps(small, big, 4, 8)
    engine.advance(56)
    engine.advance(8)
    noise_scale = engine.end_epoch()
    g = (8 * big - 4 * small) / 4
    t = (small - big) / (1 / 4 - 1 / 8)
    want = (g.mean(), t.mean(), g.var(ddof=1) / 7, t.var(ddof=1) / 7)
    np.testing.assert_allclose(calls[0], want, rtol=1e-9)
    assert noise_scale == pytest.approx(t.mean() / g.mean())
    assert engine.statistics.count == 0          # the next pass starts
    engine.end_epoch()                           # no steps: NaN, kept
    assert math.isnan(calls[1][0]) and engine.schedule.batch_size >= 8


def test_a_shared_epoch_end_tells_the_chiefs_sums():
    engine = _engine(keras_legw.NoiseBatchSchedule(8, 64), late_fraction=0)
    engine.observe_steps([3.0, 3.5], [1.0, 1.2], 4, 8)
    engine_sums = list(engine.statistics.sums)
    chief, given = [2, 1.0, 40.0, 1.0, 900.0], []
    engine.end_epoch(share=lambda sums: given.append(sums) or chief)
    assert given == [engine_sums]
    assert engine.last_noise_scale == pytest.approx(40.0 / 1.0)


def test_state_round_trip_resumes_mid_pass():
    engine = _engine(keras_legw.NoiseBatchSchedule(8, 64), late_fraction=0)
    engine.observe_steps([3.0, 3.5], [1.0, 1.2], 4, 8)
    engine.advance(16)
    engine.start_batch(step=2)
    again = _engine(keras_legw.NoiseBatchSchedule(8, 64), late_fraction=0)
    again.set_state(engine.get_state())
    assert again.get_state() == engine.get_state()
    assert again.batch_start == engine.batch_start == dict(
        batch_size=8, step=2, epoch=pytest.approx(16 / 60))
    assert again.statistics.sums == engine.statistics.sums
    assert again.statistics.count == 2
    for e in (engine, again):
        e.observe_steps([2.9] * 5, [1.1] * 5, 4, 8)
        e.advance(48)
        e.end_epoch()
    assert again.get_state() == engine.get_state()


def test_statistics_need_two_steps_for_a_spread():
    stats = StepStatistics()
    assert stats.summary() is None
    stats.add([1.0], [2.0])
    assert stats.summary() is None
    stats.add([3.0], [4.0])
    np.testing.assert_allclose(stats.summary(), [2.0, 3.0, 1.0, 1.0])


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_examples=0), "^Argument `num_examples` must be a positive "
     "integer"),
    (dict(late_fraction=1.0), r"^Argument `late_fraction` must be in \[0, "
     r"1\). Received: late_fraction=1.0$"),
])
def test_bad_engines_are_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _engine(**kwargs)


def test_a_step_counts_when_it_ends_past_the_late_fraction():
    engine = _engine()                      # a pass of 60, late past 30
    assert not engine.counts_step()         # ends at 8
    engine.advance(24)
    assert not engine.counts_step(6)        # ends at 30: not past
    assert engine.counts_step()             # ends at 32


def test_statistics_sum_in_float64_and_a_constant_reading_has_no_spread():
    stats = StepStatistics()
    stats.add(np.float32([1e8, 1.0]), np.float32([1e8, 1.0]))
    assert stats.sums[1:3] == [100000001.0, 100000001.0]  # float32 drops 1
    same = StepStatistics()
    same.add([2.0, 2.0, 2.0], [5.0, 5.0, 5.0])
    assert same.summary() == (2.0, 5.0, 0.0, 0.0)


def test_a_pass_whose_examples_depend_on_the_batch():
    """PTB: a pass at batch B holds its own number of examples."""
    engine = _engine(num_examples=lambda batch: 60 + batch)
    assert engine.num_examples == 68 and engine.num_examples_at(16) == 76
    assert engine.advance(68) and engine.num_examples == 76
    assert math.isnan(engine.last_noise_scale)


def test_steps_left_ignores_float_noise_and_rounds_up():
    ramp = _engine("0:10", num_examples=100)
    assert 1.1 * 100 / 10 > 11              # 11.000000000000002
    assert ramp.steps_left(1.1) == 11
    assert _engine().steps_left(0.7) == 6   # 42 / 8 = 5.25


def test_one_advance_may_cross_several_passes():
    engine = _engine("0:8")
    assert engine.advance(130)
    assert (engine.epoch, engine.offset, engine.examples) == (2, 10, 130)


def test_the_noise_scale_of_a_pass_without_gradient_or_trace():
    engine = _engine(keras_legw.NoiseBatchSchedule(8, 64), late_fraction=0)
    engine.end_epoch(share=lambda sums: [2, 0.0, 5.0, 0.0, 12.5])
    assert math.isnan(engine.last_noise_scale)    # |G|^2 = 0
    engine.end_epoch(share=lambda sums: [2, 1.0, 0.0, 0.5, 0.0])
    assert engine.last_noise_scale == 0.0         # tr(Sigma) = 0


def test_float32_readings_are_estimated_in_float64():
    """The trainer's norms come as float32; the estimates' thirds are not
    float32 numbers."""
    small, big = np.float32([1.0 + 2 ** -20]), np.float32([1.0])
    engine = _engine(late_fraction=0.0)
    engine.observe_steps(small, big, 2, 5)
    s, b = float(small[0]), float(big[0])
    np.testing.assert_allclose(engine.statistics.sums[1:3],
                               [(5 * b - 2 * s) / 3, (s - b) / (1 / 2 - 1 / 5)],
                               rtol=1e-12)


def test_a_step_ending_exactly_at_the_late_fraction_does_not_count():
    engine = _engine()                      # a pass of 60, late past 30
    engine.advance(24)
    engine.observe_steps(3.0, 1.0, 3, 6, step_examples=6)   # ends at 30
    assert engine.statistics.count == 0
    engine.observe_steps(3.0, 1.0, 4, 8)                     # ends at 32
    assert engine.statistics.count == 1
