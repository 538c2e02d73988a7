"""Plots and tables of the PTB and GNMT sweeps (docs/results/).

    python -m bench.sequence_plots

Reads docs/results/ptb_sweep.csv and gnmt_sweep.csv and, where the runs are
still on disk (runs/ptb_sweep, runs/gnmt_sweep), their per-epoch histories,
copied into docs/results/sequence_curves.csv so the curves survive. Writes

  ptb_sweep.png               final test perplexity against batch size
  gnmt_sweep.png              final test BLEU against batch size
  ptb_perplexity_curves.png   test perplexity against epoch, one line a run
  gnmt_perplexity_curves.png  the same for GNMT

and prints the Markdown tables used in docs/results/ptb.md and gnmt.md.
"""

import collections
import csv
import glob
import json
import os
import re

from bench.gnmt_sweep import row_base
from bench.ptb_sweep import row_warmup
from bench.plot_style import SCHEDULE_COLORS, SCHEDULE_NAMES, plain_log_ticks
from bench.sweep_runner import read_rows

RESULTS = "docs/results"
CURVES_CSV = os.path.join(RESULTS, "sequence_curves.csv")
GNMT_PENALTY_CSV = os.path.join(RESULTS, "gnmt_length_penalty.csv")
GNMT_TUNING_CSV = os.path.join(RESULTS, "gnmt_tuning.csv")
PTB_TUNING_CSV = os.path.join(RESULTS, "ptb_tuning.csv")
SWEEPS = {"ptb": ("runs/ptb_sweep", os.path.join(RESULTS, "ptb_sweep.csv")),
          "gnmt": ("runs/gnmt_sweep", os.path.join(RESULTS, "gnmt_sweep.csv"))}


def export_curves():
    """Copies the finished runs' per-epoch test perplexities into CURVES_CSV
    (runs no longer on disk keep their earlier rows)."""
    rows = {}
    if os.path.exists(CURVES_CSV):
        for row in read_rows(CURVES_CSV):
            rows.setdefault((row["sweep"], row["run"]), []).append(row)
    for sweep, (runs_dir, _) in SWEEPS.items():
        for path in sorted(glob.glob(os.path.join(runs_dir, "*",
                                                  "history.json"))):
            name = os.path.basename(os.path.dirname(path))
            if not os.path.exists(os.path.join(os.path.dirname(path),
                                               "results.json")):
                continue  # unfinished: its curve waits for its end
            with open(path) as f:
                rows[(sweep, name)] = [dict(
                    sweep=sweep, run=name, epoch=round(e["epoch"], 4),
                    step=e["step"], train_seconds=round(e["train_seconds"], 1),
                    test_perplexity=round(e["metrics"]["test_perplexity"], 3))
                    for e in json.load(f)]
    with open(CURVES_CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["sweep", "run", "epoch", "step",
                                               "train_seconds",
                                               "test_perplexity"])
        writer.writeheader()
        for key in sorted(rows):
            writer.writerows(rows[key])


LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")  # one per base (GNMT's rate and dropout)
PERPLEXITY_TICKS = (10, 12, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700,
                    1000, 2000, 3000, 5000)
FINE_PERPLEXITY_TICKS = tuple(range(60, 300, 10))


RUN_NAME = re.compile(r"[a-z]+_[a-z0-9]+_(?P<schedule>[a-z]+)_b(?P<batch>\d+)"
                      r"(?:_lr(?P<rate>[^_]+)_d(?P<dropout>[^_]+))?"
                      r"(?:_w(?P<warmup>[^_]+))?_s\d+_e(?P<epochs>[^_]+)$")


def run_label(run):
    """(schedule, batch, base, legend text) of a run folder name such as
    `ptb_small_legw_b80_s0_e3` or, with its base rate and dropout,
    `gnmt_small_legw_b512_lr0.004_d0.1_s0_e13` or, with a base warmup other
    than the frozen one, `ptb_small_legw_b20_w0.025_s0_e13` (base: the
    rate and dropout, or the 1-tuple of the warmup, as written; or None)."""
    match = RUN_NAME.match(run)
    if not match:
        raise ValueError(f"{run!r} is not a sweep's run name")
    schedule, batch = match["schedule"], int(match["batch"])
    base = ((match["rate"], match["dropout"]) if match["rate"] else
            (match["warmup"],) if match["warmup"] else None)
    return (schedule, batch, base,
            f"{SCHEDULE_NAMES.get(schedule, schedule)}, batch {batch} "
            f"({match['epochs']} epochs{base_text(base)})")


