"""The sweeps' bookkeeping behind every published MNIST number: resumable
rows, table means, seconds to a target, and the recipe study's choices."""

import os
import sys

import numpy as np
import pytest

from bench import gpu_report, mnist_plots, mnist_recipes, mnist_sweep
from bench import sweep_runner


def _fake_training(monkeypatch, **results):
    """Stands in for the sweeps' training child: returns the list each run's
    keyword arguments (and its `module`) are appended to; every run returns
    `results`."""
    calls = []

    def fake_run(module, kwargs):
        calls.append(dict(kwargs, module=module))
        return dict(results)

    monkeypatch.setattr(sweep_runner, "run_in_child", fake_run)
    return calls


def _run_sweep(monkeypatch, bench_module, *argv):
    """`bench_module.main()` under the command line `argv`."""
    monkeypatch.setattr(sys, "argv", [bench_module.__name__, *argv])
    bench_module.main()


def _row(**values):
    row = dict(schedule="legw", batch_size=128, seed=0, epochs=25.0,
               test_accuracy=0.99, steps=11719, wall_seconds=300.0,
               seconds_to_98=None)
    row.update(values)
    return row


def test_rows_append_with_one_header_and_finished_runs_are_skipped(tmp_path):
    path = str(tmp_path / "sweep.csv")
    columns = mnist_sweep.COLUMNS
    first = dict(schedule="legw", batch_size=8192, seed=1, epochs=25,
                 test_accuracy=0.98, steps=184, wall_seconds=200.0,
                 seconds_to_98="")
    sweep_runner.append_row(path, columns, first)
    sweep_runner.append_row(path, columns, dict(first, seed=0))
    lines = open(path).read().splitlines()
    assert lines[0] == ",".join(columns) and len(lines) == 3
    done = mnist_sweep._done(path)
    plan = mnist_sweep.plan_runs("claim", 25)
    todo = [s for s in plan if mnist_sweep.run_name(s) not in done]
    assert len(plan) - len(todo) == 2
    assert all(not (s["batch_size"] == 8192 and s["schedule"] == "legw")
               for s in todo)


def test_rows_follow_the_files_header_and_refuse_a_column_it_lacks(tmp_path):
    """An AutoWarmup row lands in a CSV whose other rows leave its switch
    columns empty; a row with a key the file has no column for is an error,
    not a silently dropped value."""
    path = str(tmp_path / "ptb.csv")
    labels = dict(schedule="legw", batch_size=20, seed=0, epochs=13.0)
    results = dict(test_perplexity=122.466, steps=30199, train_seconds=4316.2,
                   tokens_per_second=2798.4, warmup_steps=None,
                   peak_learning_rate=None)
    header = "schedule,batch_size,seed,epochs,test_perplexity,steps," \
        "wall_seconds,tokens_per_second,check_every_epochs,warmup_steps," \
        "peak_learning_rate"
    open(path, "w").write(header + "\n")
    sweep_runner.record_run(path, "a", labels, ["test_perplexity"], results)
    results.update(warmup_steps=1234, peak_learning_rate=2.3456789)
    sweep_runner.record_run(path, "b", dict(labels, schedule="autowu"),
                            ["test_perplexity"], results,
                            dict(check_every_epochs=0.1))
    assert open(path).read().splitlines()[1:] == [
        "legw,20,0,13.0,122.47,30199,4316.2,2798,,,",
        "autowu,20,0,13.0,122.47,30199,4316.2,2798,0.1,1234,2.34568"]
    with pytest.raises(ValueError, match="no column seconds_to_98"):
        sweep_runner.append_row(path, [], dict(labels, seconds_to_98=1.0))
    assert len(open(path).read().splitlines()) == 3


def test_seconds_to_a_target_is_the_first_epoch_at_or_above_it():
    history = [{"train_seconds": t, "metrics": {"test_accuracy": a}}
               for t, a in [(10, 0.95), (20, 0.98), (30, 0.97), (40, 0.99)]]
    assert mnist_sweep.seconds_to(history, 0.98) == 20
    assert mnist_sweep.seconds_to(history, 0.995) is None


