"""The growing-batch study through the model zoo's tf.distribute trainer
(`--batch_schedule`): PTB-small and GNMT-small at their full budgets, and
MNIST-LSTM with the library study's frozen configuration, base
hyperparameters frozen as in the fixed-batch sweeps.

    python -m bench.growing_trainer --plan=ptb --workers=2    # fixed, noise
    python -m bench.growing_trainer --plan=gnmt
    python -m bench.growing_trainer --plan=mnist
    python -m bench.growing_trainer --plan=ptb --configs=sgd_sqrt_noise_frozen \
        --seed=1                                  # one configuration, one seed
    python -m bench.growing_trainer --plan=report   # plot and table

Each finished run is appended at once to docs/results/growing_batch.csv (the
library study's columns; test_metric is the test perplexity for PTB, the
test BLEU for GNMT, the test accuracy for MNIST; config is the name below
with "trainer_" before it; peak_rss_gib is the run's peak resident memory)
and its per-epoch curve to growing_trainer_curves.csv (test_metric there is
GNMT's test perplexity: its BLEU is decoded at the end only);
runs already there are skipped. Each run trains in its own process, in
`--runs_dir/<model>_<config>_s<seed>` (a stopped study resumes its run
from the checkpoint). wall_seconds are training seconds, contended when two
run at once.
"""

from bench import sweep_runner
from bench.growing_batch import COLUMNS, CSV
from models.mnist_lstm_growing import FROZEN_RAMP

CURVES_CSV = "docs/results/growing_trainer_curves.csv"
CURVE_COLUMNS = ["model", "config", "seed", "epoch", "step", "batch_size",
                 "examples", "test_metric"]
TRAINER_COLUMNS = COLUMNS + ["peak_rss_gib"]
# PTB-small from its base batch 20 (SGD at 1.0, LEGW's warmup and decay):
# 80 after the first epoch, as far as 320 in the second half.
PTB_RAMP = "0:20,1:80,3:160,6:320"
CONFIGS = {
    "ptb_lstm": {
        "sgd_sqrt_ramp": dict(batch_size=20, batch_schedule=PTB_RAMP),
        # Two replicas: the noise scale of a stateful model needs them.
        "sgd_sqrt_noise": dict(batch_size=20, batch_schedule="noise",
                               max_batch_size=1280, strategy="mirrored",
                               num_cpu_devices=2),
        # The adaptive rule's frozen default (NoiseBatchSchedule's own
        # defaults; the row above ran the rule before it, at c = 1).
        "sgd_sqrt_noise_frozen": dict(batch_size=20, batch_schedule="noise",
                                      max_batch_size=1280,
                                      strategy="mirrored", num_cpu_devices=2),
    },
    "gnmt": {
        "adam_sqrt_ramp": dict(batch_size=128,
                               batch_schedule="0:128,1:256,3:512,6:1024",
                               base_learning_rate=1e-2, dropout=0.1),
        "adam_sqrt_noise_frozen": dict(batch_size=128, batch_schedule="noise",
                                       max_batch_size=1024,
                                       max_replica_batch_size=512,
                                       base_learning_rate=1e-2, dropout=0.1),
    },
    "mnist_lstm": {
        "lamb_sqrt_fast_ramp": dict(batch_size=256, optimizer="lamb",
                                    batch_schedule=FROZEN_RAMP),
        "lamb_sqrt_noise_frozen": dict(batch_size=128, optimizer="lamb",
                                       batch_schedule="noise",
                                       max_batch_size=8192),
    },
}
# The rows' config names start with it: the library study's rows (model.fit)
# share the CSV.
PREFIX = "trainer_"
PLANS = {"ptb": "ptb_lstm", "gnmt": "gnmt", "mnist": "mnist_lstm",
         "report": None}
METRICS = {"ptb_lstm": "test_perplexity", "gnmt": "test_bleu",
           "mnist_lstm": "test_accuracy"}
# Per epoch: GNMT's BLEU is decoded once, at the end, so its curve is the
# test perplexity of each epoch, as the fixed runs' curves are.
CURVE_METRICS = dict(METRICS, gnmt="test_perplexity")
OPTIMIZERS = {"ptb_lstm": "sgd", "gnmt": "adam"}


def row_of(model, name, seed, results):
    spec = CONFIGS[model][name]
    return dict(model=model, config=f"{PREFIX}{name}",
                optimizer=spec.get("optimizer", OPTIMIZERS.get(model)),
                rate_rule="sqrt", batch_schedule=spec["batch_schedule"],
                max_batch_size=spec.get("max_batch_size",
                                        max(results["batch_sizes"])),
                seed=seed, epochs=f"{results['epochs']:.4g}",
                test_metric=f"{results[METRICS[model]]:.4f}",
                final_train_loss=f"{results['final_loss']:.4g}",
                steps=results["steps"], examples=results["examples"],
                wall_seconds=f"{results['train_seconds']:.1f}",
                peak_rss_gib=f"{results['peak_rss_gib']:.2f}")


