"""Argument checks that raise one ValueError in the Keras message style:
"Argument `x` must be ... Received: x=..."."""

import csv
import math
import numbers


def _is_finite_number(value):
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def check_positive(name, value):
    """Raises ValueError unless `value` is a finite real number > 0."""
    if not (_is_finite_number(value) and value > 0):
        raise ValueError(
            f"Argument `{name}` must be a positive number. "
            f"Received: {name}={value!r}"
        )


def check_positive_integer(name, value, minimum=1):
    """Raises ValueError unless `value` is an integer (Python or NumPy, not
    a bool) >= `minimum` (default 1)."""
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool)
            and value >= minimum):
        wanted = "a positive integer" if minimum == 1 else \
            f"an integer >= {minimum}"
        raise ValueError(
            f"Argument `{name}` must be {wanted}. Received: {name}={value!r}"
        )


def check_non_negative(name, value):
    """Raises ValueError unless `value` is a finite real number >= 0."""
    if not (_is_finite_number(value) and value >= 0):
        raise ValueError(
            f"Argument `{name}` must be a non-negative number. "
            f"Received: {name}={value!r}"
        )


def check_one_of(name, value, choices):
    """Raises ValueError unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(
            f"Argument `{name}` must be one of "
            f"{', '.join(map(repr, choices))}. Received: {name}={value!r}"
        )


def check_float_learning_rate(optimizer, owner):
    """Raises ValueError when `optimizer`'s learning rate is a schedule:
    `owner` (a callback's name) sets the rate itself, every step."""
    import keras

    rate = getattr(optimizer, "_learning_rate", None)
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        raise ValueError(
            f"{owner} sets the optimizer's learning rate itself: build the "
            "optimizer with a float learning rate, not the schedule "
            f"{type(rate).__name__}.")


def read_csv_rows(path, columns, empty_hint=""):
    """[(line, row dict)] of the CSV at `path`, which must have `columns`
    and a row; one ValueError naming the file otherwise (`empty_hint` ends
    the one for no row)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(
                f"{path} must have the columns {' and '.join(columns)}; it "
                f"lacks {', '.join(missing)}")
        rows = [(reader.line_num, row) for row in reader]
    if not rows:
        raise ValueError(f"{path} has the columns {' and '.join(columns)} but"
                         f" no row{empty_hint}")
    return rows


def csv_cell(path, line, row, name, kind=float):
    """The cell `name` of a CSV row (from `read_csv_rows`) as `kind` (int or
    float); one ValueError naming the file, the line and the cell."""
    text = row.get(name)
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise ValueError(
            f"{path}, line {line}: {name} must be "
            f"{'an integer' if kind is int else 'a number'}. Received: "
            f"{'a missing cell' if text in (None, '') else repr(text)}"
        ) from None
