"""MNIST-LSTM sweeps: batch size x schedule x seed x epoch budget.

    python -m bench.mnist_sweep --plan=tuning      # base hyperparameters, batch 128
    python -m bench.mnist_sweep --plan=claim       # issue 4: 128..8192, 4 schedules
    python -m bench.mnist_sweep --plan=budget      # 128 vs 8192 at 2x and 4x epochs
    python -m bench.mnist_sweep --plan=autowu      # AutoWarmup at 128 and 8192

Each finished run is appended at once to its CSV (`--csv`), so a stop loses
nothing; runs already in the CSV are skipped, so rerunning the command
continues the sweep. Each run trains in its own process (a fresh TensorFlow)
with `models.mnist_lstm.run`, in `--runs_dir/<name>` (a restarted run resumes
from its checkpoint).

Columns: schedule, batch_size, seed, epochs, test_accuracy, steps,
wall_seconds (training seconds, evaluation excluded), seconds_to_98
(training seconds until the test accuracy first reached 98%, empty if never);
the tuning plan (`mnist_lstm_base_tuning.csv`) adds optimizer and
base_learning_rate. The autowu plan's rows go into the sweep's CSV with
schedule=autowu and fill its check_every_epochs (empty: a test at each
epoch end, as published), warmup_steps and peak_learning_rate columns
(AutoWarmup's decision; Adam, rates 1e-5 to 0.1 at both batches, as the GPU
callback runs in gpu_autowarmup.csv); the other schedules leave them empty.
"""

import argparse
import os

from bench import sweep_runner

# The claim's schedules: keras_legw recipes, each the zoo's --schedule.
CLAIM_SCHEDULES = ("legw", "goyal", "sqrt_constant_warmup", "no_scaling")
# run() keyword arguments a label adds to --schedule=<label>.
EXTRA_ARGUMENTS = {"autowu": dict(min_learning_rate=1e-5,
                                  max_learning_rate=0.1)}
COLUMNS = ["schedule", "batch_size", "seed", "epochs", "test_accuracy",
           "steps", "wall_seconds", "seconds_to_98"]
TUNING_COLUMNS = COLUMNS + ["optimizer", "base_learning_rate"]
AUTOWU_COLUMNS = COLUMNS + list(sweep_runner.AUTOWU_COLUMNS)


def plan_runs(plan, epochs):
    """The list of run specs (dicts) of a plan."""
    if plan == "tuning":
        return [dict(schedule="legw", batch_size=128, seed=0, epochs=epochs,
                     optimizer="adam", base_learning_rate=lr)
                for lr in (0.002, 0.001)]
    if plan == "claim":
        # At batch 128 (k = 1) every schedule is the same run: LEGW stands
        # for all four there.
        # Order: the claim's two ends with both seeds first, then the
        # intermediate batches, so that a stopped sweep has the key points.
        order = [(0, 128), (0, 8192), (1, 128), (1, 8192), (0, 2048), (0, 512)]
        return [dict(schedule=label, batch_size=batch, seed=seed,
                     epochs=epochs)
                for seed, batch in order for label in CLAIM_SCHEDULES
                if batch != 128 or label == "legw"]
    if plan == "budget":
        return [dict(schedule=label, batch_size=batch, seed=0,
                     epochs=epochs * factor)
                for factor in (2, 4) for batch in (128, 8192)
                for label in ("legw", "sqrt_constant_warmup")
                if batch != 128 or label == "legw"]
    if plan == "autowu":
        # As published (a test at each epoch end), then every tenth of an
        # epoch: at 25 epochs the first leaves three tests between the loss
        # turning and the cap only if it turns three epochs before the cap.
        return [dict(schedule="autowu", batch_size=batch, seed=seed,
                     epochs=epochs, **cadence)
                for cadence in ({}, dict(check_every_epochs=0.1))
                for seed in (0, 1) for batch in (128, 8192)]
    raise ValueError(f"unknown plan {plan!r}")


# Plan keys beyond the claim's, each a run() argument and a CSV column that
# rows without it leave empty.
OPTIONAL_KEYS = ("optimizer", "base_learning_rate", "check_every_epochs")


def run_name(spec):
    extra = "".join(f"_{k}{spec[k]}" for k in OPTIONAL_KEYS if k in spec)
    return (f"{spec['schedule']}_b{spec['batch_size']}_s{spec['seed']}"
            f"_e{float(spec['epochs']):g}{extra}")


def _done(csv_path):
    """Names of the runs already in the CSV."""
    return {run_name({k: v for k, v in row.items() if v != ""
                      or k not in OPTIONAL_KEYS})
            for row in sweep_runner.read_rows(csv_path)}


def seconds_to(history, threshold):
    for entry in history:
        if entry["metrics"]["test_accuracy"] >= threshold:
            return entry["train_seconds"]
    return None


def run_one(spec, runs_dir, data_dir):
    """Trains one run in a child process and returns its results dict."""
    kwargs = dict(EXTRA_ARGUMENTS.get(spec["schedule"], {}),
                  schedule=spec["schedule"],
                  batch_size=spec["batch_size"], seed=spec["seed"],
                  epochs=spec["epochs"], model_dir=os.path.join(
                      runs_dir, run_name(spec)),
                  data_dir=data_dir, verbose=0)
    for key in OPTIONAL_KEYS:
        if key in spec:
            kwargs[key] = spec[key]
    return sweep_runner.run_in_child("mnist_lstm", kwargs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan", choices=["tuning", "claim", "budget", "autowu"],
                        required=True)
    parser.add_argument("--epochs", type=float, default=25)
    parser.add_argument("--csv", default=None)
    parser.add_argument("--runs_dir", default="runs/sweep")
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()
    csv_path = args.csv or {
        "tuning": "docs/results/mnist_lstm_base_tuning.csv",
    }.get(args.plan, "docs/results/mnist_lstm_sweep.csv")
    done = _done(csv_path)
    for spec in plan_runs(args.plan, args.epochs):
        name = run_name(spec)
        if name in done:
            continue
        results = run_one(spec, args.runs_dir, args.data_dir)
        to_98 = seconds_to(results["history"], 0.98)
        row = dict(schedule=spec["schedule"], batch_size=spec["batch_size"],
                   seed=spec["seed"], epochs=spec["epochs"],
                   test_accuracy=results["test_accuracy"],
                   steps=results["steps"],
                   wall_seconds=round(results["train_seconds"], 1),
                   seconds_to_98="" if to_98 is None else round(to_98, 1))
        columns = COLUMNS
        if args.plan == "tuning":
            columns = TUNING_COLUMNS
            row.update(optimizer=spec["optimizer"],
                       base_learning_rate=spec["base_learning_rate"])
        if args.plan == "autowu":
            columns = AUTOWU_COLUMNS
            row.update(sweep_runner.autowu_fields(results),
                       check_every_epochs=spec.get("check_every_epochs", ""))
        sweep_runner.append_row(csv_path, columns, row)
        done.add(name)
        print(f"{name}: test_accuracy {results['test_accuracy']:.4f}, "
              f"{results['steps']} steps, {results['train_seconds']:.0f} s",
              flush=True)


if __name__ == "__main__":
    main()
