"""The shared argument checks: what they accept, and the one message."""

import numpy as np
import pytest

from keras_legw._validation import check_positive_integer


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.int32(1)])
def test_positive_integers_pass(value):
    check_positive_integer("n", value)


@pytest.mark.parametrize("value", [0, -2, 2.0, True, "3", None, np.float32(4)])
def test_anything_else_is_one_error_naming_the_argument(value):
    with pytest.raises(ValueError, match=r"^Argument `n` must be a positive "
                                         r"integer\. Received: n="):
        check_positive_integer("n", value)


def test_a_minimum_above_one_is_named():
    check_positive_integer("total_steps", 2, minimum=2)
    with pytest.raises(ValueError, match=r"must be an integer >= 2\. "
                                         r"Received: total_steps=1"):
        check_positive_integer("total_steps", 1, minimum=2)
