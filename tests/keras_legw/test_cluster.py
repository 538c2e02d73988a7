"""The cluster planner: the ring all-reduce, the compute fit, micro-batches
and stage steps against closed forms and hand counts; the profiler on a tiny
model (the user's model is left as it was); `profile` and `plan --cluster`
on the command line, and their one-line errors."""

import math

import keras
import numpy as np
import pytest

from keras_legw import NoiseBatchSchedule, cli
from keras_legw.cluster import (INTERCONNECTS, Interconnect, StepProfile,
                                StepTimeModel, adaptive_stages,
                                plan_schedules, profile_step_times,
                                read_noise_curve)

MB = 1_000_000


def planted(a=0.01, c=0.001, batches=(16, 32, 64), param_bytes=0,
            bandwidth=100.0, latency=0.0, max_device_batch=None):
    """A StepTimeModel whose profile lies exactly on t = a + c b."""
    profile = StepProfile(batches, [a + c * b for b in batches], param_bytes)
    return StepTimeModel(profile, Interconnect(bandwidth, latency),
                         max_device_batch)


def test_ring_allreduce_at_1_2_and_8_devices():
    # 400 MB at 100 GB/s bus bandwidth, 10 us a message:
    # n = 2: 2 (1/2) 4e8 / 1e11 = 4 ms, plus 2 x 1 x 10 us;
    # n = 8: 2 (7/8) 4e8 / 1e11 = 7 ms, plus 2 x 7 x 10 us.
    model = planted(param_bytes=400 * MB, bandwidth=100.0, latency=10.0)
    assert model.allreduce_seconds(1) == 0.0
    assert model.allreduce_seconds(2) == pytest.approx(0.004 + 20e-6)
    assert model.allreduce_seconds(8) == pytest.approx(0.007 + 140e-6)
    for n in (3, 16, 512):  # the NumPy transcription
        want = 2 * (n - 1) / n * 4e8 / 1e11 + 2 * (n - 1) * 1e-5
        assert model.allreduce_seconds(n) == pytest.approx(want)


def test_the_fit_recovers_a_planted_line_and_clips_a_negative_intercept():
    model = planted(a=0.002, c=1e-4, batches=(16, 32, 64, 128))
    assert model.intercept_seconds == pytest.approx(0.002, abs=1e-12)
    assert model.seconds_per_example == pytest.approx(1e-4)
    assert model.compute_seconds(1000) == pytest.approx(0.002 + 0.1)
    # t = 0.5 at 10, 2.0 at 20: the free line is -1 + 0.15 b; with a >= 0
    # the slope through the origin, in relative error, is sum(b / t) /
    # sum((b / t)^2) = (20 + 10) / (400 + 100).
    clipped = StepTimeModel(StepProfile([10, 20], [0.5, 2.0], 0),
                            Interconnect(1.0))
    assert clipped.intercept_seconds == 0.0
    assert clipped.seconds_per_example == pytest.approx(30 / 500)


def test_the_fit_weighs_each_point_by_its_relative_error():
    """Three points off the line: the fit minimizes the relative errors
    (NumPy's weighted least squares), not the absolute ones."""
    b = np.array([16, 128, 512])
    t = np.array([0.011, 0.020, 0.070])
    model = StepTimeModel(StepProfile(b, t, 0), Interconnect(1.0))
    w = 1 / t
    (a, c), *_ = np.linalg.lstsq(np.stack([w, b * w], axis=1), np.ones(3),
                                 rcond=None)
    unweighted = np.polyfit(b, t, 1)[::-1]
    assert (model.intercept_seconds, model.seconds_per_example) == \
        pytest.approx((a, c))
    assert not np.allclose((a, c), unweighted, rtol=1e-3)


@pytest.mark.parametrize("batches, seconds, message", [
    ([128], [0.1], "at least two different batches"),
    ([128, 128], [0.1, 0.1], "at least two different batches"),
    ([16, 128], [0.2, 0.1], "must grow with the batch"),
])
def test_a_profile_that_cannot_be_fitted_is_one_error(batches, seconds,
                                                      message):
    with pytest.raises(ValueError, match=message):
        StepTimeModel(StepProfile(batches, seconds, 0), Interconnect(1.0))


