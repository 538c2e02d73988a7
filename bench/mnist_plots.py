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

and prints the Markdown tables used in the README.
"""

import collections
import csv
import glob
import json
import os

import numpy as np

RESULTS = "docs/results"
SWEEP_CSV = os.path.join(RESULTS, "mnist_lstm_sweep.csv")
CURVES_CSV = os.path.join(RESULTS, "mnist_lstm_curves.csv")
RUNS = "runs/sweep"
LABELS = {
    "legw": "LEGW (sqrt, warmup x k)",
    "goyal": "Goyal (linear, constant warmup)",
    "sqrt_constant_warmup": "sqrt, constant warmup",
    "no_scaling": "no scaling",
}
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


def export_curves():
    """Copies per-epoch histories of the sweep runs into CURVES_CSV."""
    rows = []
    for path in sorted(glob.glob(os.path.join(RUNS, "*", "history.json"))):
        name = os.path.basename(os.path.dirname(path))
        if "optimizer" in name:
            continue  # tuning runs
        with open(path) as f:
            for entry in json.load(f):
                rows.append([name, round(entry["epoch"], 4), entry["step"],
                             round(entry["train_seconds"], 2),
                             entry["metrics"]["test_accuracy"]])
    if rows:
        with open(CURVES_CSV, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["run", "epoch", "step", "train_seconds",
                             "test_accuracy"])
            writer.writerows(rows)


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


def plot_all(rows):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    import keras_legw
    from models import mnist_lstm
    from models.common.flags import make_schedule

    budget = 25.0
    batches = sorted({r["batch_size"] for r in rows if r["epochs"] == budget})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for schedule, label in LABELS.items():
        points = [(b, mean_accuracy(rows, schedule, b, budget)[0])
                  for b in batches]
        points = [(b, 100 * m) for b, m in points if m is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("global batch size")
    ax.set_ylabel("test accuracy (%), 25 epochs")
    ax.set_title("MNIST-LSTM: accuracy against batch size (base: batch 128)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "mnist_lstm_accuracy_vs_batch.png"),
                dpi=110)
    plt.close(fig)

    import bench.mnist_sweep as sweep

    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = np.linspace(0, budget, 400)
    for schedule, label in LABELS.items():
        kwargs = sweep.SCHEDULES[schedule]
        lr = make_schedule(
            schedule=kwargs["schedule"], scaling=kwargs.get("scaling"),
            warmup_scaling=kwargs.get("warmup_scaling"), batch_size=8192,
            num_examples=60000, **mnist_lstm.BASE,
            base_learning_rate=mnist_lstm.BASE_LEARNING_RATES["adam"])
        steps = [keras_legw.epochs_to_steps(e, 60000, 8192) for e in epochs]
        ax.plot(epochs, np.asarray(lr(np.round(steps))), label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate (Adam)")
    ax.set_title("Learning rate at batch 8192 (k = 64)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "mnist_lstm_lr_8192.png"), dpi=110)
    plt.close(fig)

    curves = read_curves()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in sorted(curves.items()):
        if not name.endswith("_s0_e25") or not any(
                f"_b{b}_" in name for b in (BASE, 8192)):
            continue
        seconds, accuracy, _ = zip(*points)
        ax.plot(seconds, 100 * np.asarray(accuracy), label=name[:-7])
    ax.set_ylim(95, 99.5)
    ax.set_xlabel("training seconds (2-core CPU)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy against training time, batch 128 and 8192")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "mnist_lstm_accuracy_vs_time.png"),
                dpi=110)
    plt.close(fig)

    budgets = sorted({r["epochs"] for r in rows})
    fig, ax = plt.subplots(figsize=(6, 4))
    for schedule in ("legw", "sqrt_constant_warmup"):
        points = []
        for e in budgets:
            base = mean_accuracy(rows, "legw", BASE, e)[0]
            big = mean_accuracy(rows, schedule, 8192, e)[0]
            if None not in (base, big):
                points.append((e, 100 * (big - base)))
        if points:
            ax.plot(*zip(*points), marker="o", label=LABELS[schedule])
    ax.axhline(-0.3, color="gray", linestyle="--", label="-0.3 points (claim)")
    ax.set_xlabel("epoch budget")
    ax.set_ylabel("accuracy at 8192 minus at 128 (points)")
    ax.set_title("Large-batch gap against the epoch budget")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "mnist_lstm_gap_vs_budget.png"), dpi=110)
    plt.close(fig)


def main():
    export_curves()
    rows = read_sweep()
    plot_all(rows)
    print("Accuracy (%) at 25 epochs:\n" + accuracy_table(rows))
    print("\nEpoch budget:\n" + budget_table(rows))
    print("\nSpeed (LEGW, seed 0):\n" + speed_table(rows))


if __name__ == "__main__":
    main()
