"""`python -m keras_legw plan`: preview a LEGW schedule before training.

    python -m keras_legw plan --base-lr 0.1 --base-batch 128 --batch 8192 \\
        --base-warmup-epochs 0.2 --num-examples 60000 --epochs 25 --plot lr.png

prints k, the peak rate, the warmup in epochs and steps, the total steps and a
table of the rate by epoch; `--plot` saves a PNG of the schedule beside the
linear-scaling (Goyal et al.) and no-warmup alternatives.

    python -m keras_legw plan --runs runs.csv --base-batch 128 \
        --num-examples 60000 --max-batch 8192
    python -m keras_legw plan --noise-scale 2000 --base-steps 2344 \
        --base-batch 128 --num-examples 60000

predicts, instead, the steps and epochs to a target at each batch (the
doublings of --base-batch up to --max-batch) from McCandlish et al.'s model
(`keras_legw.planner`): fitted to a CSV of measured runs (columns
batch_size, steps: the steps each took to the target), or from the noise
scale measured at --base-batch and that run's steps. `--plot` then draws
steps against batch, the measured points beside the model. Bad arguments
exit with status 2 and one line on stderr.
"""

import argparse
import importlib.util
import sys

import numpy as np

from keras_legw import planner, recipes, scaling
from keras_legw.batch_schedules import doublings
from keras_legw.schedules import DECAYS, LEGW