def base_text(base):
    """", base rate R, dropout D" of a (rate, dropout) base, ", base warmup
    W epochs" of a (warmup,) one; "" for None."""
    if not base:
        return ""
    if len(base) == 1:
        return f", base warmup {base[0]} epochs"
    return f", base rate {base[0]}, dropout {base[1]}"


def plot_curves():
    """Test perplexity against epoch, one line a run: the schedule's colour,
    a line style per batch."""
    plt = _pyplot()
    from matplotlib import ticker
    curves = collections.defaultdict(list)
    for row in read_rows(CURVES_CSV):
        curves[(row["sweep"], row["run"])].append(
            (float(row["epoch"]), float(row["test_perplexity"])))
    for sweep in SWEEPS:
        runs = {run: points for (s, run), points in curves.items()
                if s == sweep}
        if not runs:
            continue
        # The longest budget only: the short-budget runs stay in the CSVs.
        longest = max((run.rsplit("_e", 1)[1] for run in runs), key=float)
        runs = {run: points for run, points in runs.items()
                if run.rsplit("_e", 1)[1] == longest}
        labels = {run: run_label(run) for run in runs}
        batches = sorted({label[1] for label in labels.values()})
        bases = sorted({label[2] for label in labels.values()}, key=str)
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for run, points in sorted(runs.items(), key=lambda kv: (
                labels[kv[0]][1], str(labels[kv[0]][2]))):
            schedule, batch, base, label = labels[run]
            ax.plot(*zip(*points), label=label,
                    marker=MARKERS[bases.index(base) % len(MARKERS)],
                    color=SCHEDULE_COLORS.get(schedule, "black"),
                    linestyle=LINESTYLES[batches.index(batch) % 4])
        ax.set(xlabel="epoch", ylabel="test perplexity", yscale="log",
               title=f"{sweep.upper()}: test perplexity during training")
        values = [p for points in runs.values() for _, p in points]
        # A narrow range (the 13-epoch runs at 20) gets every 10.
        ticks = FINE_PERPLEXITY_TICKS if max(values) < 3 * min(values) \
            else PERPLEXITY_TICKS
        plain_log_ticks(ax.yaxis, [t for t in ticks
                                   if min(values) / 1.05 <= t
                                   <= max(values) * 1.05])
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(RESULTS, f"{sweep}_perplexity_curves.png"),
                    dpi=100)
        plt.close(fig)


def plot_sweeps():
    """The final metric against batch, one line a schedule."""
    plt = _pyplot()
    for sweep, metric, label in (("ptb", "test_perplexity", "test perplexity"),
                                 ("gnmt", "test_bleu", "test BLEU")):
        rows = read_rows(SWEEPS[sweep][1])
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        runs = collections.defaultdict(list)
        for r in rows:
            base = ((r["base_learning_rate"], r["dropout"])
                    if r.get("base_learning_rate") else None)
            runs[(float(r["epochs"]), str(base), base, r["schedule"])].append(
                (int(r["batch_size"]), float(r[metric])))
        bases = sorted({key[1] for key in runs})
        for (epochs, key, base, schedule), points in sorted(runs.items()):
            ax.plot(*zip(*sorted(points)),
                    marker=MARKERS[bases.index(key) % len(MARKERS)],
                    color=SCHEDULE_COLORS.get(schedule, "black"),
                    label=f"{SCHEDULE_NAMES.get(schedule, schedule)}, "
                          f"{epochs:g} epochs{base_text(base)}")
        ax.set(xscale="log", xlabel="global batch size", ylabel=label,
               title=f"{sweep.upper()}: {label} against batch size")
        plain_log_ticks(ax.xaxis, {int(r["batch_size"]) for r in rows})
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(RESULTS, f"{sweep}_sweep.png"), dpi=100)
        plt.close(fig)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def table(path, columns):
    rows = read_rows(path)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |"
              for row in rows]
    return "\n".join(lines)


