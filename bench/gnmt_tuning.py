"""GNMT's base hyperparameters tuned at the base batch (128) only, chosen on
Multi30k's val split, before any large-batch run uses them.

    python -m bench.gnmt_tuning --epochs=13 \
        --learning_rates=0.004,0.006,0.01,0.016 --dropouts=0.1 --workers=2

Trains one run per (base learning rate, dropout) of the grid at batch 128
for `--epochs` (the LEGW schedule at k = 1: the base warmup, then the
polynomial decay), then translates val with beam width 4 and no length
penalty (`models.gnmt.translate_trained`). Each finished candidate is
appended at once to `docs/results/gnmt_tuning.csv`: base_learning_rate,
dropout, epochs, seed, val_bleu (the choice is the highest), test_bleu and
test_perplexity (reported, not chosen on), steps, wall_seconds (training
seconds; contended when --workers=2) and tokens_per_second. Rerunning skips
finished candidates. A candidate's run is named as `bench.gnmt_sweep` names
its base-batch run at that base (in the same runs_dir), so the sweep at the
chosen base reuses it instead of training batch 128 again. The base before
tuning (2e-3, dropout 0.2) has its val BLEU at alpha 0 in
`docs/results/gnmt_length_penalty.csv`.
"""

import functools
import os
import threading

from bench import gnmt_sweep, sweep_runner

BATCH_SIZE = 128
# Candidates train in child processes; their val translations run in this
# one, one at a time (two threads building Keras models at once may clash).
_TRANSLATE_LOCK = threading.Lock()


def floats(text):
    return [float(value) for value in text.split(",")]


def train_candidate(args, learning_rate, dropout):
    """Trains one candidate, translates val and appends its row."""
    from models import gnmt

    name = gnmt_sweep.run_name(BATCH_SIZE, args.seed, args.epochs,
                               learning_rate, dropout)
    model_dir = os.path.join(args.runs_dir, name)
    results = sweep_runner.run_in_child("gnmt", dict(
        config="small", batch_size=BATCH_SIZE, seed=args.seed,
        epochs=args.epochs, base_learning_rate=learning_rate,
        dropout=dropout, data_dir=args.data_dir, model_dir=model_dir,
        verbose=0))
    with _TRANSLATE_LOCK:
        results["val_bleu"], _ = gnmt.translate_trained(
            model_dir, "val", data_dir=args.data_dir)
    sweep_runner.record_run(
        args.csv, name, dict(schedule="legw", batch_size=BATCH_SIZE,
                             seed=args.seed, epochs=args.epochs,
                             base_learning_rate=learning_rate,
                             dropout=dropout),
        ["val_bleu", "test_bleu", "test_perplexity"], results)


def main():
    parser = sweep_runner.sweep_parser(
        __doc__, epochs=13, csv_path="docs/results/gnmt_tuning.csv",
        runs_dir="runs/gnmt_sweep")
    parser.add_argument("--learning_rates", type=floats, required=True,
                        help="base learning rates (comma-separated)")
    parser.add_argument("--dropouts", type=floats, required=True,
                        help="dropout rates (comma-separated)")
    args = parser.parse_args()
    done = {gnmt_sweep.row_name(r) for r in sweep_runner.read_rows(args.csv)}
    jobs = [functools.partial(train_candidate, args, rate, dropout)
            for rate in args.learning_rates for dropout in args.dropouts
            if gnmt_sweep.run_name(BATCH_SIZE, args.seed, args.epochs, rate,
                                   dropout) not in done]
    sweep_runner.run_all(jobs, args.workers)


if __name__ == "__main__":
    main()