def test_table_means_use_the_legw_run_at_the_base_batch():
    rows = [_row(seed=0, test_accuracy=0.9903),
            _row(seed=1, test_accuracy=0.9886),
            _row(schedule="goyal", batch_size=8192, test_accuracy=0.5949),
            _row(schedule="goyal", batch_size=8192, seed=1,
                 test_accuracy=0.4502),
            _row(batch_size=8192, epochs=50.0, test_accuracy=0.9837)]
    mean, values = mnist_plots.mean_accuracy(rows, "goyal", 128, 25.0)
    assert values == [0.9903, 0.9886] and mean == pytest.approx(0.98945)
    mean, _ = mnist_plots.mean_accuracy(rows, "goyal", 8192, 25.0)
    assert mean == pytest.approx((0.5949 + 0.4502) / 2)
    table = mnist_plots.accuracy_table(rows)
    assert "| Goyal (linear, constant warmup) | 98.94 (n=2) | 52.25 (n=2) |" \
        in table
    budget = mnist_plots.budget_table(rows)
    assert "| 50 |  | 98.37 |  |  |  |" in budget


def _recipe_row(recipe, lr, batch, seed, accuracy):
    return {k: "" for k in mnist_recipes.COLUMNS} | dict(
        recipe=recipe, optimizer=recipe.split("+")[0],
        base_learning_rate=str(lr), batch_size=str(batch), seed=str(seed),
        epochs="25", test_accuracy="" if accuracy is None else str(accuracy),
        status="diverged" if accuracy is None else "ok")


def test_recipe_rate_is_frozen_only_once_its_grid_is_done():
    rows = [_recipe_row("lamb", 0.01, 128, 0, 0.9901),
            _recipe_row("lamb", 0.003, 128, 0, 0.9879)]
    grid = mnist_recipes.TUNING_GRID["lamb"]
    assert mnist_recipes.tuned_rate(rows, "lamb", grid) is None
    rows.append(_recipe_row("lamb", 0.03, 128, 0, None))  # diverged
    assert mnist_recipes.tuned_rate(rows, "lamb", grid) == 0.01
    # No large-batch run before the tuning is done, then all four.
    names = {mnist_recipes.run_name(s)
             for s in mnist_recipes.plan_runs(rows, 25)}
    assert "lamb_lr0.01_b8192_s0_e25" in names
    assert not any(n.startswith("lars_") and "_b8192_" in n for n in names)


def test_best_recipe_is_the_smallest_gap_among_those_at_98_9():
    rows = []
    means = {  # recipe: (128 mean, 8192 mean)
        "adam": (0.990, 0.982), "adamw": (0.990, 0.985),
        "lamb": (0.987, 0.987), "lars": (0.989, 0.983),
        "momentum": (0.991, 0.980)}
    for recipe, (base, large) in means.items():
        lr = mnist_recipes.TUNING_GRID[recipe][0]
        for other in mnist_recipes.TUNING_GRID[recipe][1:]:
            rows.append(_recipe_row(recipe, other, 128, 0, 0.5))
        for seed in (0, 1):
            rows.append(_recipe_row(recipe, lr, 128, seed, base))
            rows.append(_recipe_row(recipe, lr, 8192, seed, large))
    # lamb keeps accuracy best but misses 98.9 at 128; adamw's gap is -0.5.
    assert mnist_recipes.best_recipe(rows, 25) == (
        "adamw", mnist_recipes.TUNING_GRID["adamw"][0])
    assert mnist_recipes.best_recipe(rows[:-1], 25) is None  # a run missing


def test_b_noise_is_the_median_of_finite_estimates(tmp_path):
    path = tmp_path / "noise.csv"
    path.write_text("batch_size,epoch,step,noise_scale,test_accuracy\n"
                    "128,1,469,200.0,0.9\n128,2,938,nan,0.9\n"
                    "128,3,1407,900.0,0.9\n128,4,1875,400.0,0.9\n"
                    "8192,1,8,5.0,0.5\n")
    assert mnist_recipes.measured_b_noise(str(path)) == 400.0


