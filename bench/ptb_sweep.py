"""PTB small-config sweep (issue 5): the tutorial's schedule at batch 20 and
LEGW at 20, 80 and 320 (16x), one equal epoch budget, no retuning.

    python -m bench.ptb_sweep --epochs=3

The tutorial trains 13 epochs; on a two-core CPU one epoch at batch 20 takes
minutes, so the sweep uses a smaller budget (`--epochs`, the same for every
run; the README gives the one used). At that budget the `reference` run is
the tutorial's first epochs (rate 1.0; its halving starts after epoch 4).
Each finished run is appended at once to `docs/results/ptb_sweep.csv`
(schedule, batch_size, seed, epochs, test_perplexity, steps, wall_seconds =
training seconds, tokens_per_second); rerunning continues the sweep.
"""

import os

from bench import sweep_runner

RUNS = [("reference", 20), ("legw", 20), ("legw", 80), ("legw", 320)]


def run_name(schedule, batch_size, seed, epochs):
    return f"ptb_small_{schedule}_b{batch_size}_s{seed}_e{float(epochs):g}"


def main():
    args = sweep_runner.sweep_arguments(
        __doc__, epochs=3, csv_path="docs/results/ptb_sweep.csv", runs_dir="runs/ptb_sweep")
    done = {run_name(r["schedule"], r["batch_size"], r["seed"], r["epochs"])
            for r in sweep_runner.read_rows(args.csv)}
    for schedule, batch_size in RUNS:
        name = run_name(schedule, batch_size, args.seed, args.epochs)
        if name in done:
            continue
        results = sweep_runner.run_in_child("ptb_lstm", dict(
            config="small", schedule=schedule, batch_size=batch_size,
            seed=args.seed, epochs=args.epochs, data_dir=args.data_dir,
            model_dir=os.path.join(args.runs_dir, name), verbose=0))
        sweep_runner.record_run(
            args.csv, name, dict(schedule=schedule, batch_size=batch_size,
                                 seed=args.seed, epochs=args.epochs),
            ["test_perplexity"], results)

if __name__ == "__main__":
    main()