def ptb_budget_table(rows, epochs, warmup=None, base_batch=20, base_rate=1.0,
                     frozen_warmup=0.1):
    """The PTB rows of one epoch budget and LEGW base warmup (None: the
    frozen 0.1 epochs) as a Markdown table (the tutorial's schedule, then
    LEGW, then AutoWarmup, each by batch), each against the tutorial's
    schedule and LEGW at the base batch (rate 1.0 at batch 20). AutoWarmup
    (in the frozen table) shows its decision: the peak rate and the switch
    step in epochs."""
    base_warmup = frozen_warmup if warmup is None else warmup
    order = {"reference": 0, "legw": 1, "autowu": 2}
    rows = sorted((r for r in rows if float(r["epochs"]) == epochs and (
                       r["schedule"] == "reference" or row_warmup(r) == warmup)),
                  key=lambda r: (order.get(r["schedule"], 3),
                                 int(r["batch_size"])))
    by = {(r["schedule"], int(r["batch_size"])): float(r["test_perplexity"])
          for r in rows}
    lines = ["| schedule | batch | peak rate | warmup epochs | steps | test "
             "perplexity | vs reference | vs LEGW at 20 | training seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        batch, value = int(r["batch_size"]), float(r["test_perplexity"])
        k = batch / base_batch
        peak, warmup = {
            "legw": (base_rate * k ** 0.5, base_warmup * k),
            "autowu": (float(r.get("peak_learning_rate") or "nan"),
                       epochs * float(r.get("warmup_steps") or "nan")
                       / int(r["steps"])),
        }.get(r["schedule"], (base_rate, 0))
        versus = [f"{100 * (value / by[key] - 1):+.1f}%" if key in by else ""
                  for key in (("reference", base_batch), ("legw", base_batch))]
        name = {"legw": "LEGW", "autowu": "AutoWarmup"}.get(r["schedule"],
                                                          r["schedule"])
        lines.append(
            f"| {name} | {batch}{f' ({k:g}x)' if k > 1 else ''} | {peak:.3g} "
            f"| {warmup:.3g} | {r['steps']} | {value:.2f} | "
            f"{' | '.join(versus)} | {float(r['wall_seconds']):.0f} |")
    return "\n".join(lines)


def ptb_tuning_table(rows, epochs, steps_per_epoch=2323):
    """PTB's base warmup candidates at batch 20 and `epochs`, by valid
    perplexity (the choice is the first); test is shown, not chosen on."""
    rows = sorted((r for r in rows if float(r["epochs"]) == epochs),
                  key=lambda r: float(r["valid_perplexity"]))
    lines = ["| base warmup epochs | warmup steps | valid perplexity | test "
             "perplexity | training seconds |", "|---|---|---|---|---|"]
    for r in rows:
        warmup = float(r["base_warmup_epochs"])
        lines.append(f"| {warmup:g} | {round(warmup * steps_per_epoch)} | "
                     f"{float(r['valid_perplexity']):.2f} | "
                     f"{float(r['test_perplexity']):.2f} | "
                     f"{float(r['wall_seconds']):.0f} |")
    return "\n".join(lines)


def gnmt_sweeps(rows):
    """(epochs, (base learning rate, dropout)) of each GNMT sweep in the
    rows of `docs/results/gnmt_sweep.csv`, sorted."""
    return sorted({(float(r["epochs"]), row_base(r)) for r in rows})


def gnmt_budget_table(rows, penalty_rows, epochs, base, base_batch=128,
                      base_warmup=0.25):
    """GNMT's LEGW rows of the sweep of `epochs` at `base` (base learning
    rate, dropout) as a Markdown table, by batch: LEGW's peak and warmup,
    the test perplexity, the run's own BLEU (no length penalty) and, from
    `bench.gnmt_length_penalty`'s rows, sacrebleu on the same decoding and
    the test BLEU at the length penalty chosen on val, with the
    translations' length ratio; then training seconds, micro-batches and
    peak memory."""
    from bench.gnmt_length_penalty import best_alpha, of_sweep

    alpha = best_alpha(penalty_rows, epochs, base)
    tested = {(int(r["batch_size"]), float(r["length_penalty"])): r
              for r in penalty_rows
              if of_sweep(r, epochs, base) and r["split"] == "test"}
    rows = sorted((r for r in rows if of_sweep(r, epochs, base)
                   and r["schedule"] == "legw"),
                  key=lambda r: int(r["batch_size"]))
    base_rate = base[0]
    lines = ["| batch | peak rate | warmup epochs | steps | test perplexity "
             "| BLEU (sacrebleu) | BLEU at the val-chosen alpha "
             f"{'' if alpha is None else f'{alpha:g} '}(sacrebleu) | length "
             "ratio | training seconds | micro-batches | peak memory GiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        batch = int(r["batch_size"])
        k = batch / base_batch
        plain, chosen = tested.get((batch, 0.0)), tested.get((batch, alpha))
        own = f"{float(r['test_bleu']):.2f}"
        if plain:
            own += f" ({float(plain['sacrebleu']):.2f})"
        penalized, ratio = "", ""
        if chosen:
            penalized = (f"{float(chosen['bleu']):.2f} "
                         f"({float(chosen['sacrebleu']):.2f})")
            ratio = chosen["length_ratio"]
        lines.append(
            f"| {batch}{f' ({k:g}x)' if k > 1 else ''} | "
            f"{base_rate * k ** 0.5:.3g} | {base_warmup * k:g} | {r['steps']} "
            f"| {float(r['test_perplexity']):.2f} | {own} | {penalized} | "
            f"{ratio} | {float(r['wall_seconds']):.0f} | "
            f"{r.get('gradient_accumulation_steps') or 1} | "
            f"{r.get('peak_rss_gib') or ''} |")
    return "\n".join(lines)


def gnmt_tuning_table(tuning_rows, sweep_rows, penalty_rows, epochs):
    """GNMT's base candidates at batch 128 and `epochs`, by val BLEU: those
    of `bench.gnmt_tuning` and the sweeps' own base-batch runs at other
    bases (their val BLEU from the length-penalty rows at alpha 0; empty
    if not decoded). Test numbers are shown, not chosen on."""
    from bench.gnmt_length_penalty import of_sweep

    rows = {row_base(r): r
            for r in tuning_rows if float(r["epochs"]) == epochs}
    for r in sweep_rows:
        base = row_base(r)
        if (base not in rows and float(r["epochs"]) == epochs
                and int(r["batch_size"]) == 128):
            val = [p["bleu"] for p in penalty_rows if of_sweep(p, epochs, base)
                   and p["split"] == "val" and int(p["batch_size"]) == 128
                   and float(p["length_penalty"]) == 0.0]
            rows[base] = dict(r, val_bleu=val[0] if val else "")
    lines = ["| base rate | dropout | val BLEU | test BLEU | test perplexity "
             "| training seconds |", "|---|---|---|---|---|---|"]
    for (rate, dropout), r in sorted(rows.items(), key=lambda kv: -float(
            kv[1]["val_bleu"] or "-1")):
        val = f"{float(r['val_bleu']):.2f}" if r["val_bleu"] else ""
        lines.append(f"| {rate:g} | {dropout:g} | {val} | "
                     f"{float(r['test_bleu']):.2f} | "
                     f"{float(r['test_perplexity']):.2f} | "
                     f"{float(r['wall_seconds']):.0f} |")
    return "\n".join(lines)


def main():
    export_curves()
    plot_curves()
    plot_sweeps()
    for sweep, (_, path) in SWEEPS.items():
        if os.path.exists(path):
            metric = ["test_perplexity"] if sweep == "ptb" else \
                ["test_bleu", "test_perplexity"]
            print(f"{sweep}:")
            print(table(path, ["schedule", "batch_size", "epochs", *metric,
                               "steps", "wall_seconds", "tokens_per_second"]))
    ptb_rows = read_rows(SWEEPS["ptb"][1])
    for epochs, warmup in sorted({(float(r["epochs"]), row_warmup(r))
                                  for r in ptb_rows},
                                 key=lambda t: (t[0], t[1] or 0)):
        print(f"\nptb, {epochs:g} epochs"
              + ("" if warmup is None else f", base warmup {warmup:g}") + ":")
        print(ptb_budget_table(ptb_rows, epochs, warmup))
    ptb_tuning_rows = read_rows(PTB_TUNING_CSV)
    for epochs in sorted({float(r["epochs"]) for r in ptb_tuning_rows}):
        print(f"\nptb, base warmup tuning at batch 20, {epochs:g} epochs:")
        print(ptb_tuning_table(ptb_tuning_rows, epochs))
    gnmt_rows = read_rows(SWEEPS["gnmt"][1])
    penalty_rows = read_rows(GNMT_PENALTY_CSV)
    tuning_rows = read_rows(GNMT_TUNING_CSV)
    for epochs in sorted({float(r["epochs"]) for r in tuning_rows}):
        print(f"\ngnmt, base tuning at batch 128, {epochs:g} epochs:")
        print(gnmt_tuning_table(tuning_rows, gnmt_rows, penalty_rows, epochs))
    for epochs, base in gnmt_sweeps(gnmt_rows):
        print(f"\ngnmt, {epochs:g} epochs, base rate {base[0]:g}, dropout "
              f"{base[1]:g}:")
        print(gnmt_budget_table(gnmt_rows, penalty_rows, epochs, base))


if __name__ == "__main__":
    main()