def test_gpu_report_batches_cover_each_epoch_once_and_straddle():
    x = np.arange(10)
    batches = gpu_report.mnist_batches(x, x, 4, seed=0)
    seen = np.concatenate([next(batches)[1] for _ in range(5)])  # 2 epochs
    assert sorted(seen[:10]) == list(range(10))
    assert sorted(seen[10:]) == list(range(10))


def test_ptb_budget_table_compares_each_row_with_both_base_runs():
    from bench import sequence_plots

    rows = [dict(schedule=s, batch_size=b, epochs=e, test_perplexity=p,
                 steps=n, wall_seconds=w)
            for s, b, e, p, n, w in [
                ("legw", "320", "13.0", "103.0", "1885", "900"),
                ("autowu", "20", "13.0", "110.0", "30199", "4200"),
                ("legw", "20", "13.0", "125.0", "30199", "4100"),
                ("reference", "20", "13.0", "100.0", "30199", "4000.4"),
                ("legw", "320", "3.0", "333.65", "435", "616")]]
    rows[1].update(warmup_steps="6969", peak_learning_rate="2.5")
    lines = sequence_plots.ptb_budget_table(rows, 13.0).splitlines()
    assert len(lines) == 6  # header, rule, the four 13-epoch rows
    assert lines[2] == ("| reference | 20 | 1 | 0 | 30199 | 100.00 | +0.0% "
                        "| -20.0% | 4000 |")
    # 16x: peak 1.0 x sqrt(16), warmup 0.1 x 16; 103 / 100 and 103 / 125.
    assert lines[4] == ("| LEGW | 320 (16x) | 4 | 1.6 | 1885 | 103.00 | "
                        "+3.0% | -17.6% | 900 |")
    # AutoWarmup's decision: 6969 of 30199 steps of 13 epochs = 3 epochs.
    assert lines[5] == ("| AutoWarmup | 20 | 2.5 | 3 | 30199 | 110.00 | "
                        "+10.0% | -12.0% | 4200 |")
    # A tuned warmup's table: its own LEGW rows, against its own batch-20
    # run and the tutorial's (which has no warmup); no AutoWarmup.
    rows += [dict(rows[0], base_warmup_epochs="0.025", test_perplexity="110"),
             dict(rows[2], base_warmup_epochs="0.025", test_perplexity="120")]
    lines = sequence_plots.ptb_budget_table(rows, 13.0, 0.025).splitlines()
    assert lines[2:] == [
        "| reference | 20 | 1 | 0 | 30199 | 100.00 | +0.0% | -16.7% | 4000 |",
        "| LEGW | 20 | 1 | 0.025 | 30199 | 120.00 | +20.0% | +0.0% | 4100 |",
        "| LEGW | 320 (16x) | 4 | 0.4 | 1885 | 110.00 | +10.0% | -8.3% | 900 |"]
    assert len(sequence_plots.ptb_budget_table(rows, 13.0).splitlines()) == 6


def test_autowu_plan_runs_the_zoo_schedule_with_one_rate_range(monkeypatch):
    """Four runs (128 and 8192, two seeds), each `--schedule=autowu` with
    the same min and max rate, as the GPU callback runs used."""
    calls = []
    monkeypatch.setattr(sweep_runner, "run_in_child",
                        lambda module, kwargs: calls.append((module, kwargs)))
    plan = mnist_sweep.plan_runs("autowu", 25)
    assert sorted((s["batch_size"], s["seed"], s.get("check_every_epochs", 0))
                  for s in plan) == [
        (128, 0, 0), (128, 0, 0.1), (128, 1, 0), (128, 1, 0.1),
        (8192, 0, 0), (8192, 0, 0.1), (8192, 1, 0), (8192, 1, 0.1)]
    assert len({mnist_sweep.run_name(s) for s in plan}) == 8
    for spec in plan:
        mnist_sweep.run_one(spec, "runs/x", None)
    assert {c[0] for c in calls} == {"mnist_lstm"}
    assert all(c[1]["schedule"] == "autowu" and c[1]["min_learning_rate"]
               == 1e-5 and c[1]["max_learning_rate"] == 0.1 for c in calls)
    legw = mnist_sweep.plan_runs("claim", 25)[0]
    mnist_sweep.run_one(legw, "runs/x", None)
    assert calls[-1][1]["schedule"] == "legw"
    assert "max_learning_rate" not in calls[-1][1]


