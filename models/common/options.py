"""Options defined once: a field of a frozen dataclass per option, carrying
its name, type, default, help text and check. The absl flags of a script are
generated from those fields, and `run(**kwargs)` checks its keyword
arguments against the same ones, so a command line and a Python call take
the same configuration and fail with the same one-line error.

    @dataclasses.dataclass(frozen=True)
    class Options:
        units: int = option(128, "LSTM units.", check=POSITIVE)

    define_flags(Options)                      # --units, from the field
    Options(**from_flags(flags.FLAGS, Options))
    Options(units=0)                           # ValueError naming --units

A check is `(predicate, requirement)`: the value must satisfy the predicate,
and the error says "Flag --<name> <requirement>. Received: <value>".
"""

import dataclasses
import typing

from absl import flags

POSITIVE = (lambda v: v > 0, "must be positive")
POSITIVE_INTEGER = (lambda v: v is not None and v > 0,
                    "must be a positive integer")
NON_NEGATIVE = (lambda v: v >= 0, "must be >= 0")


def optional(check):
    """`check` for a value that may also be None (the option unset)."""
    predicate, requirement = check
    return (lambda v: v is None or predicate(v), requirement)


def option(default, help, *, choices=None, check=None, flag=True):
    """A dataclass field that is an option: `help` is its flag's help text,
    `choices` its allowed values (a collection, read when a value is
    checked: a dict of configurations stays live), `check` a `(predicate,
    requirement)` pair; `flag=False` keeps it out of the command line
    (Python callers only)."""
    return dataclasses.field(default=default, metadata=dict(
        help=help, choices=choices, check=check, flag=flag))


def check_fields(instance, choices=None):
    """Raises one ValueError naming the first option of `instance` whose value
    breaks its choices (or `choices[name]`, which replace them) or check.
    None passes the choices of an option whose default is None (unset)."""
    choices = choices or {}
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        allowed = choices.get(field.name, field.metadata.get("choices"))
        unset = value is None and field.default is None
        if allowed is not None and value not in allowed and not unset:
            raise ValueError(f"Flag --{field.name} must be one of "
                             f"{', '.join(map(str, allowed))}. Received: "
                             f"{value!r}")
        check = field.metadata.get("check")
        if check is not None and not check[0](value):
            raise ValueError(f"Flag --{field.name} {check[1]}. Received: "
                             f"{value!r}")


_DEFINE = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer,
           float: flags.DEFINE_float, str: flags.DEFINE_string}


def _flag_type(annotation):
    """bool, int, float or str of a field's type (Optional[X] is X)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if typing.get_origin(annotation) is typing.Union else \
        annotation


def define_flags(options_class, *, defaults=None, choices=None,
                 flag_values=flags.FLAGS):
    """Defines an absl flag per option of `options_class`, with `defaults`
    (name: value) replacing the fields' and `choices` (name: values)
    replacing their choices; each option's check becomes the flag's
    validator."""
    defaults, choices = defaults or {}, choices or {}
    types = typing.get_type_hints(options_class)
    for field in dataclasses.fields(options_class):
        if not field.metadata.get("flag"):
            continue
        name, meta = field.name, field.metadata
        default = defaults.get(name, field.default)
        allowed = choices.get(name, meta["choices"])
        if allowed is not None:
            flags.DEFINE_enum(name, default, list(allowed), meta["help"],
                              flag_values=flag_values)
        else:
            _DEFINE[_flag_type(types[name])](name, default, meta["help"],
                                             flag_values=flag_values)
        if meta["check"] is not None:
            flags.register_validator(
                name, meta["check"][0], message=f"--{name} {meta['check'][1]}.",
                flag_values=flag_values)


def from_flags(flag_values, *options_classes):
    """The parsed flags of `options_classes`' options, as keyword arguments
    (of `run(...)`)."""
    return {field.name: flag_values[field.name].value
            for cls in options_classes for field in dataclasses.fields(cls)
            if field.metadata.get("flag")}


def split(kwargs, *options_classes):
    """`kwargs` split by the option class each name belongs to: one dict per
    class. An unknown name is a TypeError listing the known ones."""
    names = [{f.name for f in dataclasses.fields(c)} for c in options_classes]
    unknown = sorted(set(kwargs).difference(*names))
    if unknown:
        raise TypeError(f"run() got unknown arguments {unknown}; it takes "
                        f"{sorted(set().union(*names))}.")
    return [{k: v for k, v in kwargs.items() if k in n} for n in names]
