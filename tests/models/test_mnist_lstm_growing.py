"""MNIST-LSTM through `model.fit` with a growing batch: the script's run
on a slice of the real data, its options (flags and `run`'s keywords, one
definition) and its errors."""

import dataclasses
import glob
import inspect
import os
import re
import subprocess
import sys

import pytest
from absl import flags

import keras_legw
from models import mnist_lstm_growing
from models.common.options import check_fields, define_flags, from_flags
from models.common.flags import NOISE_OPTIONS
from models.mnist_lstm_growing import Options

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def test_a_short_ramp_trains_with_the_ramps_batches(tmp_path):
    results = mnist_lstm_growing.run(
        batch_schedule="0:128,1:256", epochs=2, units=8,
        num_train_examples=1024, backup_dir=str(tmp_path / "backup"))
    assert results["batch_size"] == [128, 256]
    assert results["steps"] == 1024 // 128 + 1024 // 256
    assert results["examples"] == 2048
    assert len(results["epoch_test_accuracy"]) == 2
    assert 0.0 <= results["test_accuracy"] <= 1.0
    assert results["learning_rate"][1] > 0


@pytest.mark.parametrize("kwargs,message", [
    (dict(optimizer="adagrad"), r"Flag --optimizer must be one of adam, "),
    (dict(max_batch_size=-1), r"Flag --max_batch_size must be a positive "
                              r"integer\. Received: -1$"),
    (dict(rate_rule="cubic"), r"Flag --rate_rule must be one of sqrt, "),
    (dict(noise_scale_multiplier=0.0), "Flag --noise_scale_multiplier must "
                                       "be positive"),
    (dict(batch_schedule="0:256,1:128"),
     r"Flag --batch_schedule=0:256,1:128: Argument `stages` must never "
     r"shrink the batch"),
    (dict(batch_schedule="noise"), "Flag --batch_schedule=noise: Argument "
                                   "`max_batch_size` is required"),
])
def test_a_bad_option_is_one_error_before_the_data_loads(monkeypatch, kwargs,
                                                         message):
    def no_data(*args):
        raise AssertionError("the data was loaded")

    monkeypatch.setattr(mnist_lstm_growing, "load_arrays", no_data)
    with pytest.raises(ValueError, match="^" + message):
        mnist_lstm_growing.run(epochs=1, **kwargs)
    with pytest.raises(TypeError, match=r"unknown arguments \['optimiser'\]"):
        mnist_lstm_growing.run(optimiser="lamb")


# TensorFlow's C++ logging at import, whatever the script does.
TF_NOISE = re.compile(r"[IWEF]\d{4} |WARNING: All log messages before "
                      r"absl::InitializeLog|To enable the following instr")


@pytest.mark.parametrize("flag,message", [
    ("--optimizer=adamz", "flag --optimizer=adamz: value should be one of"),
    ("--max_batch_size=-1", "flag --max_batch_size=-1: --max_batch_size must "
                            "be a positive integer."),
    ("--batch_schedule=0:256,1:128", "Flag --batch_schedule=0:256,1:128: "),
])
def test_a_bad_flag_exits_2_with_one_line(tmp_path, flag, message):
    """At flag parsing (or `run`'s checks, before the data): no data
    anywhere and downloads blocked, so a run that got that far would say
    so instead."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               LEGW_DATA_DIR=str(tmp_path / "none"), HOME=str(tmp_path),
               https_proxy="http://127.0.0.1:9",
               HTTPS_PROXY="http://127.0.0.1:9")
    result = subprocess.run(
        [sys.executable, "-m", "models.mnist_lstm_growing", flag,
         f"--data_dir={tmp_path / 'none'}"],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [l for l in result.stderr.splitlines() if not TF_NOISE.match(l)]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0]
    assert result.stdout == ""


def _documented_commands():
    """The flags of each `python -m models.mnist_lstm_growing` in the
    README, the Makefile, docs/ and the module's docstring."""
    texts = [mnist_lstm_growing.__doc__]
    for pattern in ("README.md", "Makefile", "docs/**/*.md"):
        for path in glob.glob(os.path.join(ROOT, pattern), recursive=True):
            with open(path) as f:
                texts.append(f.read())
    command = re.compile(r"(?:python|\$\(PY\)) -m "
                         r"models\.mnist_lstm_growing"
                         r"((?:[\s\\`]+--[\w.:,=]+)*)")
    return [re.findall(r"--[\w.:,=]+", match.group(1))
            for text in texts for match in command.finditer(text)]


def test_the_documented_commands_parse():
    commands = _documented_commands()
    assert len(commands) >= 4  # docstring 2, README 1, Makefile 1
    assert [] in commands and ["--batch_schedule=noise",
                               "--max_batch_size=8192"] in commands
    for args in commands:
        values = flags.FlagValues()
        define_flags(Options, flag_values=values)
        values(["prog", *args])
        options = Options(**from_flags(values, Options))
        check_fields(options)
        if not args:
            assert options == Options()


def test_the_noise_options_reach_the_noise_schedule():
    """An option named as a `NoiseBatchSchedule` argument is passed to it
    (NOISE_OPTIONS), and only those are."""
    params = set(inspect.signature(keras_legw.NoiseBatchSchedule).parameters)
    params -= {"base_batch_size", "max_batch_size", "batch_multiple"}
    names = {field.name for field in dataclasses.fields(Options)}
    assert set(NOISE_OPTIONS) == names & params
