"""The options common to every model-zoo script, and the schedule they
describe.

Each option is a field of `CommonOptions` (or of a script's own options
class), defined once (`models.common.options`). A script's `__main__` calls
`define_script_flags(Options, BASE)`, its `main` hands `flag_kwargs(Options)`
to `run(**kwargs)`, and `run` turns those into checked options with
`run_options` and trains with `train(task, options, ...)`. So a flag, a
Python keyword and a saved `flags.txt` line are the same name, and
`--batch_size` reaches `keras_legw.LEGW(batch_size=...)` through
`CommonOptions.batch_size` and `schedule_of`.

Schedules (`--schedule`): the recipes of `keras_legw.RECIPES`
  legw                  sqrt peak scaling, warmup epochs x k (You et al. 2019);
  goyal                 linear peak scaling, constant-epoch warmup (Goyal et
                        al. 2017);
  sqrt_constant_warmup  sqrt peak scaling, constant-epoch warmup;
  no_scaling            the base schedule unchanged;
  constant              the scaled peak rate from step 0: no warmup, no decay;
and
  autowu    AutoWarmup (Kim et al. 2021): exponential warmup from
            --min_learning_rate until the training loss stops falling (at
            most --max_warmup_fraction of the steps), then a cosine decay;
            the base hyperparameters are not used.
`--scaling` and `--warmup_scaling` override the preset's rules, e.g.
`--schedule=legw --warmup_scaling=none` is sqrt scaling with a constant-epoch
warmup.
"""

import dataclasses
import inspect
import json
import os
import sys
import time
from typing import Optional

from absl import flags, logging

import keras_legw
from keras_legw.batch_growth import examples_per_pass
from keras_legw.scaling import LEARNING_RATE_SCALINGS, WARMUP_SCALINGS
from models.common import checkpoints, distribute, preemption, trainer
from models.common.batch_growth import Growth
from models.common.data import DataError
from models.common.distribute import STRATEGIES
from models.common.options import (NON_NEGATIVE, POSITIVE, POSITIVE_INTEGER,
                                   check_fields, define_flags, from_flags,
                                   option, optional, split)

AUTOWU = "autowu"
SCHEDULES = (*keras_legw.RECIPES, AUTOWU)
FLAGS_FILE = "flags.txt"
REQUIRED = dataclasses.MISSING  # an application's BASE gives the default


def _noise_default(name):
    """The library's default of `keras_legw.NoiseBatchSchedule`'s argument
    `name` (defined there once)."""
    return inspect.signature(keras_legw.NoiseBatchSchedule).parameters[
        name].default


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoiseOptions:
    """The options of `--batch_schedule=noise`, named as
    `keras_legw.NoiseBatchSchedule`'s arguments, with its defaults: shared
    by the trainer's scripts (`CommonOptions`) and `model.fit`'s
    (`models.mnist_lstm_growing`). Ignored with a ramp."""

    noise_scale_multiplier: float = option(
        _noise_default("noise_scale_multiplier"),
        "--batch_schedule=noise: c, the batch targets c times the noise "
        "scale (at B = c B_noise a run takes 1 + 1/c times the fewest steps "
        "and 1 + c times the fewest examples).", check=POSITIVE)
    window: int = option(
        _noise_default("window"), "--batch_schedule=noise: the lower median "
        "of the last this many epochs' noise scales decides.",
        check=POSITIVE_INTEGER)
    std_errors: float = option(
        _noise_default("std_errors"), "--batch_schedule=noise: each epoch's "
        "noise scale is taken this many standard errors (of its steps' "
        "estimates) below.", check=NON_NEGATIVE)
    max_doublings: int = option(
        _noise_default("max_doublings"), "--batch_schedule=noise: the most "
        "doublings of the batch one decision may make.",
        check=POSITIVE_INTEGER)


NOISE_OPTIONS = tuple(f.name for f in dataclasses.fields(NoiseOptions))


def noise_kwargs(options):
    """`NoiseBatchSchedule`'s keyword arguments from `options` (empty unless
    `options.batch_schedule` is 'noise')."""
    if options.batch_schedule != "noise":
        return {}
    return {name: getattr(options, name) for name in NOISE_OPTIONS}


