"""`python -m keras_legw plan`: output, plot and one-line errors."""

import ast
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_legw import cli
from tests.keras_legw.reference import legw_numpy

ARGS = ["plan", "--base-lr", "0.1", "--base-batch", "128", "--batch", "8192",
        "--base-warmup-epochs", "0.2", "--num-examples", "60000",
        "--epochs", "25"]


def test_plan_prints_derived_values_and_table(capsys):
    assert cli.main(ARGS) == 0
    out = capsys.readouterr().out
    assert "k (batch scale factor)   64\n" in out
    assert "peak learning rate       0.8 " in out
    assert "12.8 epochs = 94 steps" in out
    assert "25 epochs = 184 steps" in out
    rows = [line.split() for line in out.splitlines()
            if line.strip() and line.split()[0].replace(".", "").isdigit()]
    assert len(rows) == 12  # 11 evenly spaced epochs plus the warmup end
    for _, step, rate in rows:
        want = legw_numpy(int(step), base_learning_rate=0.1,
                          base_batch_size=128, batch_size=8192,
                          base_warmup_epochs=0.2, num_examples=60000,
                          total_epochs=25)
        assert float(rate) == pytest.approx(float(want), rel=1e-4, abs=1e-9)


def test_plan_saves_png(tmp_path, capsys):
    path = tmp_path / "lr.png"
    assert cli.main(ARGS + ["--plot", str(path)]) == 0
    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # IHDR: width and height of 7 x 4 inches at 120 dpi.
    assert struct.unpack(">II", png[16:24]) == (840, 480)
    assert f"plot saved to {path}" in capsys.readouterr().out


def test_plotted_curves_are_legw_goyal_and_no_warmup():
    """The three curves against the NumPy transcription: LEGW as asked, the
    linear scaling with a constant-epoch warmup, and no warmup."""
    args = cli._build_parser().parse_args(ARGS)
    schedule = cli._schedule(args)
    curves = list(cli.plan_curves(args, schedule, points=101).items())
    base = dict(base_learning_rate=0.1, base_batch_size=128, batch_size=8192,
                base_warmup_epochs=0.2, num_examples=60000, total_epochs=25)
    variants = [dict(), dict(scaling="linear", warmup_scaling="none"),
                dict(base_warmup_epochs=0.0)]
    assert [label for label, _ in curves] == [
        "LEGW (sqrt scaling, warmup x k)",
        "linear scaling, constant-epoch warmup (Goyal)",
        "sqrt scaling, no warmup"]
    for (_, (epochs, rates)), variant in zip(curves, variants):
        steps = np.round(epochs * 60000 / 8192)
        want = legw_numpy(steps, **{**base, **variant})
        np.testing.assert_allclose(rates, want, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("extra,message", [
    (["--batch", "0"], "Argument `batch_size` must be a positive number"),
    (["--base-warmup-epochs", "1"], "Argument `base_warmup_epochs`"),
    (["--scaling", "cube"], "argument --scaling: invalid choice"),
    (["--base-lr", "fast"], "argument --base-lr: invalid float value"),
    (["--decay", "exponential"], "Argument `decay_rate` is required"),
    (["--plot", "/nonexistent/dir/lr.png"], "cannot save --plot"),
])
def test_bad_arguments_exit_2_with_one_line(extra, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(ARGS + extra)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("python -m keras_legw: error: ")
    assert message in err


def test_plot_without_matplotlib_says_what_to_install(monkeypatch, capsys):
    real_find_spec = cli.importlib.util.find_spec
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None
                        if name == "matplotlib" else real_find_spec(name))
    with pytest.raises(SystemExit) as info:
        cli.main(ARGS + ["--plot", "lr.png"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "pip install 'keras-legw[plot]'" in err


@pytest.mark.skipif(os.environ.get("LEGW_SKIP_TORCH") == "1",
                    reason="runs on the torch backend; LEGW_SKIP_TORCH=1")
def test_importing_the_library_loads_neither_tensorflow_nor_keras_hub():
    script = ("import sys, keras_legw; print('tensorflow' in sys.modules, "
              "'keras_hub' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], text=True,
                            capture_output=True,
                            env=dict(os.environ, KERAS_BACKEND="torch"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False False"


def test_library_modules_import_only_keras_numpy_and_the_standard_library():
    """Module-level imports of keras_legw/ (matplotlib is imported inside the
    plot function only): the core install is Keras and NumPy."""
    allowed = {"keras", "numpy", "keras_legw"} | set(sys.stdlib_module_names)
    package = Path(cli.__file__).parent
    for path in sorted(package.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            assert set(roots) <= allowed, (path.name, roots)


def test_missing_argument_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["plan", "--base-lr", "0.1"])
    assert info.value.code == 2
    assert "required" in capsys.readouterr().err


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "keras_legw"] + ARGS,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "12.8 epochs = 94 steps" in result.stdout