def test_mnist_curves_keep_the_runs_no_longer_on_disk(tmp_path):
    """Regenerating the curves on a machine with some runs only replaces
    those runs' rows; the others stay."""
    import json

    curves = tmp_path / "curves.csv"
    curves.write_text("run,epoch,step,train_seconds,test_accuracy\n"
                      "legw_b128_s0_e25,1.0,469,10.5,0.95\n"
                      "autowu_b128_s0_e25,1.0,469,9.0,0.5\n")
    run = tmp_path / "runs" / "autowu_b128_s0_e25"
    run.mkdir(parents=True)
    (run / "history.json").write_text(json.dumps([dict(
        epoch=1.0, step=469, train_seconds=11.0,
        metrics=dict(test_accuracy=0.9))]))
    mnist_plots.export_curves(str(tmp_path / "runs"), str(curves))
    assert curves.read_text().splitlines()[1:] == [
        "autowu_b128_s0_e25,1.0,469,11.0,0.9",
        "legw_b128_s0_e25,1.0,469,10.5,0.95"]


def test_gnmt_sweep_trains_1024_in_micro_batches_and_records_memory(
        tmp_path, monkeypatch):
    """Batches above 512 go in micro-batches of 512; each row has the
    accumulation, the base and the child's peak memory (empty when the child
    found the run finished and trained nothing); the base is models.gnmt's
    unless named, and a sweep at another base trains its own runs."""

    from bench import gnmt_sweep
    from models import gnmt

    calls = []

    def fake_run(module, kwargs):
        calls.append(kwargs)
        resumed = 10 if kwargs["batch_size"] == 128 else 0
        return dict(test_bleu=20.0, test_perplexity=9.0, steps=10,
                    resumed_from_step=resumed, train_seconds=5.0,
                    tokens_per_second=100.0, peak_rss_gib=13.44)

    monkeypatch.setattr(sweep_runner, "run_in_child", fake_run)
    csv_path = tmp_path / "gnmt.csv"
    arguments = ["gnmt_sweep", "--epochs=2", f"--csv={csv_path}",
                 f"--runs_dir={tmp_path / 'runs'}", "--batch_sizes=128,1024"]
    monkeypatch.setattr(sys, "argv", arguments)
    gnmt_sweep.main()
    monkeypatch.setattr(sys, "argv", arguments + ["--dropout=0.3"])
    gnmt_sweep.main()
    gnmt_sweep.main()
    rate, dropout = (gnmt.BASE["base_learning_rate"],
                     gnmt.CONFIGS["small"]["dropout"])
    assert [(c["batch_size"], c["gradient_accumulation_steps"],
             c["base_learning_rate"], c["dropout"]) for c in calls] == [
        (128, 1, rate, dropout), (1024, 2, rate, dropout),
        (128, 1, rate, 0.3), (1024, 2, rate, 0.3)]
    assert os.path.basename(calls[3]["model_dir"]) == \
        f"gnmt_small_legw_b1024_lr{rate:g}_d0.3_s0_e2"
    rows = sweep_runner.read_rows(str(csv_path))
    assert [(r["batch_size"], r["gradient_accumulation_steps"],
             r["peak_rss_gib"], r["dropout"]) for r in rows] == [
        ("128", "1", "", str(dropout)), ("1024", "2", "13.4", str(dropout)),
        ("128", "1", "", "0.3"), ("1024", "2", "13.4", "0.3")]
    assert [gnmt_sweep.accumulation_steps(b) for b in (128, 512, 513, 2048)] \
        == [1, 1, 2, 4]