def test_step_seconds_with_and_without_micro_batches():
    # 1024 over 4 devices: 256 each. With at most 100 a device, 3
    # micro-batches of 85.33; the 400 MB all-reduce over 4 takes
    # 2 (3/4) 4e8 / 1e11 = 6 ms, once a step.
    fits = planted(a=0.01, c=0.001, param_bytes=400 * MB)
    assert fits.micro_batches(1024, 4) == (1, 256)
    assert fits.step_seconds(1024, 4) == pytest.approx(0.01 + 0.256 + 0.006)
    capped = planted(a=0.01, c=0.001, param_bytes=400 * MB,
                     max_device_batch=100)
    assert capped.micro_batches(1024, 4) == (3, pytest.approx(256 / 3))
    assert capped.step_seconds(1024, 4) == pytest.approx(
        3 * 0.01 + 0.256 + 0.006)
    assert capped.micro_batches(800, 8) == (1, 100)  # exactly fits


def test_a_batch_that_does_not_split_names_both():
    with pytest.raises(ValueError, match=r"^Argument `global_batch` must "
                       r"split evenly over `devices`: 100 examples over 3 "
                       r"devices leave 1\. Received: global_batch=100, "
                       r"devices=3$"):
        planted().step_seconds(100, 3)
    with pytest.raises(ValueError, match="`devices` must be a positive"):
        planted().allreduce_seconds(0)


def test_interconnect_is_validated_and_presets_are_interconnects():
    with pytest.raises(ValueError, match="^Argument `bandwidth_gb_per_s` "
                       "must be a positive number. Received: "
                       "bandwidth_gb_per_s=0$"):
        Interconnect(0, 1)
    with pytest.raises(ValueError, match="`latency_us` must be a non-neg"):
        Interconnect(10, -1)
    assert INTERCONNECTS["nvlink4"] == Interconnect(450.0, 3.0)
    assert INTERCONNECTS["ethernet-100g"].bandwidth_gb_per_s == 12.5
    assert all(isinstance(v, Interconnect) for v in INTERCONNECTS.values())


def test_plan_counts_stage_steps_by_hand():
    # N = 60000, 25 epochs. Fixed 128: ceil(25 x 60000 / 128) = 11719.
    # The ramp: ceil(60000/256) + ceil(2 x 60000/1024) + ceil(3 x 60000/4096)
    # + ceil(19 x 60000/8192) = 235 + 118 + 44 + 140 = 537.
    rows = plan_schedules(planted(), {"base": 128, "ramp":
                                      "0:256,1:1024,3:4096,6:8192"},
                          [1], 60000, 25)
    assert [r.steps for r in rows] == [11719, 537]
    # A stage from epoch 1.5 applies from epoch 2 (as BatchRamp trains), and
    # a last partial epoch counts its own steps: [0, 2) at 100 = 20 steps,
    # [2, 2.5) at 200 = ceil(2.5) = 3.
    rows = plan_schedules(planted(), [("r", ((0, 100), (1.5, 200)))], [1],
                          1000, 2.5)
    assert rows[0].steps == 23