@dataclasses.dataclass(frozen=True)
class CommonOptions(NoiseOptions):
    """The options of every script, each defined once: its flag (name, type,
    default, help, check) is generated from its field, and every script's
    `run(**kwargs)` takes it by the same name. The base hyperparameters'
    defaults are the application's tuned ones (its `BASE`)."""

    batch_size: int = option(REQUIRED, "Global batch size (examples per "
                             "step, all replicas); with --batch_schedule the "
                             "smallest batch (where 'noise' starts).",
                             check=POSITIVE_INTEGER)
    base_batch_size: int = option(
        REQUIRED, "Batch size the base hyperparameters were tuned at.",
        check=POSITIVE_INTEGER)
    base_learning_rate: Optional[float] = option(
        REQUIRED, "Peak learning rate at --base_batch_size; default: the "
        "application's tuned one.", check=optional(POSITIVE))
    base_warmup_epochs: float = option(
        REQUIRED, "Warmup epochs at --base_batch_size.", check=NON_NEGATIVE)
    epochs: float = option(REQUIRED, "Training epochs.", check=POSITIVE)
    batch_schedule: Optional[str] = option(
        None, "A batch that grows: 'epoch:global_batch,...' (a fixed ramp, "
        "e.g. 0:128,1:512,4:2048) or 'noise' (it follows the measured "
        "gradient noise scale, up to --max_batch_size). The rate is LEGW's "
        "at each batch (keras_legw.GrowingBatchRate, --scaling sqrt, linear "
        "or none); default: a fixed --batch_size.")
    max_batch_size: Optional[int] = option(
        None, "--batch_schedule: the largest batch (required with 'noise').",
        check=optional(POSITIVE_INTEGER))
    max_replica_batch_size: Optional[int] = option(
        None, "--batch_schedule: the most rows a replica computes at once; a "
        "larger share is split into micro-batches (as "
        "--gradient_accumulation_steps). Default: no limit.",
        check=optional(POSITIVE_INTEGER))
    schedule: str = option("legw", "Learning-rate schedule preset.",
                           choices=SCHEDULES)
    min_learning_rate: float = option(
        1e-5, "--schedule=autowu: the rate at step 0.")
    max_learning_rate: float = option(
        1.0, "--schedule=autowu: the warmup's ceiling.")
    max_warmup_fraction: float = option(
        0.5, "--schedule=autowu: the longest warmup, as a fraction of the "
        "run's steps.")
    check_every_epochs: Optional[float] = option(
        None, "--schedule=autowu: test whether the loss stopped falling "
        "every this many epochs (rounded up to whole steps); default: at "
        "each epoch end.", check=optional(POSITIVE))
    scaling: Optional[str] = option(
        None, "Peak-rate scaling rule; default: the preset's.",
        choices=LEARNING_RATE_SCALINGS)
    warmup_scaling: Optional[str] = option(
        None, "Warmup-length scaling rule; default: the preset's.",
        choices=WARMUP_SCALINGS)
    b_noise: Optional[float] = option(
        None, "--scaling=noise only: the gradient noise scale B_noise "
        "(examples) measured at --base_batch_size (bench.noise_scale_curve).",
        check=optional(POSITIVE))
    decay: str = option("polynomial", "Decay after the warmup (legw and "
                        "goyal).", choices=("polynomial", "cosine", "constant"))
    max_steps: Optional[int] = option(
        None, "Stop at this step (smoke runs); default: all epochs.",
        check=optional(POSITIVE))
    model_dir: Optional[str] = option(
        None, "Checkpoints, TensorBoard logs and results.json; a run "
        "restarted on the same folder resumes.")
    data_dir: Optional[str] = option(
        None, "Folder with one subfolder per dataset (mnist/, ptb/, ...); "
        "default: $LEGW_DATA_DIR, then the Keras cache, then download.")
    strategy: str = option("default", "tf.distribute strategy.",
                           choices=tuple(STRATEGIES))
    tpu: Optional[str] = option(None, "TPU name or address (--strategy=tpu).")
    num_cpu_devices: int = option(
        1, "Split the host CPU into this many logical devices (to run "
        "MirroredStrategy without accelerators).", check=POSITIVE_INTEGER)
    seed: int = option(0, "Random seed (weights and data order).")
    deterministic: bool = option(False, "Enable TensorFlow op determinism.")
    checkpoint_every_steps: int = option(
        0, "Also checkpoint every this many steps (0: at epoch ends only).",
        check=NON_NEGATIVE)
    steps_per_loop: int = option(
        100, "Steps per call of the compiled training loop.",
        check=POSITIVE_INTEGER)
    jit_compile: bool = option(False, "Compile the training step with XLA.")
    gradient_accumulation_steps: int = option(
        1, "Split each replica's share of the batch into this many "
        "micro-batches, run one after another, and apply their summed "
        "gradient once: the global batch (and its schedule) with a "
        "micro-batch's memory.", check=POSITIVE_INTEGER)
    noise_scale: bool = option(
        False, "Measure the gradient noise scale B_simple (logged to "
        "TensorBoard and results.json).")
    noise_scale_decay: float = option(
        0.99, "Per-step decay of the noise scale's moving averages; closer "
        "to 1 averages longer (late in training the gradient is small "
        "against its noise and needs it).")
    verbose: int = option(1, "Progress bar (1) or none (0).", flag=False)


