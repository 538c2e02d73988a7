"""GNMT small-config LEGW sweep on Multi30k German to English: the base
batch 128, 4x (512) and 8x (1024), one equal epoch budget, no retuning.

    python -m bench.gnmt_sweep --epochs=13   # the published budget (--epochs=5: the short one)

Batches above 512 train in micro-batches of 512 (`--gradient_accumulation_
steps`, the same update as the whole batch): a whole batch of 1024 does not
fit in this machine's 24 GiB, since the additive attention keeps batch x
target x source x units floats (1024 x 45 x 40 x 256 x 4 bytes, 1.9 GB a
tensor) several times for the backward pass (the process reached 23.7 GB
and was killed).

Each finished run is appended at once to `docs/results/gnmt_sweep.csv`
(schedule, batch_size, seed, epochs, test_bleu on test_2016_flickr with beam
width 4, test_perplexity, steps, wall_seconds = training seconds,
tokens_per_second, gradient_accumulation_steps, peak_rss_gib = the training
process's peak resident memory); rerunning continues the sweep. The base run's vocabulary
(built once, cached in its model_dir) is copied to the others, so every run
uses the same subwords.
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


def run_name(batch_size, seed, epochs):
    return f"gnmt_small_legw_b{batch_size}_s{seed}_e{float(epochs):g}"


def main():
    args = sweep_runner.sweep_arguments(
        __doc__, epochs=13, csv_path="docs/results/gnmt_sweep.csv",
        runs_dir="runs/gnmt_sweep")
    done = {run_name(r["batch_size"], r["seed"], r["epochs"])
            for r in sweep_runner.read_rows(args.csv)}
    base_dir = os.path.join(args.runs_dir,
                            run_name(BATCH_SIZES[0], args.seed, args.epochs))
    for batch_size in BATCH_SIZES:
        name = run_name(batch_size, args.seed, args.epochs)
        if name in done or (args.batch_sizes is not None
                            and batch_size not in args.batch_sizes):
            continue
        model_dir = os.path.join(args.runs_dir, name)
        os.makedirs(model_dir, exist_ok=True)
        for path in glob.glob(os.path.join(base_dir, "vocabulary.*.txt")):
            if not os.path.exists(os.path.join(model_dir,
                                               os.path.basename(path))):
                shutil.copy(path, model_dir)
        accumulation = accumulation_steps(batch_size)
        results = sweep_runner.run_in_child("gnmt", dict(
            config="small", batch_size=batch_size, seed=args.seed,
            epochs=args.epochs, data_dir=args.data_dir, model_dir=model_dir,
            gradient_accumulation_steps=accumulation, verbose=0))
        sweep_runner.record_run(
            args.csv, name, dict(schedule="legw", batch_size=batch_size,
                                 seed=args.seed, epochs=args.epochs),
            ["test_bleu", "test_perplexity"], results, dict(
                gradient_accumulation_steps=accumulation,
                peak_rss_gib=round(results["peak_rss_gib"], 1)))

if __name__ == "__main__":
    main()
