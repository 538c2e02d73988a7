"""Plots and tables of the MNIST-LSTM sweeps (docs/results/).

    python -m bench.mnist_plots

Reads docs/results/mnist_lstm_sweep.csv and, where the runs are still on
disk, runs/sweep/*/history.json (copied into
docs/results/mnist_lstm_curves.csv so the curves survive), and writes:

  mnist_lstm_accuracy_vs_batch.png   test accuracy against batch size, one
                                     line per schedule (mean over seeds)
  mnist_lstm_lr_8192.png             the four schedules' learning rates at 8192
  mnist_lstm_accuracy_vs_time.png    accuracy against training time, 128 and 8192
  mnist_lstm_gap_vs_budget.png       accuracy gap (8192 minus 128) against
                                     the epoch budget

and prints the Markdown tables used in docs/results/mnist-lstm.md,
mnist-recipes.md and autowarmup.md.
"""

import collections
import csv
import glob
import json
import os

import numpy as np

from bench.plot_style import (SCHEDULE_COLORS, SCHEDULE_NAMES, plain_log_ticks,
                              recipe_color)

RESULTS = "docs/results"
SWEEP_CSV = os.path.join(RESULTS, "mnist_lstm_sweep.csv")
CURVES_CSV = os.path.join(RESULTS, "mnist_lstm_curves.csv")
RECIPES_CSV = os.path.join(RESULTS, "mnist_lstm_recipes.csv")
RUNS = "runs/sweep"
LABELS = {name: SCHEDULE_NAMES[name] for name in
          ("legw", "goyal", "sqrt_constant_warmup", "no_scaling")}
BASE = 128


def read_sweep(path=SWEEP_CSV):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["batch_size"] = int(row["batch_size"])
        row["seed"] = int(row["seed"])
        row["epochs"] = float(row["epochs"])
        row["test_accuracy"] = float(row["test_accuracy"])
        row["steps"] = int(row["steps"])
        row["wall_seconds"] = float(row["wall_seconds"])
        row["seconds_to_98"] = (float(row["seconds_to_98"])
                                if row["seconds_to_98"] else None)
    return rows


