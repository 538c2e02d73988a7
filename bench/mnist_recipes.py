"""MNIST-LSTM recipe study: which optimizer keeps accuracy at 64x with LEGW
when only the base batch (128) is tuned.

    python -m bench.mnist_recipes                       # every run, in order
    python -m bench.mnist_recipes --workers=2           # two runs at a time

For each recipe (optimizer): its base learning rate is tuned at batch 128
only (seed 0, 25 epochs, the values of TUNING_GRID) and frozen at the best
test accuracy; then LEGW trains at 2048 and 8192 with no retuning, with two
seeds at 128 and at 8192. Then, for the best recipe (the smallest gap from
8192 to 128 among those whose 128 mean is at least 98.9%; else the best 8192
mean), two extra axes, still tuned at 128 only:
  noise     the peak rule of McCandlish et al. (`scaling="noise"`) with
            B_noise the median of the per-epoch noise scales measured at 128
            (docs/results/mnist_lstm_noise_scale.csv, `python -m
            bench.noise_scale_curve --model=mnist_lstm`);
  smoothing label smoothing, its value tuned at 128 (LABEL_SMOOTHINGS).

Each finished run is appended at once to `--csv`; runs already there are
skipped, so rerunning continues the study. A run that diverges is a row with
status "diverged" and no accuracy. Columns: recipe, optimizer,
base_learning_rate, batch_size, seed, epochs, test_accuracy,
final_train_loss (the mean training loss of the last compiled loop, at most
100 steps), steps, wall_seconds (training seconds), seconds_to_98, status,
and the recipe's extra arguments (b_noise, label_smoothing).
"""

import argparse
import math
import os
import statistics
import threading

from bench import sweep_runner
from bench.mnist_sweep import seconds_to
from models.common.flags import NON_FINITE_LOSS_STATUS

CSV = "docs/results/mnist_lstm_recipes.csv"
NOISE_CSV = "docs/results/mnist_lstm_noise_scale.csv"
COLUMNS = ["recipe", "optimizer", "base_learning_rate", "batch_size", "seed",
           "epochs", "test_accuracy", "final_train_loss", "steps",
           "wall_seconds", "seconds_to_98", "status", "b_noise",
           "label_smoothing"]
# Base learning rates tried at batch 128 (at most 3 each), the first is the
# guess from the optimizer's usual scale; Adam's 0.002 was tuned before
# (docs/results/mnist_lstm_base_tuning.csv: 0.002 over 0.001).
TUNING_GRID = {
    "adam": (0.002,),
    "lamb": (0.01, 0.003, 0.03),
    "lars": (2.0, 0.5, 8.0),
    "momentum": (0.2, 0.05, 0.8),
    "adamw": (0.002, 0.004),
}
LABEL_SMOOTHINGS = (0.1,)
TARGET_BASE_ACCURACY = 0.989
BASE_BATCH, SCALED_BATCHES = 128, (2048, 8192)


def run_name(spec):
    extra = "".join(f"_{k}{float(spec[k]):g}"
                    for k in ("b_noise", "label_smoothing") if spec.get(k))
    return (f"{spec['recipe']}_lr{float(spec['base_learning_rate']):g}"
            f"_b{spec['batch_size']}_s{spec['seed']}"
            f"_e{float(spec['epochs']):g}{extra}")


def _float(value):
    return float(value) if value not in ("", None) else None


def tuned_rate(rows, recipe, grid):
    """The frozen base rate of `recipe`: the best batch-128 seed-0 accuracy
    over `grid`; None until every grid value has a row."""
    tried = {float(r["base_learning_rate"]): _float(r["test_accuracy"])
             for r in rows if r["recipe"] == recipe
             and int(r["batch_size"]) == BASE_BATCH and int(r["seed"]) == 0}
    if any(lr not in tried for lr in grid):
        return None
    scores = {lr: acc for lr, acc in tried.items()
              if lr in grid and acc is not None}
    return max(scores, key=scores.get) if scores else None


def recipe_means(rows, recipe, base_learning_rate):
    """{batch: mean test accuracy} of `recipe` at its frozen rate."""
    by_batch = {}
    for r in rows:
        if r["recipe"] == recipe and _float(r["base_learning_rate"]) == \
                base_learning_rate and _float(r["test_accuracy"]) is not None:
            by_batch.setdefault(int(r["batch_size"]), []).append(
                float(r["test_accuracy"]))
    return {b: statistics.mean(v) for b, v in by_batch.items()}


def best_recipe(rows, epochs):
    """The recipe (and its rate) that best keeps accuracy at 8192, or None
    while some core recipe lacks its two seeds at 128 and 8192."""
    candidates = []
    for recipe, grid in TUNING_GRID.items():
        rate = tuned_rate(rows, recipe, grid)
        if rate is None:
            return None
        runs = [r for r in rows if r["recipe"] == recipe
                and _float(r["base_learning_rate"]) == rate
                and float(r["epochs"]) == epochs]
        done = {(int(r["batch_size"]), int(r["seed"])) for r in runs}
        if not {(BASE_BATCH, 0), (BASE_BATCH, 1), (8192, 0), (8192, 1)} <= done:
            return None
        means = recipe_means(runs, recipe, rate)
        base, large = means.get(BASE_BATCH), means.get(8192)
        if base is None or large is None:
            continue
        meets = base >= TARGET_BASE_ACCURACY
        candidates.append(((meets, large - base if meets else large),
                           recipe, rate))
    return max(candidates)[1:] if candidates else None


