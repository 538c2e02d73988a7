"""The named recipes against the NumPy transcription of the paper's
formulas, and their errors."""

import numpy as np
import pytest

import keras_legw
from tests.keras_legw.reference import legw_numpy

BASE = dict(base_learning_rate=0.1, base_batch_size=128, base_warmup_epochs=0.5,
            num_examples=60000, total_epochs=10)
STATED = {  # the module docstring's rules, written out again
    "legw": dict(scaling="sqrt", warmup_scaling="linear"),
    "goyal": dict(scaling="linear", warmup_scaling="none"),
    "sqrt_constant_warmup": dict(scaling="sqrt", warmup_scaling="none"),
    "no_scaling": dict(scaling="none", warmup_scaling="none"),
}


@pytest.mark.parametrize("name", sorted(STATED))
def test_each_recipe_is_its_stated_rules(name):
    schedule = keras_legw.recipe(name, **BASE, batch_size=2048)
    steps = np.arange(0, schedule.total_steps + 5, 3)
    want = legw_numpy(steps, **BASE, batch_size=2048, **STATED[name])
    np.testing.assert_allclose(np.asarray(schedule(steps)), want, rtol=2e-5,
                               atol=1e-9)


def test_constant_is_the_scaled_peak_from_step_zero_and_goyal_is_its_recipe():
    schedule = keras_legw.recipe("constant", **{**BASE, "base_warmup_epochs": 0},
                                 batch_size=512)
    np.testing.assert_allclose(np.asarray(schedule(np.array([0, 7, 10**6]))),
                               0.2, rtol=1e-6)
    assert keras_legw.goyal(**BASE, batch_size=1024).get_config() == \
        keras_legw.recipe("goyal", **BASE, batch_size=1024).get_config()
    assert keras_legw.goyal(**BASE, batch_size=1024).peak_learning_rate == \
        pytest.approx(0.8)


def test_arguments_override_the_recipe_and_unknown_names_are_an_error():
    schedule = keras_legw.recipe("legw", **BASE, batch_size=8192,
                                 warmup_scaling="none")
    assert schedule.warmup_epochs == pytest.approx(0.5)
    assert schedule.peak_learning_rate == pytest.approx(0.8)
    with pytest.raises(ValueError, match=r"Argument `name` must be one of "
                                         r"'legw', 'goyal'.*Received: "
                                         r"name='lars'"):
        keras_legw.recipe("lars", **BASE, batch_size=256)


def test_defaults_give_way_to_the_recipe_and_arguments_do_not():
    """A caller's `defaults` (a command line's warmup and decay) hold where
    the recipe fixes nothing and yield where it does."""
    defaults = dict(BASE, decay="cosine")
    legw = keras_legw.recipe("legw", defaults=defaults, batch_size=512)
    assert (legw.decay, legw.warmup_epochs) == ("cosine", pytest.approx(2.0))
    constant = keras_legw.recipe("constant", defaults=defaults, batch_size=512)
    assert (constant.decay, constant.warmup_epochs) == ("constant", 0.0)
    np.testing.assert_allclose(np.asarray(constant(np.array([0, 10**6]))),
                               0.2, rtol=1e-6)
    given = keras_legw.recipe("constant", defaults=defaults, batch_size=512,
                              decay="cosine")
    assert given.decay == "cosine"
