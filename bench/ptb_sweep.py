"""PTB small-config sweep: the tutorial's schedule at batch 20 and LEGW at 20,
80 (4x), 320 (16x) and 1280 (64x), one equal epoch budget, no retuning.

    python -m bench.ptb_sweep --epochs=13 --workers=2   # the tutorial's budget
    python -m bench.ptb_sweep --epochs=3                # the short budget
    python -m bench.ptb_sweep --epochs=13 --plan=autowu --workers=2
    python -m bench.ptb_sweep --epochs=13 --base_warmup_epochs=0.025

The base hyperparameters are frozen: the tutorial's small config and LEGW's
base (rate 1.0 at batch 20, warmup 0.1 epochs) as in `models/ptb_lstm.py`;
nothing was tuned for the large batches. At 13 epochs the `reference` run is
the whole tutorial schedule (rate 1.0, halved after epoch 4); at 3 epochs it
is the tutorial's first epochs. On a two-core CPU one epoch at batch 20 takes
5-8 minutes.
The autowu plan trains AutoWarmup (`--schedule=autowu`) at 20 and 320 with
one rate range, SGD from 0.01 up to at most 10 (LEGW's peak is 1 at 20 and 4
at 320), a test every tenth of an epoch (at 13 epochs a test at each epoch
end leaves at most six before the cap; see the MNIST rows), the other
hyperparameters the frozen base's.
`--base_warmup_epochs` runs the LEGW plan at another base warmup (one
chosen at batch 20 by `bench.ptb_tuning`, whose batch-20 run it reuses under
the same name); the tutorial's schedule has no warmup, so its run is the
frozen sweep's and is not trained again.
Each finished run is appended at once to `docs/results/ptb_sweep.csv`
(schedule, batch_size, seed, epochs, test_perplexity, steps, wall_seconds =
training seconds, tokens_per_second; AutoWarmup's warmup_steps and
peak_learning_rate; base_warmup_epochs, empty for the frozen one);
rerunning continues the sweep.
"""

import functools
import os

from bench import sweep_runner

# Longest first, so that two workers finish close together.
PLANS = {"legw": [("reference", 20), ("legw", 20), ("legw", 320),
                  ("legw", 80), ("legw", 1280)],
         "autowu": [("autowu", 20), ("autowu", 320)]}
# run() keyword arguments a schedule adds: AutoWarmup's one rate range.
EXTRA_ARGUMENTS = {"autowu": dict(min_learning_rate=0.01,
                                  max_learning_rate=10.0,
                                  check_every_epochs=0.1)}


def run_name(schedule, batch_size, seed, epochs, base_warmup_epochs=None):
    """`base_warmup_epochs`: a LEGW base warmup other than the frozen one
    (`models.ptb_lstm.BASE`'s), which names no warmup."""
    warmup = ("" if base_warmup_epochs is None
              else f"_w{float(base_warmup_epochs):g}")
    return (f"ptb_small_{schedule}_b{batch_size}{warmup}_s{seed}"
            f"_e{float(epochs):g}")


def named_warmup(warmup):
    """`warmup` as run names and rows carry it: None for no warmup given or
    for the frozen one (`models.ptb_lstm.BASE`'s), so that passing the
    frozen value reuses the frozen sweep's runs."""
    if warmup is None:
        return None  # the default sweep: no TensorFlow in this process
    from models import ptb_lstm

    return None if warmup == ptb_lstm.BASE["base_warmup_epochs"] else warmup


def row_warmup(row):
    """A row's base warmup in epochs, None for the frozen one."""
    text = row.get("base_warmup_epochs")
    return float(text) if text else None


def add_warmup_argument(parser):
    parser.add_argument(
        "--base_warmup_epochs", type=float, default=None,
        help="LEGW's base warmup at batch 20, in epochs (default: the frozen "
             "0.1 of models.ptb_lstm.BASE); only with the legw plan")


def main():
    args = sweep_runner.sweep_arguments(
        __doc__, epochs=3, csv_path="docs/results/ptb_sweep.csv",
        runs_dir="runs/ptb_sweep", plans=tuple(PLANS),
        add_arguments=add_warmup_argument)
    warmup = named_warmup(args.base_warmup_epochs)
    if warmup is not None and args.plan != "legw":
        raise SystemExit("--base_warmup_epochs is LEGW's: use it with "
                         f"--plan=legw, not --plan={args.plan} (AutoWarmup "
                         "finds its own warmup).")
    done = {run_name(r["schedule"], r["batch_size"], r["seed"], r["epochs"],
                     row_warmup(r))
            for r in sweep_runner.read_rows(args.csv)}

    def train(schedule, batch_size, name):
        extra = EXTRA_ARGUMENTS.get(schedule, {})
        if warmup is not None:
            extra = dict(extra, base_warmup_epochs=warmup)
        results = sweep_runner.run_in_child("ptb_lstm", dict(
            extra, config="small", schedule=schedule, batch_size=batch_size,
            seed=args.seed, epochs=args.epochs, data_dir=args.data_dir,
            model_dir=os.path.join(args.runs_dir, name), verbose=0))
        sweep_runner.record_run(
            args.csv, name, dict(schedule=schedule, batch_size=batch_size,
                                 seed=args.seed, epochs=args.epochs),
            ["test_perplexity"], results,
            {k: v for k, v in extra.items()
             if k in sweep_runner.AUTOWU_COLUMNS}
            | {"base_warmup_epochs": "" if warmup is None else warmup})

    jobs = []
    for schedule, batch_size in PLANS[args.plan]:
        if warmup is not None and schedule != "legw":
            continue  # no warmup: the frozen sweep's run
        name = run_name(schedule, batch_size, args.seed, args.epochs, warmup)
        if name not in done and (args.batch_sizes is None
                                 or batch_size in args.batch_sizes):
            jobs.append(functools.partial(train, schedule, batch_size, name))
    sweep_runner.run_all(jobs, args.workers)

if __name__ == "__main__":
    main()
