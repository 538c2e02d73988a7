"""Property test (Hypothesis) of the zoo's growing flags: any
--batch_schedule and --max_batch_size either build the growing batch or
raise one ValueError naming the flag (the scripts' status 2 and one line)."""

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from models.common import flags as common_flags
from models.mnist_lstm import Options as MnistOptions
from models.mnist_lstm_model import BASE

RAMP_TEXT = st.one_of(
    st.text(alphabet="0123456789:,.- e", max_size=24), st.text(max_size=16),
    st.just("noise"))


@settings(max_examples=150, deadline=None)
@given(RAMP_TEXT, st.one_of(st.none(), st.integers(-10, 10 ** 5)),
       st.integers(1, 4))
def test_any_growing_flags_build_a_growth_or_name_the_flag(text, maximum,
                                                           replicas):
    _, options = common_flags.run_options(MnistOptions, BASE,
                                          dict(batch_size=128,
                                               base_learning_rate=0.01))
    try:
        options = dataclasses.replace(options, batch_schedule=text,
                                      max_batch_size=maximum)
        common_flags.check_fields(options)
        growth = common_flags.growth_of(options, replicas)
    except ValueError as error:
        assert str(error).startswith("Flag --"), str(error)
        return
    assert growth.schedule.start_batch_size % replicas == 0
