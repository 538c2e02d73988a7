"""PTB's LEGW base warmup tuned at the base batch (20) only, chosen on PTB's
valid split, before any large-batch run uses it.

    python -m bench.ptb_tuning --epochs=13 --warmups=0.025,0.1,0.4

Trains LEGW at batch 20 for `--epochs` with each base warmup (in epochs; at
batch 20 one epoch is 2,323 steps), the rest of `models.ptb_lstm`'s frozen
base unchanged (SGD at 1.0, polynomial decay to 0, gradients clipped to norm
5), then evaluates its final checkpoint on valid
(`models.ptb_lstm.perplexity_of_trained`). Each finished candidate is
appended at once to `docs/results/ptb_tuning.csv`: base_warmup_epochs,
epochs, seed, valid_perplexity (the choice is the lowest), test_perplexity
(reported, not chosen on), steps, wall_seconds (training seconds),
tokens_per_second (empty when a resumed run had no steps left to time).
Rerunning skips finished candidates. The candidate at the frozen warmup
(0.1) is `bench.ptb_sweep`'s LEGW run at batch 20 (same name, same
runs_dir), so a sweep's finished run is evaluated, not trained again; the
others are named with their warmup (`ptb_small_legw_b20_w0.025_s0_e13`).
"""

import functools
import os

from bench import ptb_sweep, sweep_runner

BATCH_SIZE = 20


def candidate_name(args, warmup):
    """The run's name: the sweep's own at the frozen base warmup."""
    return ptb_sweep.run_name("legw", BATCH_SIZE, args.seed, args.epochs,
                              ptb_sweep.named_warmup(warmup))


def train_candidate(args, warmup):
    """Trains one candidate (or resumes it), evaluates valid, appends its
    row."""
    from models import ptb_lstm

    name = candidate_name(args, warmup)
    model_dir = os.path.join(args.runs_dir, name)
    results = sweep_runner.run_in_child("ptb_lstm", dict(
        config="small", schedule="legw", batch_size=BATCH_SIZE,
        seed=args.seed, epochs=args.epochs, base_warmup_epochs=warmup,
        data_dir=args.data_dir, model_dir=model_dir, verbose=0))
    results["valid_perplexity"] = ptb_lstm.perplexity_of_trained(
        model_dir, "valid", data_dir=args.data_dir)
    sweep_runner.record_run(
        args.csv, name, dict(schedule="legw", batch_size=BATCH_SIZE,
                             seed=args.seed, epochs=args.epochs,
                             base_warmup_epochs=warmup),
        ["valid_perplexity", "test_perplexity"], results)


def main():
    parser = sweep_runner.sweep_parser(
        __doc__, epochs=13, csv_path="docs/results/ptb_tuning.csv",
        runs_dir="runs/ptb_sweep")
    parser.add_argument("--warmups", required=True, type=lambda text: [
                            float(w) for w in text.split(",")],
                        help="base warmups in epochs (comma-separated)")
    args = parser.parse_args()
    done = {float(r["base_warmup_epochs"]) for r in
            sweep_runner.read_rows(args.csv)
            if float(r["epochs"]) == args.epochs
            and int(r["seed"]) == args.seed}
    sweep_runner.run_all([functools.partial(train_candidate, args, warmup)
                          for warmup in args.warmups if warmup not in done],
                         args.workers)


if __name__ == "__main__":
    main()
