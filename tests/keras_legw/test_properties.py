"""Property tests (Hypothesis) of what a user types by hand: the ramp text
and pairs, the growing-batch constructors and the planner's runs CSV (the
zoo's growing flags: tests/models/test_properties.py). Any input either works as documented or raises one
ValueError naming the argument (a script: status 2 and one line); nothing
else escapes."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_legw
from keras_legw import cli

# Whatever a hand-typed value may be: numbers of every kind, text, None.
ANYTHING = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 6, 10 ** 6),
                     st.floats(allow_nan=True, allow_infinity=True),
                     st.text(max_size=8))
RAMP_TEXT = st.one_of(
    st.text(alphabet="0123456789:,.- e", max_size=24), st.text(max_size=16))
PROFILE = settings(max_examples=150, deadline=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture])


def _named_error(error):
    text = str(error)
    assert text.startswith(("Argument `", "Arguments `")), text
    assert "\n" not in text, text


@PROFILE
@given(RAMP_TEXT)
def test_any_ramp_text_builds_a_ramp_or_names_the_argument(text):
    try:
        ramp = keras_legw.BatchRamp(text)
    except ValueError as error:
        _named_error(error)
        return
    batches = [ramp.batch_size_for_epoch(e) for e in range(5)]
    assert batches == sorted(batches) and batches[0] == ramp.start_batch_size


@PROFILE
@given(st.one_of(ANYTHING, st.lists(st.tuples(ANYTHING, ANYTHING),
                                    max_size=3)))
def test_any_ramp_pairs_build_a_ramp_or_name_the_argument(stages):
    try:
        keras_legw.BatchRamp(stages)
    except ValueError as error:
        _named_error(error)


@PROFILE
@given(st.fixed_dictionaries({}, optional={
    name: ANYTHING for name in (
        "batch_multiple", "noise_scale_multiplier", "decide_every_epochs",
        "window", "std_errors", "max_doublings")}), ANYTHING, ANYTHING)
def test_any_noise_schedule_builds_or_names_the_argument(kwargs, base,
                                                         maximum):
    try:
        schedule = keras_legw.NoiseBatchSchedule(base, maximum, **kwargs)
    except ValueError as error:
        _named_error(error)
        return
    schedule.observe(1.0, 10.0 * base, 0.01, 1.0)
    assert base <= schedule.batch_size <= maximum


@PROFILE
@given(st.lists(ANYTHING, min_size=5, max_size=5),
       st.sampled_from(["sqrt", "linear", "none", "noise", None]))
def test_any_growing_rate_builds_or_names_the_argument(values, rule):
    try:
        rate = keras_legw.GrowingBatchRate(*values, rate_rule=rule)
    except ValueError as error:
        _named_error(error)
        return
    assert np.isfinite(float(rate(0.5, values[2])))


@PROFILE
@given(st.text(alphabet="0123456789,.-abe \n", max_size=40),
       st.booleans())
def test_any_runs_file_plans_or_is_one_line(tmp_path, capsys, text, header):
    runs = tmp_path / "runs.csv"
    runs.write_text(("batch_size,steps\n" if header else "") + text)
    try:
        cli.main(["plan", "--runs", str(runs), "--base-batch", "128",
                  "--num-examples", "60000"])
    except SystemExit as stop:
        assert stop.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(
            "python -m keras_legw: error: "), err
        return
    assert "B_noise (critical batch)" in capsys.readouterr().out
