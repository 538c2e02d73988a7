"""The growing-batch study through the model zoo's tf.distribute trainer
(`--batch_schedule`): PTB-small and GNMT-small at their full budgets, and
MNIST-LSTM with the library study's frozen configuration, base
hyperparameters frozen as in the fixed-batch sweeps.

    python -m bench.growing_trainer --plan=ptb --workers=2    # fixed, noise
    python -m bench.growing_trainer --plan=gnmt
    python -m bench.growing_trainer --plan=mnist

Each finished run is appended at once to docs/results/growing_batch.csv (the
library study's columns; test_metric is the test perplexity for PTB, the
test BLEU for GNMT, the test accuracy for MNIST; peak_rss_gib is the run's
peak resident memory) and its per-epoch curve to growing_trainer_curves.csv;
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
    },
    "gnmt": {
        "adam_sqrt_ramp": dict(batch_size=128,
                               batch_schedule="0:128,1:256,3:512,6:1024",
                               base_learning_rate=1e-2, dropout=0.1),
    },
    "mnist_lstm": {
        "lamb_sqrt_fast_ramp": dict(batch_size=256, optimizer="lamb",
                                    batch_schedule=FROZEN_RAMP),
    },
}
PLANS = {"ptb": "ptb_lstm", "gnmt": "gnmt", "mnist": "mnist_lstm"}
METRICS = {"ptb_lstm": "test_perplexity", "gnmt": "test_bleu",
           "mnist_lstm": "test_accuracy"}
OPTIMIZERS = {"ptb_lstm": "sgd", "gnmt": "adam"}


def row_of(model, name, seed, results):
    spec = CONFIGS[model][name]
    return dict(model=model, config=name,
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
                 test_metric=f"{h['metrics'][METRICS[model]]:.4f}"
                 if METRICS[model] in h["metrics"] else "")
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


def main():
    parser = sweep_runner.sweep_parser(__doc__, epochs=None, csv_path=CSV,
                                       runs_dir="runs/growing_trainer",
                                       plans=tuple(PLANS))
    parser.add_argument("--curves_csv", default=CURVES_CSV)
    args = parser.parse_args()
    model = PLANS[args.plan]
    done = {(r["model"], r["config"], r["seed"])
            for r in sweep_runner.read_rows(args.csv)}
    jobs = [lambda n=name: run_one(model, n, 0, args)
            for name in CONFIGS[model] if (model, name, "0") not in done]
    sweep_runner.run_all(jobs, args.workers)


if __name__ == "__main__":
    main()