def test_plan_wall_clock_device_hours_speedup_and_impossible_rows():
    # t(B, n) = 0.01 + 0.001 B / n (no gradient to reduce). Fixed 100, 1000
    # examples, 2 epochs: 20 steps of 0.11 s on one device, 0.06 on two.
    rows = plan_schedules(planted(), {"a": 100, "b": ((0, 100), (1, 200))},
                          [1, 2, 3], 1000, 2)
    by = {(r.schedule, r.devices): r for r in rows}
    assert [(r.schedule, r.devices) for r in rows] == [
        ("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]
    assert by["a", 1].wall_seconds == pytest.approx(2.2)
    assert by["a", 2].wall_seconds == pytest.approx(1.2)
    assert by["a", 2].device_hours == pytest.approx(2 * 1.2 / 3600)
    assert by["a", 2].speedup == pytest.approx(2.2 / 1.2)
    # b: 10 steps at 100 then 5 at 200 on two devices: 10 x 0.06 + 5 x 0.11.
    assert by["b", 2].wall_seconds == pytest.approx(0.6 + 0.55)
    assert by["b", 2].speedup == pytest.approx(2.2 / 1.15)
    assert not by["a", 3].possible and by["a", 3].wall_seconds is None
    assert by["a", 3].reason == "batch 100 does not split over 3 devices"
    assert by["a", 3].steps == 20
    # Profiled 16..64: a share of 100 is an extrapolation, one of 50 not.
    assert by["a", 1].extrapolated and not by["a", 2].extrapolated
    # The speedups are over the first schedule on one device, planned or not.
    rows = plan_schedules(planted(), {"b": ((0, 100), (1, 200)), "a": 100},
                          [2], 1000, 2)
    assert [r.speedup for r in rows] == pytest.approx([2.15 / 1.15,
                                                       2.15 / 1.2])


@pytest.mark.parametrize("schedules, devices, message", [
    ({}, [1], "at least one"),
    ({"x": "0:256,1:128"}, [1], "Schedule 'x': .*never shrink"),
    ({"x": 128}, [0], "`device_counts` must be a positive integer"),
])
def test_bad_plans_are_one_error(schedules, devices, message):
    with pytest.raises(ValueError, match=message):
        plan_schedules(planted(), schedules, devices, 1000, 2)


def test_adaptive_stages_follow_noise_batch_schedule(monkeypatch):
    # After epoch 0: L = 219, 4 L = 876: 512 (two doublings of 128).
    # After epoch 1: lower median of (219, 545) = 219: stays. After epoch 2:
    # median 545, 4 x 545 = 2180: 2048. The NaN epoch adds nothing.
    curve = [219.0, 545.0, 1037.0, math.nan]
    assert adaptive_stages(curve, 128, 8192, 5) == (
        (0.0, 128), (1.0, 512), (3.0, 2048))
    # The rule's own arguments pass through: c = 1 stays at 128 until
    # L >= 256 (after epoch 2: median 545 -> 512).
    assert adaptive_stages(curve, 128, 8192, 5, noise_scale_multiplier=1) \
        == ((0.0, 128), (3.0, 512))
    seen = []
    real = NoiseBatchSchedule.observe
    monkeypatch.setattr(NoiseBatchSchedule, "observe", lambda self, *a:
                        seen.append(a) or real(self, *a))
    adaptive_stages(curve, 128, 8192, 3)  # epochs 0, 1 observed
    assert seen == [(1.0, 219.0), (1.0, 545.0)]


# The form of docs/results/mnist_lstm_noise_scale.csv (its first rows, and
# a last one without a measurement) and of ptb_lstm_noise_scale.csv.
MNIST_CURVE = ("batch_size,epoch,step,noise_scale,test_accuracy\n"
               "128,1.001,469,219.3,0.9563\n128,2.001,938,545.5,0.9777\n"
               "128,3.002,1407,1037.7,0.9773\n128,5.001,2344,nan,0.99\n")
PTB_CURVE = ("batch_size,epoch,step,noise_scale,test_perplexity\n"
             "20,1.0,2323,908.4,179.2032\n20,2.0,4646,nan,148.6326\n")


def test_read_noise_curve_in_the_results_form(tmp_path):
    path = tmp_path / "curve.csv"
    path.write_text(MNIST_CURVE)
    mnist = read_noise_curve(path)  # epoch 4 has no row: NaN
    assert mnist[:3] == [219.3, 545.5, 1037.7] and len(mnist) == 5
    assert math.isnan(mnist[3]) and math.isnan(mnist[4])
    path.write_text(PTB_CURVE)
    ptb = read_noise_curve(path)
    assert ptb[0] == 908.4 and math.isnan(ptb[1]) and len(ptb) == 2
    path.write_text(PTB_CURVE + "40,3.0,6969,1000,140\n")
    with pytest.raises(ValueError, match="must hold one run's curve"):
        read_noise_curve(path)
    path.write_text("epoch,noise\n1,2\n")
    with pytest.raises(ValueError, match="must have the columns epoch and "
                       "noise_scale; it lacks noise_scale"):
        read_noise_curve(path)


def test_profile_csv_round_trip_and_bad_files(tmp_path):
    path = tmp_path / "p.csv"
    profile = StepProfile([16, 32], [0.0123456789, 0.02], 1234, "jax",
                          "gpu:H100, SXM")
    profile.to_csv(path)
    assert path.read_text().splitlines()[0] == (
        "batch_size,seconds_per_step,param_bytes,backend,device")
    assert StepProfile.read_csv(path) == profile
    path.write_text("batch_size,seconds_per_step,param_bytes\n16,0.1,8\n"
                    "32,0.2,9\n")
    with pytest.raises(ValueError, match="param_bytes must be the same"):
        StepProfile.read_csv(path)
    path.write_text("batch_size,seconds_per_step,param_bytes\n16,fast,8\n")
    with pytest.raises(ValueError, match=r"p.csv, line 2: seconds_per_step "
                       r"must be a number. Received: 'fast'"):
        StepProfile.read_csv(path)
    path.write_text("batch_size,seconds_per_step,param_bytes\n0,0.1,8\n")
    with pytest.raises(ValueError, match="p.csv: Argument `batch_sizes`"):
        StepProfile.read_csv(path)


def tiny_task(rows=16):
    """A compiled Dense model and random data (also `profile --task`)."""
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2),
                              keras.layers.BatchNormalization()])
    model.compile(keras.optimizers.Adam(0.1), "mse")
    return model, rng.normal(size=(rows, 3)), rng.normal(size=(rows, 2))


