"""Options defined once (`models.common.options`): the flags generated from
them are the scripts' flags of before, a saved `flags.txt` still parses to
the same values, and a Python `run(...)` is checked like the command line."""

import dataclasses
import json
import os
from typing import Optional

import pytest
from absl import flags

from models import gnmt, mnist_lstm, ptb_lstm, resnet50
from models.common import flags as common_flags
from models.common.options import (POSITIVE, check_fields, define_flags,
                                   from_flags, option, optional)

SCRIPTS = {  # module, its __main__'s define_script_flags arguments
    "mnist_lstm": (mnist_lstm, dict(mnist_lstm.BASE, base_learning_rate=None),
                   ()),
    "ptb_lstm": (ptb_lstm, ptb_lstm.BASE, ("reference",)),
    "gnmt": (gnmt, gnmt.BASE, ()),
    "resnet50": (resnet50, resnet50.BASE, ()),
}
# Each script's flag names and a flags.txt (`--batch_size=512
# --schedule=goyal --noise_scale --max_steps=7 --model_dir=runs/x`, the rest
# defaults) written by the code before the options were defined once.
ADDED = {"check_every_epochs", "batch_schedule", "max_batch_size",
         "max_replica_batch_size", *common_flags.NOISE_OPTIONS}  # every script
ADDED_TO = {"gnmt": {"length_penalty", "dropout"}}
BEFORE = json.load(open(os.path.join(os.path.dirname(__file__),
                                     "flags_before_options.json")))


def _script_flags(name):
    module, base, extra = SCRIPTS[name]
    values = flags.FlagValues()
    common_flags.define_script_flags(module.Options, base,
                                     extra_schedules=extra, flag_values=values)
    return module, base, extra, values


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripts_keep_their_flags_and_saved_flag_files(name, tmp_path):
    module, base, extra, values = _script_flags(name)
    # No flag lost or renamed; the ones added since are named here.
    assert set(values) - set(BEFORE[name]["names"]) == (
        ADDED | ADDED_TO.get(name, set()))
    assert set(BEFORE[name]["names"]) <= set(values)
    flagfile = tmp_path / "flags.txt"
    flagfile.write_text("# saved\n" + "\n".join(BEFORE[name]["flagfile"]))
    values(["prog", f"--flagfile={flagfile}"])
    for line in BEFORE[name]["flagfile"]:
        key, _, text = line[2:].partition("=")
        if not text:  # --flag or --noflag
            key, text = (key, "True") if key in values else (key[2:], "False")
        value = values[key].value
        assert (str(value) == text if isinstance(value, (str, bool)) else
                value == type(value)(text)), line
    kwargs = common_flags.flag_kwargs(module.Options, values)
    own, options = common_flags.run_options(module.Options, base, kwargs,
                                            extra_schedules=extra)
    assert (options.batch_size, options.schedule, options.noise_scale,
            options.max_steps) == (512, "goyal", True, 7)
    own_values = dataclasses.asdict(own)
    assert {k: own_values[k] for k in kwargs if k in own_values} == {
        k: values[k].value for k in kwargs if k in own_values}


@dataclasses.dataclass(frozen=True)
class _Options:
    units: int = option(128, "LSTM units.", check=POSITIVE)
    mode: str = option("a", "A mode.", choices=("a", "b"))
    cut: Optional[int] = option(None, "A cut.", check=optional(POSITIVE))
    rate: float = option(0.5, "A rate.")
    quiet: bool = option(False, "Quiet.")
    hidden: int = option(3, "Python only.", flag=False)


def test_flags_are_generated_from_the_fields_with_their_checks():
    values = flags.FlagValues()
    define_flags(_Options, defaults=dict(units=64), flag_values=values)
    assert sorted(values) == ["cut", "mode", "quiet", "rate", "units"]
    assert values["units"].default == 64 and values["units"].help == "LSTM units."
    values(["prog", "--units=7", "--mode=b", "--cut=2", "--quiet",
            "--rate=0.25"])
    assert from_flags(values, _Options) == dict(units=7, mode="b", cut=2,
                                                rate=0.25, quiet=True)
    for bad in ("--units=0", "--mode=c", "--cut=-1"):
        with pytest.raises(flags.IllegalFlagValueError):
            fresh = flags.FlagValues()
            define_flags(_Options, flag_values=fresh)
            fresh(["prog", bad])


def test_python_values_get_the_flags_errors():
    check_fields(_Options(cut=None))
    with pytest.raises(ValueError, match=r"Flag --units must be positive\. "
                                         r"Received: 0"):
        check_fields(_Options(units=0))
    with pytest.raises(ValueError, match=r"Flag --mode must be one of a, b\. "
                                         r"Received: 'c'"):
        check_fields(_Options(mode="c"))
    check_fields(_Options(mode="c"), {"mode": ("a", "c")})


def test_run_options_fill_the_base_and_name_what_is_wrong():
    own, options = common_flags.run_options(
        gnmt.Options, gnmt.BASE, dict(batch_size=512, beam_width=2))
    assert (own.beam_width, options.base_learning_rate, options.epochs) == \
        (2, gnmt.BASE["base_learning_rate"], gnmt.BASE["epochs"])
    with pytest.raises(TypeError, match=r"unknown arguments \['beams'\]"):
        common_flags.run_options(gnmt.Options, gnmt.BASE,
                                 dict(batch_size=512, beams=2))
    with pytest.raises(TypeError, match="needs batch_size"):
        common_flags.run_options(gnmt.Options, gnmt.BASE, {})
    with pytest.raises(ValueError, match="--batch_size must be a positive"):
        common_flags.run_options(gnmt.Options, gnmt.BASE, dict(batch_size=0))
    with pytest.raises(ValueError, match="--schedule must be one of"):
        common_flags.run_options(gnmt.Options, gnmt.BASE,
                                 dict(batch_size=8, schedule="reference"))
    _, options = common_flags.run_options(
        ptb_lstm.Options, lambda own: dict(ptb_lstm.BASE, epochs=2),
        dict(batch_size=8, schedule="reference"),
        extra_schedules=("reference",))
    assert (options.schedule, options.epochs) == ("reference", 2)