def curve_rows(model, name, seed, results):
    return [dict(model=model, config=name, seed=seed, epoch=f"{h['epoch']:.4g}",
                 step=h["step"], batch_size=h["batch_size"],
                 examples=h["examples"],
                 test_metric=f"{h['metrics'][CURVE_METRICS[model]]:.4f}"
                 if CURVE_METRICS[model] in h["metrics"] else "")
            for h in results["history"]]


def run_one(model, name, seed, args):
    kwargs = dict(CONFIGS[model][name], seed=seed, verbose=0,
                  model_dir=f"{args.runs_dir}/{model}_{name}_s{seed}",
                  data_dir=args.data_dir)
    if args.epochs is not None:
        kwargs["epochs"] = args.epochs
    results = sweep_runner.run_in_child(model, kwargs)
    sweep_runner.append_row(args.csv, TRAINER_COLUMNS,
                            row_of(model, name, seed, results))
    for row in curve_rows(model, name, seed, results):
        sweep_runner.append_row(args.curves_csv, CURVE_COLUMNS, row)
    print(f"{model} {name} seed {seed}: {METRICS[model]} "
          f"{results[METRICS[model]]:.4f} in {results['steps']} steps, "
          f"batches {results['batch_sizes']}", flush=True)


# The fixed-batch LEGW runs each plot sets the growing runs against:
# (curves CSV, its run column, run, label, the metric's column).
FIXED = {
    "ptb_lstm": [("docs/results/sequence_curves.csv", "run",
                  f"ptb_small_legw_b{b}_s0_e13", f"LEGW, fixed {b}",
                  "test_perplexity") for b in (20, 80, 320)],
    "gnmt": [("docs/results/sequence_curves.csv", "run",
              f"gnmt_small_legw_b{b}_lr0.01_d0.1_s0_e13", f"LEGW, fixed {b}",
              "test_perplexity") for b in (128, 512, 1024)],
    "mnist_lstm": [("docs/results/mnist_lstm_curves.csv", "run",
                    f"legw_b{b}_s0_e25", f"LEGW, Adam, fixed {b}",
                    "test_accuracy") for b in (128, 2048, 8192)]
    + [("docs/results/growing_batch_curves.csv", "config",
        "lamb_sqrt_fast_ramp", "the same ramp in model.fit",
        "test_accuracy")],
}
PLOT = "docs/results/growing_trainer.png"


def report(args):
    """The figure (each model's test metric against optimizer steps: the
    growing runs and fixed-batch LEGW) and the table of the trainer's rows,
    printed as Markdown."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    curves = sweep_runner.read_rows(args.curves_csv)
    models = [m for m in CONFIGS if any(c["model"] == m for c in curves)]
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4),
                             squeeze=False)
    for ax, model in zip(axes[0], models):
        for path, key, run, label, metric in FIXED[model]:
            rows = [r for r in sweep_runner.read_rows(path)
                    if r[key] == run and r.get("seed", "0") == "0"]
            ax.plot(*sweep_runner.curve(rows, metric), "--", label=label)
        for name in CONFIGS[model]:
            rows = [c for c in curves if c["model"] == model
                    and c["config"] == name and c["test_metric"]]
            if not rows:
                continue
            ax.plot(*sweep_runner.curve(rows, "test_metric"), marker=".",
                    label=f"trainer: {name}")
        ax.set(xscale="log", xlabel="optimizer steps", title=model,
               ylabel="test " + CURVE_METRICS[model].split("_")[1])
        ax.set_ylim(*{"ptb_lstm": (100, 250), "gnmt": (5, 60),
                      "mnist_lstm": (0.93, 0.995)}[model])
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)
    print("| model | config | batch schedule | test metric | steps | "
          "peak RSS GiB |\n|---|---|---|---|---|---|")
    for row in sweep_runner.read_rows(args.csv):
        if row.get("peak_rss_gib"):
            print(f"| {row['model']} | {row['config']} | "
                  f"{row['batch_schedule']} | {row['test_metric']} | "
                  f"{row['steps']} | {row['peak_rss_gib']} |")


def main():
    parser = sweep_runner.sweep_parser(__doc__, epochs=None, csv_path=CSV,
                                       runs_dir="runs/growing_trainer",
                                       plans=tuple(PLANS))
    parser.add_argument("--curves_csv", default=CURVES_CSV)
    parser.add_argument("--configs", default=None,
                        help="comma-separated configurations of the plan's "
                             "model; default: all")
    args = parser.parse_args()
    if args.plan == "report":
        return report(args)
    model = PLANS[args.plan]
    done = {(r["model"], r["config"], r["seed"])
            for r in sweep_runner.read_rows(args.csv)}
    names = (list(CONFIGS[model]) if args.configs is None
             else args.configs.split(","))
    unknown = sorted(set(names) - set(CONFIGS[model]))
    if unknown:
        parser.error(f"--configs: {unknown} are not configurations of "
                     f"{model}: {sorted(CONFIGS[model])}")
    jobs = [lambda n=name: run_one(model, n, args.seed, args)
            for name in names
            if (model, f"{PREFIX}{name}", str(args.seed)) not in done]
    sweep_runner.run_all(jobs, args.workers)


if __name__ == "__main__":
    main()