def _state(model):
    return [np.array(v) for v in [*model.variables,
                                  *model.optimizer.variables]]


def test_profile_times_each_batch_and_leaves_the_model_as_it_was():
    model, x, y = tiny_task()
    model.train_on_batch(x[:4], y[:4])  # a model already part-trained
    before = _state(model)
    profile = profile_step_times(model, x, y, [4, 8], repeats=2,
                                 steps_per_repeat=1)
    assert profile.batch_sizes == (4, 8) and len(profile.seconds) == 2
    assert all(s > 0 for s in profile.seconds)
    # The trainable weights only: Dense 3 x 2 + 2, batch-norm's scale and
    # offset 2 + 2 (not its moving mean and variance), float32.
    assert profile.param_bytes == (3 * 2 + 2 + 2 + 2) * 4
    assert profile.backend == keras.backend.backend()
    assert isinstance(profile.device, str) and profile.device
    after = _state(model)
    assert len(after) == len(before)
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)


def test_profile_of_a_fresh_model_leaves_its_optimizer_at_the_start():
    model, x, y = tiny_task()
    weights = [np.array(w) for w in model.get_weights()]
    profile_step_times(model, x, y, [4, 8], repeats=1, steps_per_repeat=1)
    for old, new in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert int(model.optimizer.iterations) == 0
    assert all(not np.any(np.array(v)) for v in model.optimizer.variables
               if "moment" in v.path or "velocity" in v.path)


def test_each_batch_is_warmed_up_once_then_timed(monkeypatch):
    model, x, y = tiny_task()
    calls = []
    real = model.train_on_batch
    monkeypatch.setattr(model, "train_on_batch", lambda xb, yb: calls.append(
        len(xb)) or real(xb, yb))
    profile_step_times(model, x, y, [4, 8], repeats=2, steps_per_repeat=3)
    assert calls == [4] * (1 + 2 * 3) + [8] * (1 + 2 * 3)


@pytest.mark.parametrize("batches, message", [
    ([8], "at least two different batches"),
    ([8, 8], "at least two different batches"),
    ([8, 32], "at most the 16 rows"),
    ([0, 8], "`batch_sizes` must be a positive integer"),
])
def test_bad_profile_batches_are_one_error_before_any_step(batches, message):
    model, x, y = tiny_task()
    with pytest.raises(ValueError, match=message):
        profile_step_times(model, x, y, batches)
    assert not model.optimizer.built  # nothing ran


PROFILE = ("batch_size,seconds_per_step,param_bytes,backend,device\n"
           "16,0.026,400000000,tensorflow,hand\n"
           "64,0.074,400000000,tensorflow,hand\n")
# t(b) = 0.01 + 0.001 b; 400 MB of gradient.


def _plan(tmp_path, *extra, profile=PROFILE):
    path = tmp_path / "profile.csv"
    path.write_text(profile)
    return cli.main(["plan", "--cluster", "--profile", str(path),
                     "--num-examples", "1000", "--epochs", "2",
                     "--base-batch", "100", *extra])


def test_plan_cluster_prints_the_table_and_assumptions(tmp_path, capsys):
    assert _plan(tmp_path, "--batch", "200", "--devices", "1,2,3",
                 "--bandwidth-gb-per-s", "100", "--latency-us", "10",
                 "--ramp", "0:100,1:200",
                 "--plot", str(tmp_path / "wall.png")) == 0
    out = capsys.readouterr().out
    # 1 device: 20 steps x 0.11 s = 2.2 s. 2 devices: 20 x (0.06 + 2 (1/2)
    # 4e8 / 1e11 + 2 x 10 us) = 20 x 0.06402 = 1.28 s, 2.56 s x 2 / 3600
    # device-hours, speedup 2.2 / 1.2804.
    lines = out.splitlines()
    assert "       1  fixed 100         20       2.2 s      0.000611" \
           "        1 *" in lines
    assert "       2  fixed 100         20      1.28 s      0.000711" \
           "     1.72" in lines
    assert "       3  fixed 100         20   not possible: batch 100 does " \
           "not split over 3 devices" in lines
    assert "  ramp         0:100,1:200" in lines
    assert "       2  ramp              15" in out
    assert "over the given link: 100 GB/s bus bandwidth, 10 us a message" in out
    assert "t(b) = 10 ms + 1000 us x b per device, least squares over the " \
           "profiled batches 16..64" in out
    assert "no overlap" not in out and "overlap      none" in out
    assert (tmp_path / "wall.png").stat().st_size > 1000


