"""GNMT small-config LEGW sweep on Multi30k German to English: the base
batch 128, 4x (512) and 8x (1024), one equal epoch budget, no retuning.

    python -m bench.gnmt_sweep --epochs=13   # at the tuned base
    python -m bench.gnmt_sweep --epochs=13 --base_learning_rate=0.002 \
        --dropout=0.2   # the base before tuning (--epochs=5: the short one)

The base (learning rate at batch 128, dropout) is `models.gnmt`'s `BASE`
and small config unless --base_learning_rate / --dropout name another; it
is part of every run's name and row, so sweeps at two bases sit side by
side.

Batches above 512 train in micro-batches of 512 (`--gradient_accumulation_
steps`, the same update as the whole batch): a whole batch of 1024 does not
fit in this machine's 24 GiB, since the additive attention keeps batch x
target x source x units floats (1024 x 45 x 40 x 256 x 4 bytes, 1.9 GB a
tensor) several times for the backward pass (the process reached 23.7 GB
and was killed).

Each finished run is appended at once to `docs/results/gnmt_sweep.csv`
(schedule, batch_size, seed, epochs, base_learning_rate, dropout, test_bleu
on test_2016_flickr with beam width 4, test_perplexity, steps, wall_seconds
= training seconds, tokens_per_second, gradient_accumulation_steps,
peak_rss_gib = the training process's peak resident memory, empty if it had
no step left to train); rerunning continues the sweep. The base run's
vocabulary (built once, cached in its model_dir) is copied to the others, so
every run uses the same subwords. A base-batch run that `bench.gnmt_tuning`
trained (same name, same runs_dir) is not trained again: the sweep resumes
it, finds no step left, and records its test numbers.
"""

import glob
import os
import shutil

from bench import sweep_runner

BATCH_SIZES = (128, 512, 1024)
MICRO_BATCH = 512  # the largest batch measured to fit whole


def accumulation_steps(batch_size):
    """Micro-batches a step of `batch_size` trains in (at most MICRO_BATCH
    pairs each)."""
    return max(1, -(-batch_size // MICRO_BATCH))


def add_base_arguments(parser):
    """--base_learning_rate and --dropout, read by `base_of`."""
    parser.add_argument("--base_learning_rate", type=float, default=None,
                        help="Adam's rate at batch 128 (default: "
                             "models.gnmt.BASE's)")
    parser.add_argument("--dropout", type=float, default=None,
                        help="default: the small config's")


def base_of(args):
    """(base learning rate, dropout) of parsed `args`, models.gnmt's where
    unset."""
    from models import gnmt

    rate, dropout = args.base_learning_rate, args.dropout
    return (gnmt.BASE["base_learning_rate"] if rate is None else rate,
            gnmt.CONFIGS["small"]["dropout"] if dropout is None else dropout)


def run_name(batch_size, seed, epochs, base_rate, dropout):
    return (f"gnmt_small_legw_b{batch_size}_lr{base_rate:g}_d{dropout:g}"
            f"_s{seed}_e{float(epochs):g}")


def row_base(row):
    """(base learning rate, dropout) of a CSV row, as `base_of` gives it."""
    return float(row["base_learning_rate"]), float(row["dropout"])


def row_name(row):
    """`run_name` of a CSV row."""
    return run_name(int(row["batch_size"]), int(row["seed"]),
                    float(row["epochs"]), *row_base(row))


def main():
    args = sweep_runner.sweep_arguments(
        __doc__, epochs=13, csv_path="docs/results/gnmt_sweep.csv",
        runs_dir="runs/gnmt_sweep", add_arguments=add_base_arguments)
    base_rate, dropout = base_of(args)
    done = {row_name(r) for r in sweep_runner.read_rows(args.csv)}

    def name(batch_size):
        return run_name(batch_size, args.seed, args.epochs, base_rate, dropout)

    base_dir = os.path.join(args.runs_dir, name(BATCH_SIZES[0]))
    for batch_size in BATCH_SIZES:
        wanted = args.batch_sizes is None or batch_size in args.batch_sizes
        if name(batch_size) in done or not wanted:
            continue
        model_dir = os.path.join(args.runs_dir, name(batch_size))
        os.makedirs(model_dir, exist_ok=True)
        for path in glob.glob(os.path.join(base_dir, "vocabulary.*.txt")):
            if not os.path.exists(os.path.join(model_dir,
                                               os.path.basename(path))):
                shutil.copy(path, model_dir)
        accumulation = accumulation_steps(batch_size)
        results = sweep_runner.run_in_child("gnmt", dict(
            config="small", batch_size=batch_size, seed=args.seed,
            epochs=args.epochs, base_learning_rate=base_rate, dropout=dropout,
            data_dir=args.data_dir, model_dir=model_dir,
            gradient_accumulation_steps=accumulation, verbose=0))
        trained = results["steps"] > results["resumed_from_step"]
        sweep_runner.record_run(
            args.csv, name(batch_size), dict(
                schedule="legw", batch_size=batch_size, seed=args.seed,
                epochs=args.epochs, base_learning_rate=base_rate,
                dropout=dropout),
            ["test_bleu", "test_perplexity"], results, dict(
                gradient_accumulation_steps=accumulation,
                peak_rss_gib=round(results["peak_rss_gib"], 1)
                if trained else ""))


if __name__ == "__main__":
    main()
