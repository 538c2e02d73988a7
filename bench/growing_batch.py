"""The growing-batch study: MNIST-LSTM through `model.fit` with a batch that
grows from 128 to at most 8192, 25 epochs, base hyperparameters tuned at
128 only.

    python -m bench.growing_batch --workers=2               # seed 0, CONFIGS
    python -m bench.growing_batch --plan=frozen --workers=2 # seed 1, frozen_config
    python -m bench.growing_batch --plan=default            # seeds 0, 1
    python -m bench.growing_batch --plan=report             # plot, table

`--plan=default` runs the adaptive rule's frozen default
(`NoiseBatchSchedule`'s own defaults, DEFAULT_CONFIG) at seeds 0 and 1.
Seed 0 runs every configuration of CONFIGS; `--plan=frozen` runs seed 1 of
the one `frozen_config` chooses from seed 0's rows: the best test accuracy
among those that train at 8192 from half the epochs on and take fewer steps
than the best fixed batch that keeps the base's accuracy (LAMB at 2048: 733
steps, mnist_lstm_recipes.csv); if none does, the best accuracy. Each finished run is appended at once to
docs/results/growing_batch.csv (columns below) and its per-epoch curve to
growing_batch_curves.csv; runs already there are skipped, so rerunning
continues the study. Each run trains in its own process
(`models.mnist_lstm_growing.run`); wall_seconds are from the start of fit,
contended when two run at once.
"""

import math

from bench import sweep_runner

CSV = "docs/results/growing_batch.csv"
CURVES_CSV = "docs/results/growing_batch_curves.csv"
COLUMNS = ["model", "config", "optimizer", "rate_rule", "batch_schedule",
           "max_batch_size", "seed", "epochs", "test_metric",
           "final_train_loss", "steps", "examples", "wall_seconds"]
CURVE_COLUMNS = ["config", "seed", "epoch", "step", "batch_size",
                 "learning_rate", "noise_scale", "test_accuracy"]
NUM_EXAMPLES = 60000
# The first look (its ramp), and a faster one that starts at 256.
RAMP = "0:128,1:512,2:1024,4:2048,7:4096,10:8192"
FAST_RAMP = "0:256,1:1024,3:4096,6:8192"
CONFIGS = {
    "lamb_sqrt_noise": dict(optimizer="lamb", rate_rule="sqrt",
                            batch_schedule="noise", max_batch_size=8192),
    "lamb_sqrt_noise_x4": dict(optimizer="lamb", rate_rule="sqrt",
                               batch_schedule="noise", max_batch_size=8192,
                               noise_scale_multiplier=4.0),
    "adam_sqrt_ramp": dict(optimizer="adam", rate_rule="sqrt",
                           batch_schedule=RAMP),
    "lamb_sqrt_ramp": dict(optimizer="lamb", rate_rule="sqrt",
                           batch_schedule=RAMP),
    "lamb_sqrt_fast_ramp": dict(optimizer="lamb", rate_rule="sqrt",
                                batch_schedule=FAST_RAMP),
    # Smith et al. 2018: the base rate throughout, the decay only once the
    # batch is at its largest (epoch 6).
    "lamb_constant_fast_ramp": dict(optimizer="lamb", rate_rule="none",
                                    batch_schedule=FAST_RAMP,
                                    decay_begin_epochs=6.0),
}
# The adaptive rule with NoiseBatchSchedule's frozen defaults (issue 38).
DEFAULT_CONFIG = {
    "lamb_sqrt_noise_frozen": dict(optimizer="lamb", rate_rule="sqrt",
                                   batch_schedule="noise",
                                   max_batch_size=8192),
}
# Every configuration a row may name.
ALL_CONFIGS = {**CONFIGS, **DEFAULT_CONFIG}
BEST_FIXED_STEPS = 733  # LAMB at 2048, 99.10% (mnist_lstm_recipes.csv)
MAX_BATCH = 8192


def frozen_config(rows, curves):
    """The configuration that seed 1 runs (see the module's docstring)."""
    # The CSV also holds the trainer's rows (bench.growing_trainer).
    seed0 = [r for r in rows if r["seed"] == "0" and r["config"] in CONFIGS]
    if {r["config"] for r in seed0} != set(CONFIGS):
        raise ValueError("--plan=frozen needs every seed-0 row first: run "
                         "--plan=seed0")

    def meets(row):
        late = [int(c["batch_size"]) for c in curves
                if c["config"] == row["config"] and c["seed"] == "0"
                and int(c["epoch"]) > float(row["epochs"]) / 2]
        return (int(row["steps"]) < BEST_FIXED_STEPS
                and all(b == MAX_BATCH for b in late))

    pool = [r for r in seed0 if meets(r)] or seed0
    return max(pool, key=lambda r: float(r["test_metric"]))["config"]


def plan_runs(plan, rows=(), curves=()):
    """(config, seed) pairs of a plan."""
    if plan == "seed0":
        return [(name, 0) for name in CONFIGS]
    if plan == "default":
        return [(name, seed) for seed in (0, 1) for name in DEFAULT_CONFIG]
    return [(frozen_config(rows, curves), 1)]