def export_curves(runs_dir=RUNS, curves_csv=CURVES_CSV):
    """Copies per-epoch histories of the sweep runs in `runs_dir` into
    `curves_csv`; runs no longer on disk keep their earlier rows."""
    columns = ["run", "epoch", "step", "train_seconds", "test_accuracy"]
    runs = collections.defaultdict(list)
    if os.path.exists(curves_csv):
        with open(curves_csv) as f:
            for row in csv.DictReader(f):
                runs[row["run"]].append([row[c] for c in columns])
    for path in sorted(glob.glob(os.path.join(runs_dir, "*", "history.json"))):
        name = os.path.basename(os.path.dirname(path))
        if "optimizer" in name:
            continue  # tuning runs
        with open(path) as f:
            runs[name] = [[name, round(entry["epoch"], 4), entry["step"],
                           round(entry["train_seconds"], 2),
                           entry["metrics"]["test_accuracy"]]
                          for entry in json.load(f)]
    if runs:
        with open(curves_csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for name in sorted(runs):
                writer.writerows(runs[name])


def read_curves():
    curves = collections.defaultdict(list)
    if os.path.exists(CURVES_CSV):
        with open(CURVES_CSV) as f:
            for row in csv.DictReader(f):
                curves[row["run"]].append((float(row["train_seconds"]),
                                           float(row["test_accuracy"]),
                                           int(row["step"])))
    return curves


def mean_accuracy(rows, schedule, batch, epochs):
    """Mean and list of test accuracies; at batch 128 every schedule is the
    LEGW run (k = 1)."""
    wanted = "legw" if batch == BASE else schedule
    values = [r["test_accuracy"] for r in rows
              if r["schedule"] == wanted and r["batch_size"] == batch
              and r["epochs"] == epochs]
    return (float(np.mean(values)) if values else None), values


def accuracy_table(rows, epochs=25.0):
    batches = sorted({r["batch_size"] for r in rows if r["epochs"] == epochs})
    lines = ["| schedule | " + " | ".join(f"batch {b}" for b in batches) + " |",
             "|---|" + "---|" * len(batches)]
    for schedule, label in LABELS.items():
        cells = []
        for batch in batches:
            mean, values = mean_accuracy(rows, schedule, batch, epochs)
            cells.append("" if mean is None else
                         f"{100 * mean:.2f}" + (f" (n={len(values)})"
                                                if len(values) > 1 else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def budget_table(rows):
    lines = ["| epochs | batch 128 (LEGW) | 8192 LEGW | gap | "
             "8192 sqrt, constant warmup | gap |", "|---|---|---|---|---|---|"]
    for epochs in sorted({r["epochs"] for r in rows}):
        base, _ = mean_accuracy(rows, "legw", BASE, epochs)
        cells = [f"{epochs:g}", "" if base is None else f"{100 * base:.2f}"]
        for schedule in ("legw", "sqrt_constant_warmup"):
            big, _ = mean_accuracy(rows, schedule, 8192, epochs)
            cells.append("" if big is None else f"{100 * big:.2f}")
            cells.append("" if None in (big, base)
                         else f"{100 * (big - base):+.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speed_table(rows, epochs=25.0):
    """Steps and training seconds to 98% at 128 and 8192 (LEGW, seed 0)."""
    curves = read_curves()
    lines = ["| batch | steps to 98% | training s to 98% | total steps | "
             "total training s |", "|---|---|---|---|---|"]
    found = {}
    for batch in (BASE, 8192):
        row = next((r for r in rows if r["schedule"] == "legw"
                    and r["batch_size"] == batch and r["seed"] == 0
                    and r["epochs"] == epochs), None)
        if row is None:
            continue
        name = f"legw_b{batch}_s0_e{epochs:g}"
        steps_to = next((s for t, a, s in curves.get(name, []) if a >= 0.98),
                        None)
        found[batch] = (steps_to, row["seconds_to_98"])
        lines.append(f"| {batch} | {steps_to or 'never'} | "
                     f"{row['seconds_to_98'] or 'never'} | {row['steps']} | "
                     f"{row['wall_seconds']} |")
    if len(found) == 2 and None not in found[BASE] + found[8192]:
        lines.append(
            f"\nratio 128 / 8192: steps {found[BASE][0] / found[8192][0]:.1f}x,"
            f" training time {found[BASE][1] / found[8192][1]:.2f}x")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    return plt


def _save(fig, name):
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, name), dpi=110)
    fig.clf()


def plot_accuracy_vs_batch(rows, budget=25.0):
    """Accuracy against batch, one line per schedule; the right panel
    zooms on 97.5-99.5% where the LEGW gap lies."""
    plt = _pyplot()
    batches = sorted({r["batch_size"] for r in rows if r["epochs"] == budget})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax in axes:
        for schedule, label in LABELS.items():
            points = [(b, mean_accuracy(rows, schedule, b, budget)[0])
                      for b in batches]
            points = [(b, 100 * m) for b, m in points if m is not None]
            if points:
                ax.plot(*zip(*points), marker="o", label=label,
                        color=SCHEDULE_COLORS[schedule])
        ax.set_xscale("log", base=2)
        plain_log_ticks(ax.xaxis, batches)
        ax.set_xlabel("global batch size")
        ax.set_ylabel(f"test accuracy (%), {budget:g} epochs")
    axes[0].set_title("MNIST-LSTM: accuracy against batch (base 128)")
    axes[0].legend(fontsize=8)
    axes[1].set_ylim(97.5, 99.5)
    axes[1].axhline(100 * mean_accuracy(rows, "legw", BASE, budget)[0] - 0.3,
                    color="gray", linestyle="--", label="batch 128 - 0.3")
    axes[1].set_title("zoom: the gap at 2048 and 8192")
    axes[1].legend(fontsize=8)
    _save(fig, "mnist_lstm_accuracy_vs_batch.png")


def mnist_schedule(recipe, batch_size, epochs):
    """The zoo's MNIST-LSTM schedule of `recipe` (Adam's base rate, the
    frozen base warmup) at `batch_size` for `epochs`."""
    import keras_legw
    from models import mnist_lstm

    return keras_legw.recipe(
        recipe, defaults=dict(
            base_warmup_epochs=mnist_lstm.BASE["base_warmup_epochs"]),
        base_learning_rate=mnist_lstm.BASE_LEARNING_RATES["adam"],
        base_batch_size=mnist_lstm.BASE["base_batch_size"],
        batch_size=batch_size, num_examples=60000, total_epochs=epochs)


def plot_lr_8192(budget=25.0):
    """The four schedules' learning rates at batch 8192."""
    import keras_legw

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = np.linspace(0, budget, 400)
    for schedule, label in LABELS.items():
        lr = mnist_schedule(schedule, 8192, budget)
        steps = [keras_legw.epochs_to_steps(e, 60000, 8192) for e in epochs]
        ax.plot(epochs, np.asarray(lr(np.round(steps))), label=label,
                color=SCHEDULE_COLORS[schedule])
    ax.set(xlabel="epoch", ylabel="learning rate (Adam)",
           title="Learning rate at batch 8192 (k = 64)")
    ax.legend()
    _save(fig, "mnist_lstm_lr_8192.png")


def plot_accuracy_vs_time(y_range=(95.0, 99.5)):
    """Seed-0 25-epoch curves at 128 and 8192; a run that never enters the
    plotted range is left out of the plot and its legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in sorted(read_curves().items()):
        schedule, batch = name.split("_b")[0], int(name.split("_b")[1]
                                                   .split("_")[0])
        if not name.endswith("_s0_e25") or batch not in (BASE, 8192):
            continue
        seconds, accuracy, _ = zip(*points)
        accuracy = 100 * np.asarray(accuracy)
        if accuracy.max() < y_range[0]:
            continue
        ax.plot(seconds, accuracy, color=SCHEDULE_COLORS[schedule],
                linestyle="-" if batch == BASE else "--",
                label=f"{SCHEDULE_NAMES[schedule]}, batch {batch}")
    ax.set_ylim(*y_range)
    ax.set(xlabel="training seconds (2-core CPU)", ylabel="test accuracy (%)",
           title="Accuracy against training time, batch 128 and 8192")
    ax.legend(fontsize=8)
    _save(fig, "mnist_lstm_accuracy_vs_time.png")


def plot_gap_vs_budget(rows):
    """The 8192 - 128 gap against the epoch budget."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    budgets = sorted({r["epochs"] for r in rows})
    for schedule in ("legw", "sqrt_constant_warmup"):
        points = []
        for e in budgets:
            base = mean_accuracy(rows, "legw", BASE, e)[0]
            big = mean_accuracy(rows, schedule, 8192, e)[0]
            if None not in (base, big):
                points.append((e, 100 * (big - base)))
        if points:
            ax.plot(*zip(*points), marker="o", label=LABELS[schedule],
                    color=SCHEDULE_COLORS[schedule])
    ax.axhline(-0.3, color="gray", linestyle="--", label="-0.3 points (claim)")
    ax.set(xlabel="epoch budget", ylabel="accuracy at 8192 minus at 128 "
           "(points)", title="Large-batch gap against the epoch budget")
    ax.legend()
    _save(fig, "mnist_lstm_gap_vs_budget.png")


def recipe_summary(rows):
    """{recipe: (rate, {batch: (accuracies, final train losses)})} at each
    recipe's frozen rate, 25 epochs; the noise-scaling axis (`x+noise`)
    shares x's batch-128 runs (at k = 1 it is the same run)."""
    from bench import mnist_recipes

    summary = {}
    recipes = list(mnist_recipes.TUNING_GRID) + sorted(
        {r["recipe"] for r in rows if "+" in r["recipe"]})
    for recipe in recipes:
        core = recipe.split("+")[0]
        rate = mnist_recipes.tuned_rate(rows, core,
                                        mnist_recipes.TUNING_GRID[core])
        if rate is None:
            continue
        by_batch = {}
        for r in rows:
            own = r["recipe"] == recipe or (
                recipe.endswith("+noise") and r["recipe"] == core
                and int(r["batch_size"]) == BASE)
            if own and float(r["base_learning_rate"]) == rate \
                    and r["test_accuracy"]:
                acc, loss = by_batch.setdefault(int(r["batch_size"]), ([], []))
                acc.append(float(r["test_accuracy"]))
                loss.append(float(r["final_train_loss"]))
        summary[recipe] = (rate, by_batch)
    return summary


def recipe_table(rows):
    """Markdown: each recipe's mean accuracy (seeds) and final training loss
    at 128, 2048 and 8192, and the 8192 - 128 gap."""
    lines = ["| recipe | base rate | 128 | 2048 | 8192 | gap 8192 - 128 | "
             "train loss 128 | train loss 8192 |", "|---|" + "---|" * 7]
    for recipe, (rate, by_batch) in recipe_summary(rows).items():
        def acc(b):
            values = by_batch.get(b, ([], []))[0]
            return (f"{100 * np.mean(values):.2f}" + (
                f" (n={len(values)})" if len(values) > 1 else "")
                if values else "")

        def loss(b):
            values = by_batch.get(b, ([], []))[1]
            return f"{np.mean(values):.2g}" if values else ""

        gap = ""
        if BASE in by_batch and 8192 in by_batch:
            gap = (f"{100 * (np.mean(by_batch[8192][0]) - np.mean(by_batch[BASE][0])):+.2f}")
        lines.append(f"| {recipe} | {rate:g} | {acc(BASE)} | {acc(2048)} | "
                     f"{acc(8192)} | {gap} | {loss(BASE)} | {loss(8192)} |")
    return "\n".join(lines)


def plot_recipes(rows):
    """Accuracy and final training loss against batch, one line a recipe."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for recipe, (rate, by_batch) in recipe_summary(rows).items():
        batches = sorted(by_batch)
        label = f"{recipe} (base rate {rate:g})"
        below = [(b, 100 * np.mean(by_batch[b][0])) for b in batches
                 if 100 * np.mean(by_batch[b][0]) < 97.0]
        if below:  # say where the line leaves the axis
            label += "; " + ", ".join(f"{b}: {a:.1f}%" for b, a in below)
        style = dict(marker="o", color=recipe_color(recipe),
                     linestyle={"noise": "--", "smoothing": ":"}.get(
                         recipe.partition("+")[2], "-"), label=label)
        axes[0].plot(batches, [100 * np.mean(by_batch[b][0])
                               for b in batches], **style)
        axes[1].plot(batches, [np.mean(by_batch[b][1]) for b in batches],
                     **style)
    for ax in axes:
        ax.set_xscale("log", base=2)
        plain_log_ticks(ax.xaxis, [128, 2048, 8192])
        ax.set_xlabel("global batch size (LEGW from base 128)")
    axes[0].set(ylabel="test accuracy (%), mean of seeds, 25 epochs",
                title="MNIST-LSTM recipes: accuracy", ylim=(97.0, 99.5))
    axes[1].set(yscale="log", ylabel="final training loss",
                title="final training loss (optimization)")
    axes[0].legend(fontsize=7)
    _save(fig, "mnist_lstm_recipes.png")


def _autowu_kind(row):
    """'legw', 'autowu' (a test at each epoch end) or 'autowu every E'."""
    every = row.get("check_every_epochs") or ""
    return f"{row['schedule']} every {every}" if every else row["schedule"]


def autowu_table(rows, epochs=25.0):
    """AutoWarmup against LEGW at 128 and 8192: mean test accuracy over the
    seeds, and each seed's warmup (AutoWarmup's switch step; LEGW's rule)
    and peak rate."""
    lines = ["| warmup | batch | test accuracy (%): mean (seeds 0 / 1) | "
             "warmup steps | of steps | peak rate |",
             "|---|---|---|---|---|---|"]
    kinds = sorted({_autowu_kind(r) for r in rows
                    if r["schedule"] == "autowu"})
    for kind in ["legw", *kinds]:
        for batch in (BASE, 8192):
            runs = sorted((r for r in rows if _autowu_kind(r) == kind
                           and r["batch_size"] == batch
                           and r["epochs"] == epochs),
                          key=lambda r: r["seed"])
            if not runs:
                continue
            if kind == "legw":
                legw = mnist_schedule("legw", batch, epochs)
                switch = str(legw.warmup_steps)
                peak = f"{legw.peak_learning_rate:.3g}"
            else:
                switch = " / ".join(r["warmup_steps"] for r in runs)
                peak = " / ".join(f"{float(r['peak_learning_rate']):.3g}"
                                  for r in runs)
            seeds = " / ".join(f"{100 * r['test_accuracy']:.2f}" for r in runs)
            accuracy = 100 * np.mean([r["test_accuracy"] for r in runs])
            name = ("LEGW" if kind == "legw" else "AutoWarmup, test at each "
                    "epoch end" if kind == "autowu" else
                    f"AutoWarmup, test every {kind.split()[-1]} epochs")
            lines.append(f"| {name} | {batch} | {accuracy:.2f} ({seeds}) | "
                         f"{switch} | {runs[0]['steps']} | {peak} |")
    return "\n".join(lines)


def plot_autowu(epochs=25):
    """Seed 0's test accuracy by epoch at 128 and 8192: LEGW and AutoWarmup
    with each test cadence."""
    plt = _pyplot()
    curves = read_curves()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    styles = {"": "-", "_check_every_epochs0.1": "--"}
    for ax, batch in zip(axes, (BASE, 8192)):
        for schedule in ("legw", "autowu"):
            for suffix, style in styles.items():
                name = f"{schedule}_b{batch}_s0_e{epochs}{suffix}"
                if name not in curves or (schedule == "legw" and suffix):
                    continue
                _, accuracy, _ = zip(*curves[name])
                label = SCHEDULE_NAMES[schedule] + (
                    ", test every 0.1 epochs" if suffix else
                    ", test at epoch ends" if schedule == "autowu" else "")
                ax.plot(np.arange(1, len(accuracy) + 1),
                        100 * np.asarray(accuracy), linestyle=style,
                        color=SCHEDULE_COLORS[schedule], label=label)
        ax.set(xlabel="epoch", title=f"batch {batch}", ylim=(80, 100))
    axes[0].set(ylabel="test accuracy (%)")
    axes[0].legend(fontsize=8)
    fig.suptitle("MNIST-LSTM: AutoWarmup against LEGW (seed 0, Adam)")
    _save(fig, "mnist_lstm_autowu.png")


def plot_all(rows):
    plot_accuracy_vs_batch(rows)
    plot_lr_8192()
    plot_accuracy_vs_time()
    plot_gap_vs_budget(rows)
    plot_autowu()


def main():
    export_curves()
    rows = read_sweep()
    plot_all(rows)
    print("Accuracy (%) at 25 epochs:\n" + accuracy_table(rows))
    print("\nEpoch budget:\n" + budget_table(rows))
    print("\nSpeed (LEGW, seed 0):\n" + speed_table(rows))
    print("\nAutoWarmup (25 epochs):\n" + autowu_table(rows))
    from bench.sweep_runner import read_rows
    recipes = read_rows(RECIPES_CSV)
    if recipes:
        plot_recipes(recipes)
        print("\nRecipes (25 epochs):\n" + recipe_table(recipes))


if __name__ == "__main__":
    main()
