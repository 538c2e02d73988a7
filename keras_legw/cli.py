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

    python -m keras_legw profile --task models.mnist_lstm_model:profile_task \\
        --batch-sizes 16,32,64,128 --out profile.csv
    python -m keras_legw plan --cluster --profile profile.csv \\
        --devices 1,8,64,512 --interconnect nvlink4 --num-examples 60000 \\
        --epochs 25 --base-batch 128 --batch 8192 --ramp 0:256,1:1024,6:8192

times a model's training step at per-device batches (FUNCTION() of the
task returns the compiled model, x and y), then predicts the steps,
wall-clock, device-hours and speedup of each schedule on each device count,
and the assumptions made (`keras_legw.cluster`). `--noise-curve CSV` adds
NoiseBatchSchedule's default told that noise-scale curve; `--plot` draws
wall-clock against devices.
"""

import argparse
import importlib.util
import sys

import numpy as np

from keras_legw import cluster, planner, recipes, scaling
from keras_legw._validation import csv_cell, read_csv_rows
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
    _add_cluster_arguments(plan)
    _add_profile_command(commands, parser)
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


def _new_figure(size):
    """(figure, axes) of `size` inches, drawn off screen (matplotlib is
    imported here: only --plot needs it)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt.subplots(figsize=size)


def _save_figure(fig, ax, path):
    """The legend, then a PNG of `fig` at 120 dpi; the figure is closed."""
    from matplotlib import pyplot as plt

    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_plan(args, schedule, path):
    """Saves a PNG of `plan_curves` (7 x 4 inches at 120 dpi)."""
    fig, ax = _new_figure((7, 4))
    for label, (epochs, rates) in plan_curves(args, schedule).items():
        ax.plot(epochs, rates, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title(
        f"batch {schedule.batch_size} = {schedule.scale_factor:g} x "
        f"{schedule.base_batch_size}"
    )
    _save_figure(fig, ax, path)


SCHEDULE_ARGUMENTS = ("base_lr", "batch", "base_warmup_epochs", "epochs")


def read_runs(path):
    """(batch_sizes, steps) from a CSV with columns batch_size and steps.

    Raises:
        ValueError: naming the file, and the line where a cell is missing or
            not a number, for a file without both columns or without a row.
    """
    rows = read_csv_rows(path, ("batch_size", "steps"),
                         ": give a run per line, e.g. 128,2344")
    cells = [[csv_cell(path, line, row, name) for name in ("batch_size",
                                                           "steps")]
             for line, row in rows]
    return tuple(list(column) for column in zip(*cells))


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
    fig, ax = _new_figure((6, 4))
    grid = np.geomspace(min(batches), max(batches), 200)
    ax.loglog(grid, model.steps(grid), label="S(B) = S_min (1 + B_noise / B)")
    ax.loglog(*measured, "o", label="measured")
    ax.axvline(model.noise_scale, color="gray", ls=":", label="B_noise")
    ax.set_xlabel("batch size")
    ax.set_ylabel("steps to the target")
    _save_figure(fig, ax, path)


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


def _add_cluster_arguments(plan):
    group = plan.add_argument_group(
        "cluster plan", "wall-clock and device-hours of the fixed batches, "
        "--ramp and the adaptive schedule on each of --devices")
    group.add_argument("--cluster", action="store_true",
                       help="plan a cluster run from a --profile")
    group.add_argument("--profile", metavar="CSV",
                       help="step times from `python -m keras_legw profile`")
    group.add_argument("--devices", default="1,8,64,512",
                       help="device counts, comma-separated (default "
                            "1,8,64,512)")
    group.add_argument("--interconnect", choices=sorted(cluster.INTERCONNECTS),
                       help="a named link (or --bandwidth-gb-per-s)")
    group.add_argument("--bandwidth-gb-per-s", type=float,
                       help="all-reduce bus bandwidth per device, GB/s")
    group.add_argument("--latency-us", type=float,
                       help="latency per message, us (default 0, or the "
                            "--interconnect's)")
    group.add_argument("--ramp", help="a batch ramp to plan, e.g. "
                                      "0:256,1:1024,3:4096,6:8192")
    group.add_argument("--noise-curve", metavar="CSV",
                       help="noise scale by epoch (columns epoch, "
                            "noise_scale): plan NoiseBatchSchedule's "
                            "default up to --max-batch")
    group.add_argument("--max-device-batch", type=int,
                       help="the largest batch one device holds; larger "
                            "shares run as micro-batches")


def _add_profile_command(commands, parser):
    profile = commands.add_parser(
        "profile", help="time a model's training step at per-device batches")
    profile.error = parser.error
    profile.add_argument("--task", required=True, metavar="MODULE:FUNCTION",
                         help="FUNCTION() returns (compiled model, x, y)")
    profile.add_argument("--batch-sizes", required=True,
                         help="per-device batches, comma-separated")
    profile.add_argument("--out", required=True, metavar="CSV")
    profile.add_argument("--repeats", type=int, default=5)
    profile.add_argument("--steps-per-repeat", type=int, default=3)


def _integers(flag, text):
    """The comma-separated integers of `flag`'s `text`."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers such as "
                         f"1,8,64. Received: {text!r}") from None


def load_task(text):
    """(model, x, y) from FUNCTION() of MODULE, given "MODULE:FUNCTION"."""
    module, _, name = text.partition(":")
    if not module or not name:
        raise ValueError("--task must be MODULE:FUNCTION, e.g. "
                         f"models.mnist_lstm_model:profile_task. Received: "
                         f"{text!r}")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot load --task {text!r}: {error}") from None
    try:
        task = function()
    except (OSError, RuntimeError, ValueError) as error:
        # A task that cannot find its data, or rejects its setup.
        raise ValueError(f"--task {text!r} failed: {error}") from None
    if not (isinstance(task, tuple) and len(task) == 3):
        raise ValueError(f"--task {text!r} must return (compiled model, x, "
                         f"y). Received: {type(task).__name__}")
    return task


def run_profile(args, parser):
    """`profile`: times the task's step, prints and saves the profile."""
    import os

    try:
        batches = _integers("--batch-sizes", args.batch_sizes)
        if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
            raise ValueError(f"--out {args.out!r}: no such folder")
        model, x, y = load_task(args.task)
        profile = cluster.profile_step_times(model, x, y, batches,
                                             args.repeats,
                                             args.steps_per_repeat)
        profile.to_csv(args.out)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    print(f"{profile.backend} on {profile.device}, gradient "
          f"{profile.param_bytes / 1e6:.4g} MB\n\n{'batch':>8} "
          f"{'s/step':>12} {'examples/s':>12}")
    for batch, seconds in zip(profile.batch_sizes, profile.seconds):
        print(f"{batch:>8d} {seconds:>12.4g} {batch / seconds:>12.4g}")
    print(f"\nprofile saved to {args.out}")
    return 0


def _interconnect(args):
    """(name, Interconnect) of --interconnect, --bandwidth-gb-per-s and
    --latency-us (the last two override the first)."""
    if args.interconnect is None and args.bandwidth_gb_per_s is None:
        raise ValueError("--cluster needs --interconnect NAME or "
                         "--bandwidth-gb-per-s (and --latency-us)")
    named = cluster.INTERCONNECTS.get(args.interconnect)
    link = cluster.Interconnect(
        named.bandwidth_gb_per_s if args.bandwidth_gb_per_s is None
        else args.bandwidth_gb_per_s,
        args.latency_us if args.latency_us is not None
        else named.latency_us if named else 0.0)
    name = args.interconnect if named == link else (
        f"{args.interconnect} (overridden)" if named else "the given link")
    return name, link


def cluster_schedules(args):
    """{name: stages} to plan: fixed at --base-batch and --batch, --ramp,
    and NoiseBatchSchedule's default on --noise-curve."""
    schedules = {f"fixed {args.base_batch}": args.base_batch}
    if args.batch is not None:
        schedules.setdefault(f"fixed {args.batch}", args.batch)
    if args.ramp:
        schedules["ramp"] = args.ramp
    if args.noise_curve:
        top = args.max_batch or args.batch
        if top is None:
            raise ValueError("--noise-curve needs --max-batch (or --batch), "
                             "the largest batch the schedule may pick")
        schedules["adaptive"] = cluster.adaptive_stages(
            cluster.read_noise_curve(args.noise_curve), args.base_batch, top,
            args.epochs)
    return schedules


def cluster_plan(args, parser):
    """`plan --cluster`: prints the plan's table and assumptions; returns
    its rows."""
    missing = [flag for flag, value in (("--profile", args.profile),
                                        ("--epochs", args.epochs))
               if value is None]
    if missing:
        parser.error("the following arguments are required with --cluster: "
                     + ", ".join(missing))
    try:
        name, link = _interconnect(args)
        devices = _integers("--devices", args.devices)
        step_model = cluster.StepTimeModel(
            cluster.StepProfile.read_csv(args.profile), link,
            args.max_device_batch)
        schedules = cluster_schedules(args)
        rows = cluster.plan_schedules(step_model, schedules, devices,
                                      args.num_examples, args.epochs)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    print(format_cluster_plan(args, rows, schedules))
    print(format_assumptions(args, step_model, name, rows))
    return rows


def _duration(seconds):
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= 2 * size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def format_cluster_plan(args, rows, schedules):
    """The schedules' stages, then one line per device count and
    schedule."""
    lines = [f"{args.num_examples} examples x {args.epochs:g} epochs", ""]
    for label, stages in schedules.items():
        text = stages if isinstance(stages, (int, str)) else ",".join(
            f"{e:g}:{b}" for e, b in stages)
        lines.append(f"  {label:<12} {text}")
    lines += ["", f"{'devices':>8}  {'schedule':<12} {'steps':>7} "
                  f"{'wall-clock':>11} {'device-hours':>13} {'speedup':>8}"]
    for row in rows:
        head = f"{row.devices:>8d}  {row.schedule:<12} {row.steps:>7d} "
        if not row.possible:
            lines.append(head + f"  not possible: {row.reason}")
            continue
        lines.append(head + f"{_duration(row.wall_seconds):>11} "
                     f"{row.device_hours:>13.3g} {row.speedup:>8.3g}"
                     + (" *" if row.extrapolated else ""))
    return "\n".join(lines)


def format_assumptions(args, step_model, name, rows):
    """What the plan assumed: the link, the fit and its range, the rest."""
    link, profile = step_model.interconnect, step_model.profile
    low, high = step_model.profiled_range
    lines = [
        "", "assumptions:",
        f"  all-reduce   ring (Patarasuk & Yuan 2009) of "
        f"{profile.param_bytes / 1e6:.4g} MB (the trainable weights) over "
        f"{name}: {link.bandwidth_gb_per_s:g} GB/s bus bandwidth, "
        f"{link.latency_us:g} us a message",
        f"  compute      t(b) = {step_model.intercept_seconds * 1e3:.4g} ms "
        f"+ {step_model.seconds_per_example * 1e6:.4g} us x b per device, "
        f"least squares over the profiled batches {low}..{high} "
        f"({profile.backend}, {profile.device})",
        "  overlap      none: compute, then the all-reduce (pessimistic)",
        "  device batch " + (
            "every share fits on a device" if step_model.max_device_batch
            is None else f"shares above {step_model.max_device_batch} run "
            "as micro-batches, one all-reduce a step"),
        f"  epochs       {args.epochs:g} at every batch; a larger batch may "
        "need more to reach the same quality (plan --runs)"]
    if any(row.extrapolated for row in rows):
        lines.append(f"  *            a per-device batch outside {low}.."
                     f"{high}: the compute line is extrapolated")
    if args.noise_curve:
        lines.append("  adaptive     NoiseBatchSchedule's defaults told the "
                     f"noise scale of {args.noise_curve} by epoch: the curve "
                     "of that run, not of the adaptive run")
    return "\n".join(lines)


def plot_cluster_plan(rows, path):
    """Saves a PNG of wall-clock against devices, log-log, a line a
    schedule."""
    fig, ax = _new_figure((6, 4))
    for name in dict.fromkeys(row.schedule for row in rows):
        points = [(r.devices, r.wall_seconds / 3600.0) for r in rows
                  if r.schedule == name and r.possible]
        if points:
            ax.loglog(*zip(*points), "o-", label=name)
    ax.set_xlabel("devices")
    ax.set_ylabel("wall-clock (hours)")
    _save_figure(fig, ax, path)


def main(argv=None):
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "profile":
        return run_profile(args, parser)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        parser.error("--plot needs matplotlib, which is not installed: "
                     "pip install 'keras-legw[plot]'")
    if args.cluster:
        rows = cluster_plan(args, parser)
        draw = lambda: plot_cluster_plan(rows, args.plot)
    elif args.runs or args.base_steps is not None:
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
