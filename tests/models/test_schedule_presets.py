"""The schedule presets behind --schedule and the sweeps' labels, against
the NumPy transcription of the paper's formulas: each published MNIST row
was trained with one of these."""

import numpy as np
import pytest

from bench import mnist_sweep
from models.common import flags as common_flags
from tests.keras_legw.reference import legw_numpy

BASE = dict(base_learning_rate=0.002, base_batch_size=128,
            base_warmup_epochs=0.2)
NUM_EXAMPLES = 60000


def make_schedule(**options):
    """The schedule the zoo's flags `options` describe."""
    return common_flags.schedule_of(common_flags.CommonOptions(**options),
                                    NUM_EXAMPLES)
# label -> the rules the README states for it (peak, warmup, decay)
EXPECTED = {
    "legw": dict(scaling="sqrt", warmup_scaling="linear"),
    "goyal": dict(scaling="linear", warmup_scaling="none"),
    "sqrt_constant_warmup": dict(scaling="sqrt", warmup_scaling="none"),
    "no_scaling": dict(scaling="none", warmup_scaling="none"),
}


@pytest.mark.parametrize("batch_size", [128, 2048, 8192])
@pytest.mark.parametrize("label", mnist_sweep.CLAIM_SCHEDULES)
def test_sweep_labels_are_the_stated_rules(label, batch_size):
    schedule = make_schedule(
        schedule=label, **BASE, batch_size=batch_size, epochs=25)
    steps = np.arange(0, schedule.total_steps + 3, 7)
    want = legw_numpy(steps, **BASE, num_examples=NUM_EXAMPLES,
                      batch_size=batch_size, total_epochs=25,
                      **EXPECTED[label])
    np.testing.assert_allclose(np.asarray(schedule(steps)), want, rtol=2e-5,
                               atol=1e-9)


def test_constant_preset_is_the_scaled_peak_from_step_zero():
    schedule = make_schedule(schedule="constant", **BASE, batch_size=2048,
                             epochs=25)
    steps = np.array([0, 1, 100, schedule.total_steps])
    np.testing.assert_allclose(np.asarray(schedule(steps)),
                               0.002 * np.sqrt(16.0), rtol=1e-6)


def test_overrides_replace_the_presets_rules():
    schedule = make_schedule(schedule="goyal", scaling="sqrt", **BASE,
                             batch_size=8192, epochs=25)
    assert schedule.peak_learning_rate == pytest.approx(0.002 * 8)
    assert schedule.warmup_epochs == pytest.approx(0.2)  # goyal's, kept
    with pytest.raises(ValueError, match="--schedule must be one of"):
        make_schedule(schedule="linear", **BASE, batch_size=256, epochs=25)