def steps_of(batch_sizes):
    """Optimizer steps after each epoch, from each epoch's batch (the last
    batch of an epoch is smaller when the batch does not divide N)."""
    steps, total = [], 0
    for batch in batch_sizes:
        total += math.ceil(NUM_EXAMPLES / batch)
        steps.append(total)
    return steps


def row_of(name, seed, epochs, results):
    spec = ALL_CONFIGS[name]
    return dict(model="mnist_lstm", config=name, optimizer=spec["optimizer"],
                rate_rule=spec["rate_rule"],
                batch_schedule=spec["batch_schedule"],
                max_batch_size=spec.get("max_batch_size",
                                        max(results["batch_size"])),
                seed=seed, epochs=f"{epochs:g}",
                test_metric=f"{results['test_accuracy']:.4f}",
                final_train_loss=f"{results['final_train_loss']:.4g}",
                steps=results["steps"], examples=results["examples"],
                wall_seconds=f"{results['wall_seconds']:.1f}")


def curve_rows(name, seed, results):
    noise = results["noise_scale"] or [""] * len(results["batch_size"])
    return [dict(config=name, seed=seed, epoch=epoch + 1, step=step,
                 batch_size=batch, learning_rate=f"{rate:.6g}",
                 noise_scale=f"{ns:.6g}" if ns != "" else "",
                 test_accuracy=f"{accuracy:.4f}")
            for epoch, (step, batch, rate, ns, accuracy) in enumerate(zip(
                steps_of(results["batch_size"]), results["batch_size"],
                results["learning_rate"], noise,
                results["epoch_test_accuracy"]))]


def run_one(name, seed, args):
    kwargs = dict(ALL_CONFIGS[name], seed=seed, epochs=args.epochs,
                  data_dir=args.data_dir)
    results = sweep_runner.run_in_child("mnist_lstm_growing", kwargs)
    sweep_runner.append_row(args.csv, COLUMNS,
                            row_of(name, seed, args.epochs, results))
    for row in curve_rows(name, seed, results):
        sweep_runner.append_row(args.curves_csv, CURVE_COLUMNS, row)
    print(f"{name} seed {seed}: {results['test_accuracy']:.4f} in "
          f"{results['steps']} steps, batches {results['batch_size']}",
          flush=True)


FIXED_CURVES = "docs/results/mnist_lstm_curves.csv"
FIXED_RUNS = {128: "legw_b128_s0_e25", 2048: "legw_b2048_s0_e25",
              8192: "legw_b8192_s0_e25"}
PLOT = "docs/results/growing_batch.png"


def report(args):
    """The figure (test accuracy against optimizer steps: LEGW with Adam at
    fixed batches, from the sweep's curves, every seed-0 ramp and the
    adaptive default) and the
    table of every row, printed as Markdown."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fixed = sweep_runner.read_rows(FIXED_CURVES)
    curves = sweep_runner.read_rows(args.curves_csv)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for (batch, run), style, shade in zip(FIXED_RUNS.items(),
                                          (":", "--", "-."),
                                          ("0.7", "0.45", "0.2")):
        rows = [r for r in fixed if r["run"] == run]
        ax.plot(*sweep_runner.curve(rows, "test_accuracy"), style,
                color=shade, label=f"LEGW, Adam, fixed {batch}")
    for name in ALL_CONFIGS:
        rows = [r for r in curves if r["config"] == name and r["seed"] == "0"]
        if rows:
            ax.plot(*sweep_runner.curve(rows, "test_accuracy"), marker=".",
                    label=name)
    ax.set_xscale("log")
    ax.set_xlim(50, None)
    ax.set_ylim(0.95, 0.995)
    ax.set_xlabel("optimizer steps")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)
    print("| config | seed | test accuracy | final train loss | steps | "
          "wall s |\n|---|---|---|---|---|---|")
    for row in sweep_runner.read_rows(args.csv):
        print(f"| {row['config']} | {row['seed']} | {row['test_metric']} | "
              f"{row['final_train_loss']} | {row['steps']} | "
              f"{row['wall_seconds']} |")


def main():
    parser = sweep_runner.sweep_parser(__doc__, epochs=25.0, csv_path=CSV,
                                       runs_dir=None,
                                       plans=("seed0", "frozen", "default",
                                              "report"))
    parser.add_argument("--curves_csv", default=CURVES_CSV)
    args = parser.parse_args()
    if args.plan == "report":
        return report(args)
    rows = sweep_runner.read_rows(args.csv)
    done = {(r["config"], int(r["seed"]), float(r["epochs"])) for r in rows}
    jobs = [lambda n=name, s=seed: run_one(n, s, args)
            for name, seed in plan_runs(
                args.plan, rows, sweep_runner.read_rows(args.curves_csv))
            if (name, seed, args.epochs) not in done]
    sweep_runner.run_all(jobs, args.workers)


if __name__ == "__main__":
    main()
