"""One figure per model for the adaptive batch's frozen default (issue 38):
the test metric against optimizer steps for the base batch, the best fixed
large batch with a curve, the hand ramp and the frozen default.

    python -m bench.frozen_default_plots

Reads the curves the studies wrote (mnist_lstm_curves.csv,
sequence_curves.csv, growing_batch_curves.csv, growing_trainer_curves.csv)
and writes docs/results/frozen_default_<model>.png (MNIST-LSTM, PTB-small,
GNMT-small); a curve not run yet is left out of its figure (and the figure
says so in its title).
"""

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

from bench import sweep_runner  # noqa: E402

RESULTS = "docs/results/"


def _fixed(label, path, run, style):
    return (label, path, dict(run=run), style)


def _trainer(label, model, config, seed="0", style="-"):
    """A curve of the zoo trainer's growing-batch study."""
    return (label, "growing_trainer_curves.csv",
            dict(model=model, config=config, seed=seed), style)


# model: (metric column, label, y limits, [(label, CSV, {column: value},
# style)]): each curve is the CSV's rows that match every column.
FIGURES = {
    "mnist_lstm": ("test_accuracy", "test accuracy", (0.95, 0.995), [
        _fixed("base: LEGW, Adam, fixed 128", "mnist_lstm_curves.csv",
               "legw_b128_s0_e25", ":"),
        _fixed("fixed 2048 (16x), LEGW, Adam", "mnist_lstm_curves.csv",
               "legw_b2048_s0_e25", "--"),
        ("hand ramp 256..8192, LAMB (fit)", "growing_batch_curves.csv",
         dict(config="lamb_sqrt_fast_ramp", seed="0"), "-"),
        *[(f"frozen default, seed {seed} (fit)", "growing_batch_curves.csv",
           dict(config="lamb_sqrt_noise_frozen", seed=seed), "-")
          for seed in ("0", "1")],
        _trainer("frozen default, seed 0 (trainer)", "mnist_lstm",
                 "lamb_sqrt_noise_frozen", style="-."),
    ]),
    "ptb_lstm": ("test_perplexity", "test perplexity", (100, 250), [
        _fixed("base: LEGW, fixed 20", "sequence_curves.csv",
               "ptb_small_legw_b20_s0_e13", ":"),
        _fixed("fixed 80 (4x), LEGW", "sequence_curves.csv",
               "ptb_small_legw_b80_s0_e13", "--"),
        _trainer("hand ramp 20..320", "ptb_lstm", "sgd_sqrt_ramp"),
        *[_trainer(f"frozen default, seed {seed}", "ptb_lstm",
                   "sgd_sqrt_noise_frozen", seed) for seed in ("0", "1")],
    ]),
    # GNMT's BLEU is decoded once, at the end: its curves are the test
    # perplexity of each epoch.
    "gnmt": ("test_perplexity", "test perplexity (BLEU: end only)", (8, 60), [
        _fixed("base: LEGW, Adam, fixed 128", "sequence_curves.csv",
               "gnmt_small_legw_b128_lr0.01_d0.1_s0_e13", ":"),
        _fixed("fixed 512 (4x), LEGW, Adam", "sequence_curves.csv",
               "gnmt_small_legw_b512_lr0.01_d0.1_s0_e13", "--"),
        _trainer("hand ramp 128..1024", "gnmt", "adam_sqrt_ramp"),
        _trainer("frozen default, seed 0", "gnmt", "adam_sqrt_noise_frozen"),
    ]),
}


def curve(path, match, metric):
    """(steps, values) of the rows of `path` that match `match`."""
    rows = [r for r in sweep_runner.read_rows(RESULTS + path)
            if all(r.get(k) == v for k, v in match.items())]
    # The trainer's curves name their metric column test_metric.
    column = metric if rows and metric in rows[0] else "test_metric"
    return sweep_runner.curve([r for r in rows if r[column]], column)


def figure(model, metric, label, limits, curves):
    fig, ax = plt.subplots(figsize=(7, 4.2))
    missing = []
    for name, path, match, style in curves:
        steps, values = curve(path, match, metric)
        if steps:
            ax.plot(steps, values, style, marker=".", label=name)
        else:
            missing.append(name)
    ax.set(xscale="log", xlabel="optimizer steps", ylabel=label,
           ylim=limits, title=model + (f" (not run yet: {', '.join(missing)})"
                                       if missing else ""))
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = f"{RESULTS}frozen_default_{model}.png"
    fig.savefig(path, dpi=120)
    print(path, "missing:", missing or "none")


def main():
    for model, (metric, label, limits, curves) in FIGURES.items():
        figure(model, metric, label, limits, curves)


if __name__ == "__main__":
    main()