def run_options(app_options, base, kwargs, *, extra_schedules=()):
    """(the application's options, the common ones) of a script's
    `run(**kwargs)`, both checked: `app_options` is the script's options
    class, `base` its tuned base hyperparameters (`BASE`, or a function of
    the application's options giving them), filling what the caller leaves
    out; `extra_schedules` are the script's own `--schedule` values. An
    unknown argument is a TypeError, a bad value one ValueError."""
    own, common = split(kwargs, app_options, CommonOptions)
    if "batch_size" not in common:
        raise TypeError("run() needs batch_size (the global batch).")
    app = app_options(**own)
    check_fields(app)
    base = base(app) if callable(base) else base
    options = CommonOptions(**{**base, **common})
    check_fields(options, {"schedule": (*SCHEDULES, *extra_schedules)})
    return app, options


def define_script_flags(app_options, base, *, extra_schedules=(),
                        flag_values=flags.FLAGS):
    """Defines a script's flags: the common ones with the application's
    `base` defaults (`BASE`; `--batch_size` defaults to its base batch) and
    `extra_schedules` added to --schedule, then the application's own
    (`app_options`). Called by a script's `__main__` only, so that several
    scripts can be imported in one process (tests, benchmarks)."""
    # TensorFlow's INFO messages (one per checkpoint) drown the progress bar;
    # --verbosity=0 brings them back.
    logging.set_verbosity(logging.WARNING)
    if "verbosity" in flag_values:
        flag_values.set_default("verbosity", logging.WARNING)
    define_flags(CommonOptions,
                 defaults=dict(base, batch_size=base["base_batch_size"]),
                 choices={"schedule": (*SCHEDULES, *extra_schedules)},
                 flag_values=flag_values)
    define_flags(app_options, flag_values=flag_values)


def flag_kwargs(app_options, flag_values=flags.FLAGS):
    """The parsed flags, common and the application's, as `run`'s keyword
    arguments."""
    return from_flags(flag_values, CommonOptions, app_options)


def schedule_of(options, num_examples):
    """The schedule that `options` describe, for `num_examples` per epoch
    (or a function of the batch giving them): a growing batch's rate at its
    first batch (`growth_of`), AutoWarmup, or the recipe `options.schedule`
    with the flags' warmup and decay as defaults and `--scaling` /
    `--warmup_scaling` overriding it."""
    if options.batch_schedule is not None:
        return growth_of(options, 1).start_rate(num_examples)
    num_examples = examples_per_pass(num_examples, options.batch_size)
    if options.schedule == AUTOWU:
        return keras_legw.AutoWarmupSchedule(
            keras_legw.whole_steps(options.epochs, num_examples,
                                   options.batch_size),
            min_learning_rate=options.min_learning_rate,
            max_learning_rate=options.max_learning_rate,
            max_warmup_fraction=options.max_warmup_fraction,
            check_every_steps=None if options.check_every_epochs is None
            else keras_legw.whole_steps(options.check_every_epochs,
                                        num_examples, options.batch_size),
            seed=options.seed)
    if options.schedule not in keras_legw.RECIPES:
        raise ValueError(f"Flag --schedule must be one of "
                         f"{', '.join(SCHEDULES)}. Received: "
                         f"{options.schedule!r}")
    if (options.b_noise is not None) != (options.scaling == "noise"):
        raise ValueError("Flag --b_noise (the gradient noise scale, in "
                         "examples) is required with --scaling=noise and only "
                         f"allowed with it. Received: --b_noise="
                         f"{options.b_noise} with --scaling={options.scaling}")
    overrides = dict(scaling=options.scaling,
                     warmup_scaling=options.warmup_scaling)
    return keras_legw.recipe(
        options.schedule,
        defaults=dict(base_warmup_epochs=options.base_warmup_epochs,
                      decay=options.decay),
        base_learning_rate=options.base_learning_rate,
        base_batch_size=options.base_batch_size, batch_size=options.batch_size,
        num_examples=num_examples, total_epochs=options.epochs,
        noise_scale=options.b_noise,
        **{k: v for k, v in overrides.items() if v is not None})


GROWING_SCALINGS = keras_legw.growing_batch.RATE_RULES