TABLE_ROWS = 11


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _build_parser():
    parser = _Parser(prog="python -m keras_legw", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser(
        "plan", help="print (and plot) the LEGW schedule for a batch size"
    )
    plan.error = parser.error  # one-line errors for the subcommand too
    plan.add_argument("--base-lr", type=float,
                      help="learning rate tuned at --base-batch")
    plan.add_argument("--base-batch", type=int, required=True,
                      help="batch size the hyperparameters were tuned at")
    plan.add_argument("--batch", type=int,
                      help="global batch size to train at")
    plan.add_argument("--base-warmup-epochs", type=float,
                      help="warmup epochs tuned at --base-batch")
    plan.add_argument("--num-examples", type=int, required=True,
                      help="training examples per epoch")
    plan.add_argument("--epochs", type=float, help="total epochs")
    plan.add_argument("--runs", metavar="CSV",
                      help="predict from measured runs: a CSV with columns "
                           "batch_size, steps (steps to the target)")
    plan.add_argument("--base-steps", type=float,
                      help="predict from --noise-scale: the steps to the "
                           "target at --base-batch")
    plan.add_argument("--max-batch", type=int,
                      help="prediction: the largest batch of the table "
                           "(default 64 x --base-batch)")
    plan.add_argument("--decay", choices=DECAYS, default="polynomial")
    plan.add_argument("--power", type=float, default=2.0)
    plan.add_argument("--end-lr", type=float, default=0.0)
    plan.add_argument("--scaling", choices=scaling.LEARNING_RATE_SCALINGS,
                      default="sqrt")
    plan.add_argument("--noise-scale", type=float,
                      help="the gradient noise scale B_noise in examples, "
                           "measured at --base-batch: for --scaling=noise, "
                           "or with --base-steps for a prediction")
    plan.add_argument("--warmup-scaling", choices=scaling.WARMUP_SCALINGS,
                      default="linear")
    plan.add_argument("--decay-rate", type=float, help="exponential decay only")
    plan.add_argument("--decay-epochs", type=float, help="exponential decay only")
    plan.add_argument("--plot", metavar="PNG", help="save a plot of the schedule")
    return parser


def _schedule(args, recipe_name=None, **overrides):
    """LEGW with the command line's arguments and `overrides`; with
    `recipe_name`, that recipe's rules replace the command line's."""
    kwargs = dict(
        base_learning_rate=args.base_lr,
        base_batch_size=args.base_batch,
        batch_size=args.batch,
        base_warmup_epochs=args.base_warmup_epochs,
        num_examples=args.num_examples,
        total_epochs=args.epochs,
        decay=args.decay,
        power=args.power,
        end_learning_rate=args.end_lr,
        scaling=args.scaling,
        warmup_scaling=args.warmup_scaling,
        decay_rate=args.decay_rate,
        decay_epochs=args.decay_epochs,
        noise_scale=args.noise_scale,
    )
    kwargs.update(overrides)
    if recipe_name is None:
        return LEGW(**kwargs)
    return recipes.recipe(recipe_name, defaults=kwargs)


def rates_by_epoch(schedule, epochs):
    """Evaluates `schedule` at the steps closest to the given epochs."""
    steps = np.round(
        [scaling.epochs_to_steps(e, schedule.num_examples, schedule.batch_size)
         for e in epochs]
    )
    return steps.astype(int), np.asarray(schedule(steps), dtype=np.float64)


def format_plan(schedule):
    """Returns the text that `plan` prints for `schedule`."""
    lines = [
        f"k (batch scale factor)   {schedule.scale_factor:g}",
        f"peak learning rate       {schedule.peak_learning_rate:.6g}"
        f"  ({schedule.scaling} scaling of {schedule.base_learning_rate:g})",
        f"warmup                   {schedule.warmup_epochs:.6g} epochs = "
        f"{schedule.warmup_steps} steps",
        f"total                    {schedule.total_epochs:g} epochs = "
        f"{schedule.total_steps} steps",
        "",
        f"{'epoch':>10} {'step':>10} {'learning rate':>15}",
    ]
    epochs = np.linspace(0.0, schedule.total_epochs, TABLE_ROWS)
    epochs = np.unique(np.append(epochs, schedule.warmup_epochs))
    steps, rates = rates_by_epoch(schedule, epochs)
    for epoch, step, rate in zip(epochs, steps, rates):
        lines.append(f"{epoch:>10.4g} {step:>10d} {rate:>15.6g}")
    return "\n".join(lines)


def plan_curves(args, schedule, points=500):
    """The plot's curves: {label: (epochs, rates)} for `schedule` and its
    linear-scaling (Goyal) and no-warmup alternatives."""
    curves = {
        f"LEGW ({schedule.scaling} scaling, warmup x k)": schedule,
        "linear scaling, constant-epoch warmup (Goyal)": _schedule(
            args, "goyal", noise_scale=None
        ),
        f"{schedule.scaling} scaling, no warmup": _schedule(
            args, base_warmup_epochs=0.0
        ),
    }
    epochs = np.linspace(0.0, schedule.total_epochs, points)
    return {label: (epochs, rates_by_epoch(curve, epochs)[1])
            for label, curve in curves.items()}


def plot_plan(args, schedule, path):
    """Saves a PNG of `plan_curves` (7 x 4 inches at 120 dpi)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (epochs, rates) in plan_curves(args, schedule).items():
        ax.plot(epochs, rates, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title(
        f"batch {schedule.batch_size} = {schedule.scale_factor:g} x "
        f"{schedule.base_batch_size}"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


SCHEDULE_ARGUMENTS = ("base_lr", "batch", "base_warmup_epochs", "epochs")


def read_runs(path):
    """(batch_sizes, steps) from a CSV with columns batch_size and steps.

    Raises:
        ValueError: naming the file, and the line where a cell is missing or
            not a number, for a file without both columns or without a row.
    """
    import csv

    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or ())
        missing = {"batch_size", "steps"} - columns
        if missing:
            raise ValueError(
                f"{path} must have the columns batch_size and steps; it lacks"
                f" {', '.join(sorted(missing))}")
        rows = [(reader.line_num, row) for row in reader]
    if not rows:
        raise ValueError(f"{path} has the columns batch_size and steps but "
                         "no row: give a run per line, e.g. 128,2344")
    return tuple(list(column) for column in zip(
        *(_run_cells(path, line, row) for line, row in rows)))


def _run_cells(path, line, row):
    """(batch_size, steps) of one CSV row, as numbers."""
    cells = []
    for name in ("batch_size", "steps"):
        text = row.get(name)
        try:
            cells.append(float(text))
        except (TypeError, ValueError):
            raise ValueError(
                f"{path}, line {line}: {name} must be a number. Received: "
                f"{'a missing cell' if text in (None, '') else repr(text)}"
            ) from None
    return cells


def steps_model(args):
    """The `planner.StepsModel` of the command line, and the measured
    points (batches, steps) it came from."""
    if args.runs:
        batches, steps = read_runs(args.runs)
        return planner.StepsModel.fit(batches, steps), (batches, steps)
    if args.noise_scale is None:
        raise ValueError("--base-steps needs --noise-scale (B_noise measured "
                         "at --base-batch)")
    return (planner.StepsModel.from_noise_scale(
        args.noise_scale, args.base_batch, args.base_steps),
        ([args.base_batch], [args.base_steps]))


def format_prediction(model, rows):
    lines = [f"B_noise (critical batch)  {model.noise_scale:.6g} examples",
             f"S_min (fewest steps)      {model.min_steps:.6g}", "",
             f"{'batch':>8} {'steps':>10} {'epochs':>9} {'epochs/base':>12}"
             "  past B_noise"]
    for batch, steps, epochs, overhead, past in rows:
        lines.append(f"{batch:>8d} {steps:>10.1f} {epochs:>9.3g} "
                     f"{overhead:>12.3g}  {'yes' if past else 'no'}")
    return "\n".join(lines)


def plot_prediction(model, measured, batches, path):
    """Saves a PNG of steps against batch: the model and the points."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    grid = np.geomspace(min(batches), max(batches), 200)
    ax.loglog(grid, model.steps(grid), label="S(B) = S_min (1 + B_noise / B)")
    ax.loglog(*measured, "o", label="measured")
    ax.axvline(model.noise_scale, color="gray", ls=":", label="B_noise")
    ax.set_xlabel("batch size")
    ax.set_ylabel("steps to the target")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def predict(args, parser):
    try:
        model, measured = steps_model(args)
        batches = doublings(args.base_batch,
                            args.max_batch or 64 * args.base_batch)
        rows = planner.plan_table(model, batches, args.num_examples,
                                  args.base_batch)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    print(format_prediction(model, rows))
    return model, measured, batches


def main(argv=None):
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        parser.error("--plot needs matplotlib, which is not installed: "
                     "pip install 'keras-legw[plot]'")
    if args.runs or args.base_steps is not None:
        model, measured, batches = predict(args, parser)
        draw = lambda: plot_prediction(model, measured, batches, args.plot)
    else:
        missing = [f"--{a.replace('_', '-')}" for a in SCHEDULE_ARGUMENTS
                   if getattr(args, a) is None]
        if missing:
            parser.error(f"the following arguments are required: "
                         f"{', '.join(missing)} (or --runs / --base-steps "
                         "for a prediction)")
        try:
            schedule = _schedule(args)
        except ValueError as error:
            parser.error(str(error))
        print(format_plan(schedule))
        draw = lambda: plot_plan(args, schedule, args.plot)
    if args.plot:
        try:
            draw()
        except (OSError, ValueError) as error:
            parser.error(f"cannot save --plot {args.plot!r}: {error}")
        print(f"\nplot saved to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