def test_ptb_autowu_plan_passes_its_range_and_cadence_and_records_them(
        tmp_path, monkeypatch):
    from bench import ptb_sweep

    calls = _fake_training(
        monkeypatch, test_perplexity=120.0, steps=1885, train_seconds=5.0,
        tokens_per_second=100.0, warmup_steps=700, peak_learning_rate=2.5,
        peak_rss_gib=3.0)
    csv_path = tmp_path / "ptb.csv"
    _run_sweep(monkeypatch, ptb_sweep, "--epochs=13", "--plan=autowu",
               f"--csv={csv_path}", f"--runs_dir={tmp_path / 'runs'}",
               "--batch_sizes=320")
    assert len(calls) == 1 and calls[0]["batch_size"] == 320
    assert (calls[0]["schedule"], calls[0]["min_learning_rate"],
            calls[0]["max_learning_rate"], calls[0]["check_every_epochs"]) \
        == ("autowu", 0.01, 10.0, 0.1)
    row, = sweep_runner.read_rows(str(csv_path))
    assert (row["check_every_epochs"], row["warmup_steps"],
            row["peak_learning_rate"]) == ("0.1", "700", "2.5")


def test_ptb_sweep_at_a_tuned_warmup_trains_legw_alone_under_its_name(
        tmp_path, monkeypatch):
    """--base_warmup_epochs passes the warmup to every LEGW run, names the
    runs as bench.ptb_tuning names its candidates, records it, and trains
    no tutorial-schedule run (it has no warmup); a rerun trains nothing;
    AutoWarmup refuses it."""
    from bench import ptb_sweep

    calls = _fake_training(monkeypatch, test_perplexity=120.0, steps=1885,
                           train_seconds=5.0, tokens_per_second=100.0)
    csv_path = tmp_path / "ptb.csv"
    argv = ["--epochs=13", f"--csv={csv_path}",
            f"--runs_dir={tmp_path / 'runs'}", "--base_warmup_epochs=0.025"]
    _run_sweep(monkeypatch, ptb_sweep, *argv)
    _run_sweep(monkeypatch, ptb_sweep, *argv)
    assert sorted((c["schedule"], c["batch_size"], c["base_warmup_epochs"],
                   os.path.basename(c["model_dir"])) for c in calls) == [
        ("legw", b, 0.025, f"ptb_small_legw_b{b}_w0.025_s0_e13")
        for b in (20, 80, 320, 1280)]
    rows = sweep_runner.read_rows(str(csv_path))
    assert {r["base_warmup_epochs"] for r in rows} == {"0.025"}
    with pytest.raises(SystemExit, match="--plan=legw"):
        _run_sweep(monkeypatch, ptb_sweep, *argv, "--plan=autowu")
    # The frozen warmup named explicitly is the frozen sweep, not a new one.
    calls.clear()
    _run_sweep(monkeypatch, ptb_sweep, *argv[:-1], "--base_warmup_epochs=0.1",
               "--batch_sizes=20")
    assert sorted((c["schedule"], os.path.basename(c["model_dir"]))
                  for c in calls) == [
        ("legw", "ptb_small_legw_b20_s0_e13"),
        ("reference", "ptb_small_reference_b20_s0_e13")]