def growth_of(options, replicas, rate=None):
    """The growing batch that `--batch_schedule` describes (None without
    it), for `replicas` replicas: the library's schedule and rate
    (`keras_legw.batch_schedule`, `keras_legw.GrowingBatchRate`). `rate`:
    the `GrowingBatchRate` already built for these options (the one the
    optimizer starts with, `schedule_of`), so the trainer and the optimizer
    share one; None builds it."""
    if options.batch_schedule is None:
        if options.max_batch_size or options.max_replica_batch_size:
            raise ValueError(
                "Flags --max_batch_size and --max_replica_batch_size are for "
                "a growing batch: give --batch_schedule too. Received: "
                f"--max_batch_size={options.max_batch_size}, "
                f"--max_replica_batch_size={options.max_replica_batch_size}")
        return None
    if options.schedule != "legw":
        raise ValueError(
            "Flag --batch_schedule sets LEGW's rate at each batch "
            "(keras_legw.GrowingBatchRate); it works with --schedule=legw "
            f"only. Received: --schedule={options.schedule}")
    scaling = options.scaling or "sqrt"
    if scaling not in GROWING_SCALINGS:
        raise ValueError(
            f"Flag --scaling must be one of {', '.join(GROWING_SCALINGS)} "
            f"with --batch_schedule. Received: {options.scaling}")
    try:
        schedule = keras_legw.batch_schedule(
            options.batch_schedule, options.batch_size,
            options.max_batch_size, batch_multiple=replicas,
            **noise_kwargs(options))
        rate = rate or keras_legw.GrowingBatchRate(
            base_learning_rate=options.base_learning_rate,
            base_batch_size=options.base_batch_size,
            start_batch_size=schedule.start_batch_size,
            base_warmup_epochs=options.base_warmup_epochs,
            total_epochs=options.epochs, rate_rule=scaling,
            decay=options.decay)
    except ValueError as error:
        raise ValueError(f"Flag --batch_schedule={options.batch_schedule}: "
                         f"{error}") from None
    return Growth(schedule=schedule, rate=rate, epochs=options.epochs,
                  text=options.batch_schedule,
                  max_replica_batch_size=options.max_replica_batch_size)


def write_schedule(model_dir, schedule, total_steps, batch_schedule=None):
    """Writes the schedule's arguments, the run's `total_steps` (null for a
    growing batch, `batch_schedule`, also written) and the schedule's
    derived values (peak rate, warmup epochs and steps; null where the
    schedule has none, or for AutoWarmup until it decides) to
    `model_dir/schedule.json`."""
    os.makedirs(model_dir, exist_ok=True)
    derived = ("peak_learning_rate", "warmup_epochs", "warmup_steps")
    with open(os.path.join(model_dir, "schedule.json"), "w") as f:
        json.dump({**schedule.get_config(),
                   **{name: getattr(schedule, name, None) for name in derived},
                   "total_steps": total_steps,
                   **({} if batch_schedule is None else
                      {"batch_schedule": batch_schedule})}, f, indent=2)


def train(task, options, *, strategy, schedule, make_optimizer, num_examples,
          model_dir, global_clipnorm=None):
    """Writes `schedule.json` (on the chief) and trains `task` for the
    options' epochs with their loop settings (`trainer.train`), at a fixed
    batch or at `--batch_schedule`'s. `num_examples`: per epoch, or a
    function of the batch giving them. Returns (results, model)."""
    growth = growth_of(options, strategy.num_replicas_in_sync,
                       getattr(schedule, "growing_rate", None))
    if growth is None:
        length = dict(global_batch_size=options.batch_size,
                      total_steps=keras_legw.whole_steps(
                          options.epochs,
                          examples_per_pass(num_examples, options.batch_size),
                          options.batch_size))
    else:
        length = dict(growth=growth)
    # Checked here too (the trainer checks for its direct callers) so that a
    # refused resume leaves schedule.json untouched.
    checkpoints.check_resume_batch(
        model_dir, options.batch_size, options.batch_schedule,
        length.get("total_steps"), None if growth is None else growth.epochs)
    if distribute.is_chief(strategy):
        write_schedule(model_dir, schedule, length.get("total_steps"),
                       options.batch_schedule)
    return trainer.train(
        task, strategy=strategy, make_optimizer=make_optimizer,
        num_examples=num_examples, model_dir=model_dir, **length,
        max_steps=options.max_steps,
        checkpoint_every_steps=options.checkpoint_every_steps,
        steps_per_loop=options.steps_per_loop,
        jit_compile=options.jit_compile, noise_scale=options.noise_scale,
        noise_scale_decay=options.noise_scale_decay,
        global_clipnorm=global_clipnorm,
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        adaptive_schedule=schedule if isinstance(
            schedule, keras_legw.AutoWarmupSchedule) else None,
        verbose=options.verbose)


