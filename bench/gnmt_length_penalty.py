"""GNMT's decoding length penalty, chosen once on Multi30k's val split at the
base batch and then applied to every batch of the sweep (no retuning).

    python -m bench.gnmt_length_penalty --epochs=13
    python -m bench.gnmt_length_penalty --epochs=13 \
        --base_learning_rate=0.002 --dropout=0.2     # the base before tuning

The trained runs of `bench.gnmt_sweep` (same `--epochs`) translate again
from their checkpoints (`models.gnmt.translate_trained`, beam width 4):
1. the base run (batch 128) translates val at each alpha of ALPHAS;
2. the alpha with the highest val BLEU (the smallest on a tie) translates
   test for every run of the sweep, and so does alpha 0 (the runs' own
   decoding, so that their BLEU is checked against sacrebleu too).
Each translation is one row of `docs/results/gnmt_length_penalty.csv`:
batch_size, epochs, base_learning_rate, dropout (the sweep's base, as
`bench.gnmt_sweep` takes it), split, length_penalty, bleu (keras-hub's Bleu,
as the runs report it), sacrebleu (`sacrebleu.corpus_bleu` on the same
translations: 13a tokenization, case-sensitive) and length_ratio
(translation over reference length, sacrebleu's). Finished rows are skipped
on a rerun. Needs `pip install sacrebleu` (in the test extras).
"""

import argparse
import functools
import os

from bench import gnmt_sweep, sweep_runner

ALPHAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
COLUMNS = ["batch_size", "epochs", "base_learning_rate", "dropout", "split",
           "length_penalty", "bleu", "sacrebleu", "length_ratio"]


@functools.lru_cache(maxsize=None)
def references(split, data_dir):
    """The English references of Multi30k's `split`, read once a process."""
    from models import gnmt

    return gnmt.load_pairs("multi30k", "de", data_dir)[split][1]


def translation_row(model_dir, split, alpha, data_dir):
    """BLEU by keras-hub and by sacrebleu of `split` translated by the run
    in `model_dir` with length penalty `alpha`."""
    import sacrebleu

    from models import gnmt

    score, translations = gnmt.translate_trained(
        model_dir, split, data_dir=data_dir, beam_width=4,
        length_penalty=alpha)
    checked = sacrebleu.corpus_bleu(translations,
                                    [references(split, data_dir)])
    return dict(split=split, length_penalty=alpha, bleu=round(score, 2),
                sacrebleu=round(checked.score, 2),
                length_ratio=round(checked.sys_len / checked.ref_len, 3))


def of_sweep(row, epochs, base):
    """Whether a CSV row belongs to the sweep of `epochs` at `base` (base
    learning rate, dropout)."""
    return (float(row["epochs"]) == epochs and
            gnmt_sweep.row_base(row) == base)


def best_alpha(rows, epochs, base):
    """The alpha of the highest val BLEU among the `rows` of the sweep of
    `epochs` at `base` (the smallest alpha on a tie); None until every alpha
    of ALPHAS has its row."""
    val = {float(r["length_penalty"]): float(r["bleu"]) for r in rows
           if r["split"] == "val" and of_sweep(r, epochs, base)}
    if set(ALPHAS) - set(val):
        return None
    return max(ALPHAS, key=lambda alpha: (val[alpha], -alpha))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv",
                        default="docs/results/gnmt_length_penalty.csv")
    parser.add_argument("--sweep_csv", default="docs/results/gnmt_sweep.csv")
    parser.add_argument("--runs_dir", default="runs/gnmt_sweep")
    parser.add_argument("--data_dir", default=None)
    gnmt_sweep.add_base_arguments(parser)
    args = parser.parse_args()
    base = gnmt_sweep.base_of(args)

    def done(batch_size, split, alpha):
        return any(int(r["batch_size"]) == batch_size and r["split"] == split
                   and float(r["length_penalty"]) == alpha
                   and of_sweep(r, args.epochs, base)
                   for r in sweep_runner.read_rows(args.csv))

    def record(batch_size, split, alpha):
        if not done(batch_size, split, alpha):
            model_dir = os.path.join(args.runs_dir, gnmt_sweep.run_name(
                batch_size, args.seed, args.epochs, *base))
            row = translation_row(model_dir, split, alpha, args.data_dir)
            sweep_runner.append_row(args.csv, COLUMNS, dict(
                row, batch_size=batch_size, epochs=args.epochs,
                base_learning_rate=base[0], dropout=base[1]))
            print(row, flush=True)

    for alpha in ALPHAS:
        record(gnmt_sweep.BATCH_SIZES[0], "val", alpha)
    alpha = best_alpha(sweep_runner.read_rows(args.csv), args.epochs, base)
    trained = sorted({int(r["batch_size"]) for r in sweep_runner.read_rows(
        args.sweep_csv) if of_sweep(r, args.epochs, base)
        and r["schedule"] == "legw"})
    for batch_size in trained:
        for each in sorted({0.0, alpha}):
            record(batch_size, "test", each)


if __name__ == "__main__":
    main()