def test_gnmt_length_penalty_is_chosen_on_val_at_the_base_batch_only(
        tmp_path, monkeypatch):
    """Val at every alpha for batch 128, then test for each trained batch at
    0 and at the alpha of the best val BLEU, all within the sweep's epochs
    and base; a rerun adds nothing; ties go to the smaller alpha."""

    from bench import gnmt_length_penalty as lp

    val_bleu = {0.0: 20.0, 0.2: 21.0, 0.4: 23.5, 0.6: 23.0, 0.8: 22.0,
                1.0: 21.0}
    calls = []

    def fake_row(model_dir, split, alpha, data_dir):
        calls.append((os.path.basename(model_dir), split, alpha))
        bleu = val_bleu[alpha] if split == "val" else 30.0
        return dict(split=split, length_penalty=alpha, bleu=bleu,
                    sacrebleu=bleu, length_ratio=1.0)

    monkeypatch.setattr(lp, "translation_row", fake_row)
    sweep_csv = tmp_path / "gnmt.csv"
    columns = ["schedule", "batch_size", "epochs", "base_learning_rate",
               "dropout"]
    for batch, epochs, rate, dropout in (
            (128, 13.0, 0.003, 0.1), (512, 13.0, 0.003, 0.1),
            (1024, 13.0, 0.003, 0.1), (4096, 5.0, 0.003, 0.1),
            (2048, 13.0, 0.002, 0.1), (256, 13.0, 0.003, 0.2)):
        sweep_runner.append_row(str(sweep_csv), columns, dict(
            schedule="legw", batch_size=batch, epochs=epochs,
            base_learning_rate=rate, dropout=dropout))
    csv_path = tmp_path / "lp.csv"
    monkeypatch.setattr(sys, "argv", [
        "gnmt_length_penalty", "--epochs=13", f"--csv={csv_path}",
        f"--sweep_csv={sweep_csv}", f"--runs_dir={tmp_path}",
        "--base_learning_rate=0.003", "--dropout=0.1"])
    lp.main()
    assert calls == [("gnmt_small_legw_b128_lr0.003_d0.1_s0_e13", "val", a)
                     for a in lp.ALPHAS] + [
        (f"gnmt_small_legw_b{b}_lr0.003_d0.1_s0_e13", "test", a)
        for b in (128, 512, 1024) for a in (0.0, 0.4)]
    lp.main()
    assert len(calls) == 12
    rows = sweep_runner.read_rows(str(csv_path))
    assert len(rows) == 12
    assert {(r["base_learning_rate"], r["dropout"]) for r in rows} == {
        ("0.003", "0.1")}
    assert lp.best_alpha(rows, 13.0, (0.003, 0.1)) == 0.4
    assert lp.best_alpha(rows, 13.0, (0.003, 0.2)) is None
    ties = [dict(split="val", epochs="13.0", base_learning_rate="0.003",
                 dropout="0.1", length_penalty=str(a), bleu="22")
            for a in lp.ALPHAS]
    assert lp.best_alpha(ties, 13.0, (0.003, 0.1)) == 0.0
    assert lp.best_alpha(ties[1:], 13.0, (0.003, 0.1)) is None


def test_gnmt_budget_table_pairs_each_run_with_its_length_penalty_row():
    """One table per (epochs, base): the peak is the row base's rate times
    sqrt(k), and rows or penalties of another budget or base stay out."""
    from bench import sequence_plots
    from bench.gnmt_length_penalty import ALPHAS

    rows = [dict(schedule="legw", batch_size=b, epochs=e, steps=s,
                 test_perplexity=p, test_bleu=u, wall_seconds=w,
                 gradient_accumulation_steps=a, peak_rss_gib=m,
                 base_learning_rate=r, dropout=d)
            for b, e, s, p, u, w, a, m, r, d in (
                ("512", "13.0", "737", "20.5", "21.0", "5000.4", "1", "8.1",
                 "0.003", "0.1"),
                ("128", "13.0", "2951", "16.0", "24.5", "6000", "", "",
                 "0.003", "0.1"),
                ("128", "13.0", "2946", "17.6", "14.6", "6009", "1", "4.5",
                 "0.002", "0.2"),
                ("128", "5", "1133", "38.65", "7.03", "1845.2", "", "",
                 "0.003", "0.1"))]
    penalties = [dict(batch_size="128", epochs="13.0", split="val",
                      base_learning_rate=r, dropout="0.1",
                      length_penalty=str(a), bleu=str(20 + (a == best)),
                      sacrebleu="0", length_ratio="1")
                 for r, best in (("0.003", 0.6), ("0.002", 0.2))
                 for a in ALPHAS]
    penalties += [dict(batch_size="128", epochs="13.0", split="test",
                       base_learning_rate=r, dropout="0.1", length_penalty=a,
                       bleu=u, sacrebleu=c, length_ratio=q)
                  for r, a, u, c, q in (
                      ("0.003", "0.0", "24.5", "24.51", "0.9"),
                      ("0.003", "0.6", "26.1", "26.12", "0.98"),
                      ("0.002", "0.0", "1.5", "1.51", "0.5"))]
    assert sequence_plots.gnmt_sweeps(rows) == [
        (5.0, (0.003, 0.1)), (13.0, (0.002, 0.2)), (13.0, (0.003, 0.1))]
    lines = sequence_plots.gnmt_budget_table(
        rows, penalties, 13.0, (0.003, 0.1)).split("\n")
    assert "BLEU at the val-chosen alpha 0.6 (sacrebleu)" in lines[0]
    assert lines[2:] == [
        "| 128 | 0.003 | 0.25 | 2951 | 16.00 | 24.50 (24.51) | 26.10 (26.12) "
        "| 0.98 | 6000 | 1 |  |",
        "| 512 (4x) | 0.006 | 1 | 737 | 20.50 | 21.00 |  |  | 5000 | 1 "
        "| 8.1 |"]


