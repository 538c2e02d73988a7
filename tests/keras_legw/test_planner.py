"""The batch planner: McCandlish et al.'s S(B) = S_min (1 + B_noise / B)
against hand-computed values and a synthetic curve of known B_noise, its
errors, and `plan`'s prediction mode."""

import numpy as np
import pytest

from keras_legw import cli
from keras_legw.planner import StepsModel, plan_table


def test_two_points_by_hand():
    # S(100) = 300, S(400) = 150: S = a + b / B gives b (1/100 - 1/400) =
    # 150, b = 20000, a = 100, B_noise = b / a = 200.
    model = StepsModel.fit([100, 400], [300, 150])
    assert model.min_steps == pytest.approx(100)
    assert model.noise_scale == pytest.approx(200)
    assert model.steps(200) == pytest.approx(200)
    # Epochs E(B) = S(B) B / N: at B_noise twice E_min = S_min B_noise / N.
    assert model.epochs(200, 1000) == pytest.approx(2 * 100 * 200 / 1000)
    np.testing.assert_array_equal(model.diminishing_returns([100, 190, 210]),
                                  [False, False, True])


def test_recovers_a_known_noise_scale_from_noisy_runs():
    rng = np.random.default_rng(0)
    batches = np.array([64, 128, 256, 512, 1024, 4096, 16384])
    true = StepsModel(50.0, 1500.0)
    steps = true.steps(batches) * np.exp(rng.normal(0, 0.03, len(batches)))
    fitted = StepsModel.fit(batches, steps)
    assert fitted.noise_scale == pytest.approx(1500, rel=0.1)
    assert fitted.min_steps == pytest.approx(50, rel=0.1)
    exact = StepsModel.fit(batches, true.steps(batches))
    assert (exact.min_steps, exact.noise_scale) == pytest.approx((50, 1500))


def test_from_the_noise_scale_and_one_run():
    model = StepsModel.from_noise_scale(2500.0, 128, 2344)
    assert model.min_steps == pytest.approx(2344 / (1 + 2500 / 128))
    assert model.steps(128) == pytest.approx(2344)
    # The rough check: a 15.7x cut in steps from 128 to 8192.
    assert model.steps(128) / model.steps(8192) == pytest.approx(15.7,
                                                                 rel=0.01)


def test_plan_table_rows():
    rows = plan_table(StepsModel(100, 200), [100, 400], 1000, 100)
    assert rows == [(100, 300.0, 30.0, 1.0, False),
                    (400, 150.0, 60.0, 2.0, True)]


@pytest.mark.parametrize("batches, steps, message", [
    ([128], [100], "at least two different batches"),
    ([128, 128], [100, 90], "at least two different batches"),
    ([128, 256], [100], "the same length"),
    ([128, -256], [100, 50], "must be positive numbers"),
    ([128, 256], [100, 200], "do not follow S"),   # steps grow
    ([128, 256], [100, 40], "do not follow S"),    # fall faster than 1/B
])
def test_bad_measurements_are_one_clear_error(batches, steps, message):
    with pytest.raises(ValueError, match=message):
        StepsModel.fit(batches, steps)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="^Argument `noise_scale` must be a "
                       "positive number. Received: noise_scale=0$"):
        StepsModel(10, 0)
    with pytest.raises(ValueError, match="^Argument `steps` must be"):
        StepsModel.from_noise_scale(100, 128, -1)


def test_plan_predicts_from_runs_and_from_the_noise_scale(tmp_path, capsys):
    runs = tmp_path / "runs.csv"
    runs.write_text("batch_size,steps\n100,300\n400,150\n")
    cli.main(["plan", "--runs", str(runs), "--base-batch", "100",
              "--num-examples", "1000", "--max-batch", "800",
              "--plot", str(tmp_path / "steps.png")])
    out = capsys.readouterr().out
    assert "B_noise (critical batch)  200 examples" in out
    assert "     100      300.0        30            1  no" in out
    assert "     400      150.0        60            2  yes" in out
    assert "     800      125.0       100         3.33  yes" in out
    assert (tmp_path / "steps.png").stat().st_size > 1000
    cli.main(["plan", "--noise-scale", "200", "--base-steps", "300",
              "--base-batch", "100", "--num-examples", "1000",
              "--max-batch", "400"])
    assert "     200      200.0        40         1.33  no" in (
        capsys.readouterr().out)


@pytest.mark.parametrize("extra, message", [
    (["--base-steps", "300"], "--base-steps needs --noise-scale"),
    (["--runs", "/nonexistent.csv"], "No such file"),
    ([], "the following arguments are required: --base-lr, --batch"),
])
def test_plan_prediction_errors_exit_2(extra, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["plan", "--base-batch", "100", "--num-examples", "1000"]
                 + extra)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize("text, message", [
    ("batch_size,steps\n128\n8192,125\n",
     "runs.csv, line 2: steps must be a number. Received: a missing cell"),
    ("batch_size,steps\n128,2344\n8192,lots\n",
     "runs.csv, line 3: steps must be a number. Received: 'lots'"),
    ("batch_size,steps\n,2344\n", "runs.csv, line 2: batch_size must be a "
     "number. Received: a missing cell"),
    ("batch_size,steps\n", "runs.csv has the columns batch_size and steps "
     "but no row"),
    ("batch,steps\n128,2344\n", "runs.csv must have the columns batch_size "
     "and steps; it lacks batch_size"),
    ("", "runs.csv must have the columns batch_size and steps; it lacks "
     "batch_size, steps"),
])
def test_a_bad_runs_file_is_one_line_naming_the_file_and_line(
        tmp_path, capsys, text, message):
    runs = tmp_path / "runs.csv"
    runs.write_text(text)
    with pytest.raises(SystemExit) as info:
        cli.main(["plan", "--runs", str(runs), "--base-batch", "128",
                  "--num-examples", "60000"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err