def set_seed(seed, deterministic):
    """Seeds Python, NumPy, TensorFlow and Keras; optionally turns on
    TensorFlow op determinism (bit-exact reruns and resumes)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def write_flags(model_dir, values=None, name=FLAGS_FILE):
    """Writes the resolved flags to `model_dir/name` (a --flagfile)."""
    values = values or flags.FLAGS
    os.makedirs(model_dir, exist_ok=True)
    module = sys.modules["__main__"].__spec__
    lines = values.flags_into_string()
    with open(os.path.join(model_dir, name), "w") as f:
        f.write(f"# {module.name if module else 'flags'}\n{lines}")


def run_script(run, kwargs, default_model_dir, summary):
    """A script's `main` after flag parsing: fills in the default model_dir,
    calls `run(**kwargs)` (a ValueError or data error ends the process with
    status 2 and one line) and prints `summary(results)` with where the
    results are. The resolved flags become `model_dir/flags.txt` once
    training has begun (the trainer wrote `run.json`): a run refused before
    that, for a bad flag, missing data or a resume that does not match the
    checkpoints, leaves the folder's flags.txt as it was, so
    `--flagfile=<model_dir>/flags.txt` still resumes the run it holds."""
    model_dir = kwargs["model_dir"] = kwargs["model_dir"] or default_model_dir
    exit_on_error(checkpoints.prepare_model_dir, own_dir=model_dir)
    pending = f"{FLAGS_FILE}.{os.getpid()}"  # one per process (workers)
    write_flags(model_dir, name=pending)
    started = time.time()
    try:
        results = exit_on_error(run, **kwargs)
    finally:
        _keep_flags_if_trained(model_dir, pending, started)
    print(f"{summary(results)}; results in "
          f"{os.path.join(model_dir, 'results.json')}")
    return results


def _keep_flags_if_trained(model_dir, pending, started):
    """flags.txt becomes the pending flags if training began since
    `started` (run.json written then); else they are dropped."""
    run_file = os.path.join(model_dir, checkpoints.RUN_FILE)
    pending = os.path.join(model_dir, pending)
    if os.path.exists(run_file) and os.path.getmtime(run_file) >= started:
        os.replace(pending, os.path.join(model_dir, FLAGS_FILE))
    elif os.path.exists(pending):
        os.remove(pending)


def parse_flags(argv):
    """absl's flag parsing for `app.run(main, flags_parser=parse_flags)`: a
    bad flag (unknown, a bad choice, a failed check or type) ends as
    `exit_on_error`'s do, with status 2 and one line, not absl's status 1
    and two lines."""

    def parse():
        try:
            return flags.FLAGS(argv)
        except flags.Error as error:
            raise ValueError(str(error)) from None

    return exit_on_error(parse)


# Each way a run can end early, with the status a script exits with: the
# one place that maps them (scripts through `exit_on_error`, the benchmarks
# through a child's status).
NON_FINITE_LOSS_STATUS = 3
ERROR_STATUSES = ((ValueError, 2), (DataError, 2),
                  (trainer.NonFiniteLossError, NON_FINITE_LOSS_STATUS),
                  (checkpoints.CheckpointWriteError, 1))


def exit_status(error):
    """The status a script ends with for `error`: 128 + the signal for a
    preemption, else `ERROR_STATUSES`' (None: not one of them)."""
    if isinstance(error, preemption.Preempted):
        return error.exit_status
    return next((status for kind, status in ERROR_STATUSES
                 if isinstance(error, kind)), None)


def exit_on_error(function, **kwargs):
    """Calls `function(**kwargs)`; an error of `ERROR_STATUSES` or a
    preemption ends the process as `exit_for` says."""
    try:
        return function(**kwargs)
    except (preemption.Preempted, *(kind for kind, _ in ERROR_STATUSES)) \
            as error:
        exit_for(error)


def exit_for(error):
    """Ends the process with `exit_status(error)` and one line on stderr
    (`error: ...`; a preemption's own line): a bad value or missing data 2,
    a non-finite loss 3, a checkpoint that cannot be written (a full disk)
    1, SIGTERM or SIGINT 128 + the signal. Any other error is raised."""
    status = exit_status(error)
    if status is None:
        raise error
    print(str(error) if isinstance(error, preemption.Preempted)
          else f"error: {error}", file=sys.stderr)
    sys.exit(status)