def test_run_label_reads_names_with_and_without_a_base():
    from bench import sequence_plots

    assert sequence_plots.run_label("ptb_small_legw_b80_s0_e3") == (
        "legw", 80, None, "LEGW (sqrt, warmup x k), batch 80 (3 epochs)")
    assert sequence_plots.run_label(
        "gnmt_small_legw_b512_lr0.004_d0.1_s0_e13")[:3] == (
        "legw", 512, ("0.004", "0.1"))
    assert sequence_plots.run_label(
        "gnmt_small_legw_b512_lr0.004_d0.1_s0_e13")[3].endswith(
        "batch 512 (13 epochs, base rate 0.004, dropout 0.1)")
    assert sequence_plots.run_label("ptb_small_legw_b20_w0.025_s0_e13") == (
        "legw", 20, ("0.025",), "LEGW (sqrt, warmup x k), batch 20 "
        "(13 epochs, base warmup 0.025 epochs)")
    with pytest.raises(ValueError, match="not a sweep's run name"):
        sequence_plots.run_label("gnmt_small_b512")


def test_ptb_tuning_trains_each_warmup_at_20_and_records_valid_perplexity(
        tmp_path, monkeypatch):
    """Every base warmup of the grid trains LEGW at batch 20 with that
    warmup; the frozen one (0.1) is the sweep's own batch-20 run; each row
    carries the valid perplexity of its own run; a rerun trains nothing."""
    from bench import ptb_sweep, ptb_tuning
    from models import ptb_lstm

    calls = _fake_training(monkeypatch, test_perplexity=120.0, steps=30199,
                           train_seconds=5.0, tokens_per_second=100.0)
    evaluated = []

    def fake_perplexity(model_dir, split, data_dir=None):
        evaluated.append((os.path.basename(model_dir), split))
        return 120.0 + len(evaluated)

    monkeypatch.setattr(ptb_lstm, "perplexity_of_trained", fake_perplexity)
    csv_path = tmp_path / "tuning.csv"
    argv = ["--epochs=13", f"--csv={csv_path}",
            f"--runs_dir={tmp_path / 'runs'}", "--warmups=0.025,0.1"]
    _run_sweep(monkeypatch, ptb_tuning, *argv)
    _run_sweep(monkeypatch, ptb_tuning, *argv)
    assert [(c["module"], c["schedule"], c["batch_size"],
             c["base_warmup_epochs"], c["epochs"]) for c in calls] == [
        ("ptb_lstm", "legw", 20, 0.025, 13.0),
        ("ptb_lstm", "legw", 20, 0.1, 13.0)]
    assert [os.path.basename(c["model_dir"]) for c in calls] == [
        name for name, _ in evaluated] == [
        "ptb_small_legw_b20_w0.025_s0_e13",
        ptb_sweep.run_name("legw", 20, 0, 13)]
    assert {split for _, split in evaluated} == {"valid"}
    rows = sweep_runner.read_rows(str(csv_path))
    assert [(r["base_warmup_epochs"], r["valid_perplexity"],
             r["test_perplexity"]) for r in rows] == [
        ("0.025", "121.0", "120.0"), ("0.1", "122.0", "120.0")]


def test_ptb_tuning_table_ranks_warmups_by_valid_perplexity():
    from bench import sequence_plots

    def row(warmup, valid, test, epochs="13.0"):
        return dict(base_warmup_epochs=warmup, epochs=epochs,
                    valid_perplexity=valid, test_perplexity=test,
                    wall_seconds="4316.2")

    # Test perplexities in the other order: the choice is on valid alone.
    rows = [row("0.1", "126.26", "122.466"), row("0.025", "125.5", "123"),
            row("0.4", "127", "121"), row("0.2", "100", "99", epochs="3.0")]
    assert sequence_plots.ptb_tuning_table(rows, 13.0).split("\n")[2:] == [
        "| 0.025 | 58 | 125.50 | 123.00 | 4316 |",
        "| 0.1 | 232 | 126.26 | 122.47 | 4316 |",
        "| 0.4 | 929 | 127.00 | 121.00 | 4316 |"]


