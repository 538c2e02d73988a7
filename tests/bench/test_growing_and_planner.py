"""The growing-batch study's bookkeeping and the batch planner's
validation: rows, curves, the frozen plan, steps to a target, fits."""

import sys

import pytest

from bench import batch_planner, growing_batch, sweep_runner


def _fake_results(batches):
    return dict(test_accuracy=0.99, final_train_loss=0.001, steps=0,
                examples=60000 * len(batches), wall_seconds=10.0,
                batch_size=batches, epoch_test_accuracy=[0.9] * len(batches),
                learning_rate=[0.01] * len(batches),
                noise_scale=[100.0] * len(batches))


def test_study_rows_curves_and_rerun(tmp_path, monkeypatch):
    calls = []

    def fake_run(module, kwargs):
        calls.append(dict(kwargs, module=module))
        return _fake_results([256, 1024, 8192])

    monkeypatch.setattr(sweep_runner, "run_in_child", fake_run)
    argv = ["growing_batch", f"--csv={tmp_path / 'g.csv'}",
            f"--curves_csv={tmp_path / 'c.csv'}", "--epochs=3"]
    monkeypatch.setattr(sys, "argv", argv)
    growing_batch.main()
    growing_batch.main()  # a rerun trains nothing
    assert [c["module"] for c in calls] == ["mnist_lstm_growing"] * len(
        growing_batch.CONFIGS)
    assert calls[0]["seed"] == 0 and calls[0]["epochs"] == 3.0
    rows = sweep_runner.read_rows(str(tmp_path / "g.csv"))
    assert [r["config"] for r in rows] == list(growing_batch.CONFIGS)
    assert rows[0]["batch_schedule"] == "noise"
    curves = sweep_runner.read_rows(str(tmp_path / "c.csv"))
    # Steps after each epoch: ceil(60000 / B) summed.
    assert [int(r["step"]) for r in curves[:3]] == [235, 235 + 59, 294 + 8]
    monkeypatch.setattr(sys, "argv", argv + ["--plan=frozen"])
    growing_batch.main()
    # None is at 8192 for epochs 2 and 3 (1024 at 2): the best accuracy,
    # the first of equals.
    assert (calls[-1]["seed"], calls[-1]["batch_schedule"]) == (
        1, growing_batch.CONFIGS["lamb_sqrt_noise"]["batch_schedule"])


def _rows(**accuracy_steps):
    return [dict(config=name, seed="0", epochs="4", test_metric=str(a),
                 steps=str(s)) for name, (a, s) in accuracy_steps.items()]


def test_frozen_is_the_best_that_meets_the_constraints(monkeypatch):
    names = list(growing_batch.CONFIGS)
    monkeypatch.setattr(growing_batch, "CONFIGS", {n: {} for n in names[:3]})
    curves = [dict(config=n, seed="0", epoch=str(e), batch_size=str(b))
              for n, late in zip(names[:3], (8192, 8192, 2048))
              for e, b in ((1, 128), (2, 1024), (3, late), (4, late))]
    rows = _rows(**{names[0]: (0.990, 700), names[1]: (0.991, 900),
                    names[2]: (0.995, 500)})
    # names[1] takes too many steps, names[2] is not at 8192 late.
    assert growing_batch.frozen_config(rows, curves) == names[0]
    rows[0]["steps"] = "800"  # none meets them: the best accuracy
    assert growing_batch.frozen_config(rows, curves) == names[2]
    with pytest.raises(ValueError, match="needs every seed-0 row first"):
        growing_batch.frozen_config(rows[:2], curves)


def test_steps_to_a_target_is_the_first_evaluation_past_it(tmp_path):
    path = tmp_path / "curves.csv"
    path.write_text("run,step,test_accuracy\n"
                    "a,10,0.5\na,20,0.97\na,30,0.99\nb,5,0.98\nc,7,0.9\n")
    found = batch_planner.steps_to(str(path), {8: "a", 64: "b", 128: "c"},
                                   "test_accuracy", 1, 0.98)
    assert found == {8: 30, 64: 5}  # c never reaches it
    found = batch_planner.steps_to(str(path), {8: "a"}, "test_accuracy",
                                   -1, 0.6)
    assert found == {8: 10}


def test_planner_rows_fit_two_points_and_leave_one_out():
    # Steps of S(B) = 100 (1 + 200 / B): every prediction is exact.
    measured = {100: 300, 200: 200, 400: 150}
    rows = batch_planner.rows_of("gnmt", 50.0, measured)  # no noise CSV
    methods = [(r["method"], r["batch_size"]) for r in rows]
    assert methods == [("two_point", 100), ("two_point", 200),
                       ("two_point", 400), ("leave_one_out", 100),
                       ("leave_one_out", 200), ("leave_one_out", 400)]
    for row in rows:
        assert float(row["predicted_steps"]) == pytest.approx(
            row["measured_steps"], rel=1e-6)
        assert float(row["noise_scale"]) == pytest.approx(200, rel=1e-3)


def _trainer_results(batches, metric):
    history = [dict(step=10 * (i + 1), epoch=float(i + 1), batch_size=b,
                    examples=100 * (i + 1), metrics={metric: 120.0 - i})
               for i, b in enumerate(batches)]
    return {metric: 118.0, "final_loss": 4.5, "steps": 30, "epochs": 3.0,
            "examples": 300, "train_seconds": 12.0, "peak_rss_gib": 1.5,
            "batch_sizes": batches, "history": history}


def test_trainer_study_rows_curves_rerun_and_report(tmp_path, monkeypatch):
    from bench import growing_trainer

    calls = []

    def fake_run(module, kwargs):
        calls.append(dict(kwargs, module=module))
        return _trainer_results([20, 80, 320], "test_perplexity")

    monkeypatch.setattr(sweep_runner, "run_in_child", fake_run)
    argv = ["growing_trainer", f"--csv={tmp_path / 'g.csv'}",
            f"--curves_csv={tmp_path / 'c.csv'}",
            f"--runs_dir={tmp_path / 'runs'}"]
    monkeypatch.setattr(sys, "argv", argv + ["--plan=ptb"])
    growing_trainer.main()
    growing_trainer.main()  # a rerun trains nothing
    names = list(growing_trainer.CONFIGS["ptb_lstm"])
    assert [c["module"] for c in calls] == ["ptb_lstm"] * len(names)
    assert calls[0]["batch_schedule"] == growing_trainer.PTB_RAMP
    assert calls[0]["model_dir"].endswith(f"ptb_lstm_{names[0]}_s0")
    rows = sweep_runner.read_rows(str(tmp_path / "g.csv"))
    assert [r["config"] for r in rows] == [f"trainer_{n}" for n in names]
    assert (rows[0]["test_metric"], rows[0]["max_batch_size"],
            rows[0]["peak_rss_gib"]) == ("118.0000", "320", "1.50")
    assert rows[1]["max_batch_size"] == "1280"
    curves = sweep_runner.read_rows(str(tmp_path / "c.csv"))
    assert [(c["step"], c["batch_size"], c["test_metric"])
            for c in curves[:3]] == [("10", "20", "120.0000"),
                                     ("20", "80", "119.0000"),
                                     ("30", "320", "118.0000")]
    monkeypatch.setattr(growing_trainer, "PLOT", str(tmp_path / "p.png"))
    monkeypatch.setattr(sys, "argv", argv + ["--plan=report"])
    growing_trainer.main()
    assert (tmp_path / "p.png").stat().st_size > 0