def measured_b_noise(path=NOISE_CSV):
    """B_noise at batch 128: the median of the finite per-epoch estimates."""
    values = [float(r["noise_scale"]) for r in sweep_runner.read_rows(path)
              if int(r["batch_size"]) == BASE_BATCH
              and math.isfinite(float(r["noise_scale"]))]
    return round(statistics.median(values), 1)


def plan_runs(rows, epochs):
    """The runs that can start now, given the finished `rows`: tuning first,
    then the scaled runs of each tuned recipe (the two ends and the second
    seeds before 2048), then the best recipe's extra axes."""
    spec = lambda recipe, lr, batch, seed, **extra: dict(  # noqa: E731
        recipe=recipe, optimizer=recipe.split("+")[0], base_learning_rate=lr,
        batch_size=batch, seed=seed, epochs=epochs, **extra)
    runs = [spec(recipe, lr, BASE_BATCH, 0)
            for i in range(max(map(len, TUNING_GRID.values())))
            for recipe, grid in TUNING_GRID.items() if i < len(grid)
            for lr in [grid[i]]]
    order = [(8192, 0), (BASE_BATCH, 1), (8192, 1), (2048, 0)]
    for batch, seed in order:
        for recipe, grid in TUNING_GRID.items():
            rate = tuned_rate(rows, recipe, grid)
            if rate is not None:
                runs.append(spec(recipe, rate, batch, seed))
    best = best_recipe(rows, epochs)
    if best:
        recipe, rate = best
        b_noise = measured_b_noise()
        for batch, seed in order:
            if batch != BASE_BATCH:
                runs.append(spec(f"{recipe}+noise", rate, batch, seed,
                                 scaling="noise", b_noise=b_noise))
        runs += [spec(f"{recipe}+smoothing", rate, BASE_BATCH, 0,
                      label_smoothing=ls) for ls in LABEL_SMOOTHINGS]
        smoothing_rows = [r for r in rows
                          if r["recipe"] == f"{recipe}+smoothing"
                          and int(r["batch_size"]) == BASE_BATCH]
        if len(smoothing_rows) >= len(LABEL_SMOOTHINGS):
            ls = float(max(smoothing_rows, key=lambda r: _float(
                r["test_accuracy"]) or 0.0)["label_smoothing"])
            runs += [spec(f"{recipe}+smoothing", rate, batch, seed,
                          label_smoothing=ls) for batch, seed in order]
    return runs


def run_one(spec, runs_dir, data_dir):
    """Trains one run in a child process; returns its CSV row."""
    kwargs = dict(optimizer=spec["optimizer"],
                  base_learning_rate=spec["base_learning_rate"],
                  batch_size=spec["batch_size"], seed=spec["seed"],
                  epochs=spec["epochs"], data_dir=data_dir, verbose=0,
                  model_dir=os.path.join(runs_dir, run_name(spec)))
    for key in ("scaling", "b_noise", "label_smoothing"):
        if key in spec:
            kwargs[key] = spec[key]
    row = {k: spec.get(k, "") for k in COLUMNS}
    try:
        results = sweep_runner.run_in_child("mnist_lstm", kwargs)
    except sweep_runner.ChildFailed as error:
        if error.returncode != NON_FINITE_LOSS_STATUS:
            raise
        return dict(row, status="diverged")
    to_98 = seconds_to(results["history"], 0.98)
    return dict(row, test_accuracy=results["test_accuracy"],
                final_train_loss=f"{results['final_loss']:.4g}",
                steps=results["steps"],
                wall_seconds=round(results["train_seconds"], 1),
                seconds_to_98="" if to_98 is None else round(to_98, 1),
                status="ok")


def work(args, lock, started):
    """One worker: takes the next run nobody has started, until none can
    start (the rest wait on runs still going) and none are going."""
    while True:
        with lock:
            rows = sweep_runner.read_rows(args.csv)
            done = {run_name(r) for r in rows}
            todo = [s for s in plan_runs(rows, args.epochs)
                    if run_name(s) not in done | started]
            if not todo:
                if not started:
                    return
                spec = None
            else:
                spec = todo[0]
                started.add(run_name(spec))
        if spec is None:
            threading.Event().wait(20)  # another worker's run unlocks more
            continue
        row = run_one(spec, args.runs_dir, args.data_dir)
        with lock:
            sweep_runner.append_row(args.csv, COLUMNS, row)
            started.discard(run_name(spec))
        print(f"{run_name(spec)}: {row['status']} test_accuracy "
              f"{row['test_accuracy']} train_loss {row['final_train_loss']} "
              f"{row['wall_seconds']} s", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=float, default=25)
    parser.add_argument("--workers", type=int, default=1,
                        help="runs trained at the same time")
    parser.add_argument("--csv", default=CSV)
    parser.add_argument("--runs_dir", default="runs/recipes")
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()
    lock, started = threading.Lock(), set()
    threads = [threading.Thread(target=work, args=(args, lock, started))
               for _ in range(args.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