def test_gnmt_tuning_trains_each_candidate_at_128_and_records_val_bleu(
        tmp_path, monkeypatch):
    """Every (rate, dropout) of the grid trains at the base batch with that
    rate and dropout, its row carries the val BLEU of its own run, and a
    rerun trains nothing again."""
    from bench import gnmt_tuning
    from models import gnmt

    calls = _fake_training(monkeypatch, test_bleu=20.0, test_perplexity=9.0,
                           steps=10, train_seconds=5.0,
                           tokens_per_second=100.0, peak_rss_gib=4.0)
    translated = []

    def fake_translate(model_dir, split, data_dir=None):
        translated.append((os.path.basename(model_dir), split))
        return 10.0 + len(translated), []

    monkeypatch.setattr(gnmt, "translate_trained", fake_translate)
    csv_path = tmp_path / "tuning.csv"
    argv = ["--epochs=13", f"--csv={csv_path}",
            f"--runs_dir={tmp_path / 'runs'}", "--learning_rates=0.002,0.004",
            "--dropouts=0.1"]
    _run_sweep(monkeypatch, gnmt_tuning, *argv)
    _run_sweep(monkeypatch, gnmt_tuning, *argv)
    assert [(c["batch_size"], c["base_learning_rate"], c["dropout"],
             c["epochs"]) for c in calls] == [(128, 0.002, 0.1, 13.0),
                                              (128, 0.004, 0.1, 13.0)]
    assert [os.path.basename(c["model_dir"]) for c in calls] == [
        name for name, _ in translated] == [
        "gnmt_small_legw_b128_lr0.002_d0.1_s0_e13",
        "gnmt_small_legw_b128_lr0.004_d0.1_s0_e13"]
    assert {split for _, split in translated} == {"val"}
    rows = sweep_runner.read_rows(str(csv_path))
    assert [(r["base_learning_rate"], r["val_bleu"], r["test_bleu"])
            for r in rows] == [("0.002", "11.0", "20.0"),
                               ("0.004", "12.0", "20.0")]


def test_gnmt_tuning_table_ranks_candidates_and_the_sweeps_base_by_val():
    """Candidates by val BLEU; a sweep's base-batch run at a base not tuned
    joins with its val BLEU at alpha 0; other budgets, batches and alphas
    stay out."""
    from bench import sequence_plots

    def row(rate, dropout, epochs="13.0", batch="128", **values):
        return dict(dict(base_learning_rate=rate, dropout=dropout,
                         epochs=epochs, batch_size=batch, test_bleu="20",
                         test_perplexity="12", wall_seconds="4000.4"),
                    **values)

    tuning = [row("0.004", "0.1", val_bleu="22.04"),
              row("0.006", "0.1", val_bleu="22.85", test_bleu="23.1"),
              row("0.008", "0.1", epochs="5", val_bleu="30")]
    sweep = [row("0.002", "0.2", test_bleu="14.56"),
             row("0.002", "0.2", batch="512", test_bleu="9"),
             row("0.006", "0.1", test_bleu="99"),
             row("0.003", "0.3")]
    penalties = [row("0.002", "0.2", split=s, length_penalty=a, bleu=b)
                 for s, a, b in (("val", "0.6", "15.08"),
                                 ("test", "0.0", "14.56"),
                                 ("val", "0.0", "14.98"))]
    lines = sequence_plots.gnmt_tuning_table(tuning, sweep, penalties, 13.0)
    assert lines.split("\n")[2:] == [
        "| 0.006 | 0.1 | 22.85 | 23.10 | 12.00 | 4000 |",
        "| 0.004 | 0.1 | 22.04 | 20.00 | 12.00 | 4000 |",
        "| 0.002 | 0.2 | 14.98 | 14.56 | 12.00 | 4000 |",
        "| 0.003 | 0.3 |  | 20.00 | 12.00 | 4000 |"]