def test_plan_cluster_adaptive_from_a_noise_curve(tmp_path, capsys):
    curve = tmp_path / "curve.csv"
    curve.write_text(MNIST_CURVE)
    _plan(tmp_path, "--interconnect", "nvlink4", "--devices", "1,8",
          "--noise-curve", str(curve), "--max-batch", "800")
    out = capsys.readouterr().out
    assert "  adaptive     0:100,1:400" in out
    assert "nvlink4: 450 GB/s bus bandwidth, 3 us a message" in out


@pytest.mark.parametrize("extra, profile, message", [
    (["--interconnect", "pcie4"], "batch_size,seconds_per_step,param_bytes"
     "\n16,0.1,8\n", "at least two different batches"),
    (["--interconnect", "pcie4", "--devices", "0"], PROFILE,
     "Argument `device_counts` must be a positive integer. Received: "
     "device_counts=0"),
    (["--interconnect", "pcie4", "--devices", "1,x"], PROFILE,
     "--devices must be comma-separated integers"),
    (["--bandwidth-gb-per-s", "0"], PROFILE,
     "Argument `bandwidth_gb_per_s` must be a positive number"),
    ([], PROFILE, "--cluster needs --interconnect NAME"),
    (["--interconnect", "infiniband"], PROFILE, "invalid choice"),
    (["--interconnect", "pcie4", "--noise-curve", "/nonexistent.csv",
      "--max-batch", "800"], PROFILE, "No such file"),
    (["--interconnect", "pcie4", "--noise-curve", "/nonexistent.csv"],
     PROFILE, "--noise-curve needs --max-batch"),
    (["--interconnect", "pcie4", "--ramp", "0:100,1:50"], PROFILE,
     "Schedule 'ramp': Argument `stages` must never shrink"),
])
def test_plan_cluster_bad_input_exits_2_with_one_line(
        tmp_path, capsys, extra, profile, message):
    with pytest.raises(SystemExit) as info:
        _plan(tmp_path, *extra, profile=profile)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_plan_cluster_needs_a_profile_file(tmp_path, capsys):
    for argv, message in [
            (["--profile", str(tmp_path / "none.csv")], "No such file"),
            ([], "required with --cluster: --profile")]:
        with pytest.raises(SystemExit) as info:
            cli.main(["plan", "--cluster", "--interconnect", "pcie4",
                      "--num-examples", "1000", "--epochs", "2",
                      "--base-batch", "100", *argv])
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.count("\n") == 1
        assert message in err, err


def test_profile_command_writes_a_csv(tmp_path, capsys):
    out = tmp_path / "p.csv"
    assert cli.main(["profile", "--task",
                     "tests.keras_legw.test_cluster:tiny_task",
                     "--batch-sizes", "4,8", "--out", str(out),
                     "--repeats", "1", "--steps-per-repeat", "1"]) == 0
    assert f"profile saved to {out}" in capsys.readouterr().out
    assert StepProfile.read_csv(out).batch_sizes == (4, 8)


@pytest.mark.parametrize("task, batches, message", [
    ("tests.keras_legw.test_cluster", "4,8", "--task must be MODULE:FUNCTION"),
    ("tests.keras_legw.nowhere:task", "4,8", "cannot load --task"),
    ("tests.keras_legw.test_cluster:nothing", "4,8", "cannot load --task"),
    ("tests.keras_legw.test_cluster:tiny_task", "8",
     "at least two different batches"),
    ("tests.keras_legw.test_cluster:tiny_task", "4,64", "at most the 16 rows"),
    ("tests.keras_legw.test_cluster:task_without_data", "4,8",
     "failed: no data in /nowhere"),
])
def test_profile_command_bad_input_exits_2_with_one_line(
        tmp_path, capsys, task, batches, message):
    with pytest.raises(SystemExit) as info:
        cli.main(["profile", "--task", task, "--batch-sizes", batches,
                  "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert message in err, err


def task_without_data():
    raise RuntimeError("no data in /nowhere")


def test_the_zoo_mnist_lstm_profile_task():
    from models.mnist_lstm_model import profile_task

    model, x, y = profile_task(rows=8)
    assert model.compiled and x.shape == (8, 28, 28) and y.shape == (8,)
    assert model.name == "mnist_lstm"
