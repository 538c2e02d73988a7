"""Flags common to every model-zoo script, and the schedule they describe.

Each script calls `define_common_flags(**defaults)` with its own tuned base
hyperparameters, and in `main` turns the parsed flags into the plain keyword
arguments of its `run(...)` with `common_run_kwargs(FLAGS)`. Inside, `run`
holds those as `CommonOptions` and trains with `train(task, options, ...)`.

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
import json
import os
import sys
from typing import Optional

from absl import flags, logging

import keras_legw
from keras_legw.scaling import LEARNING_RATE_SCALINGS, WARMUP_SCALINGS
from models.common import checkpoints, distribute, preemption, trainer
from models.common.data import DataError
from models.common.distribute import STRATEGIES

AUTOWU = "autowu"
FLAGS_FILE = "flags.txt"


def define_common_flags(*, base_batch_size, base_learning_rate,
                        base_warmup_epochs, epochs, batch_size=None,
                        decay="polynomial", extra_schedules=()):
    """Defines the common flags with the application's defaults;
    `extra_schedules` adds application schedules to --schedule."""
    # TensorFlow's INFO messages (one per checkpoint) drown the progress bar;
    # --verbosity=0 brings them back.
    logging.set_verbosity(logging.WARNING)
    flags.FLAGS.set_default("verbosity", logging.WARNING)
    flags.DEFINE_integer("batch_size", batch_size or base_batch_size,
                         "Global batch size (examples per step, all replicas).")
    flags.DEFINE_integer("base_batch_size", base_batch_size,
                         "Batch size the base hyperparameters were tuned at.")
    flags.DEFINE_float("base_learning_rate", base_learning_rate,
                       "Peak learning rate at --base_batch_size"
                       + ("." if base_learning_rate else
                          "; default: the optimizer's (see --optimizer)."))
    flags.DEFINE_float("base_warmup_epochs", base_warmup_epochs,
                       "Warmup epochs at --base_batch_size.")
    flags.DEFINE_enum("schedule", "legw",
                      [*keras_legw.RECIPES, AUTOWU, *extra_schedules],
                      "Learning-rate schedule preset.")
    flags.DEFINE_float("min_learning_rate", 1e-5,
                       "--schedule=autowu: the rate at step 0.")
    flags.DEFINE_float("max_learning_rate", 1.0,
                       "--schedule=autowu: the warmup's ceiling.")
    flags.DEFINE_float("max_warmup_fraction", 0.5,
                       "--schedule=autowu: the longest warmup, as a fraction "
                       "of the run's steps.")
    flags.DEFINE_enum("scaling", None, list(LEARNING_RATE_SCALINGS),
                      "Peak-rate scaling rule; default: the preset's.")
    flags.DEFINE_enum("warmup_scaling", None, list(WARMUP_SCALINGS),
                      "Warmup-length scaling rule; default: the preset's.")
    flags.DEFINE_float("b_noise", None,
                       "--scaling=noise only: the gradient noise scale "
                       "B_noise (examples) measured at --base_batch_size "
                       "(bench.noise_scale_curve).")
    flags.DEFINE_enum("decay", decay, ["polynomial", "cosine", "constant"],
                      "Decay after the warmup (legw and goyal).")
    flags.DEFINE_float("epochs", epochs, "Training epochs.")
    flags.DEFINE_integer("max_steps", None,
                         "Stop at this step (smoke runs); default: all epochs.")
    flags.DEFINE_string("model_dir", None,
                        "Checkpoints, TensorBoard logs and results.json; a "
                        "run restarted on the same folder resumes.")
    flags.DEFINE_string("data_dir", None,
                        "Folder with one subfolder per dataset (mnist/, ptb/, "
                        "...); default: $LEGW_DATA_DIR, then the Keras cache, "
                        "then download.")
    flags.DEFINE_enum("strategy", "default", list(STRATEGIES),
                      "tf.distribute strategy.")
    flags.DEFINE_string("tpu", None, "TPU name or address (--strategy=tpu).")
    flags.DEFINE_integer("num_cpu_devices", 1,
                         "Split the host CPU into this many logical devices "
                         "(to run MirroredStrategy without accelerators).")
    flags.DEFINE_integer("seed", 0, "Random seed (weights and data order).")
    flags.DEFINE_boolean("deterministic", False,
                         "Enable TensorFlow op determinism.")
    flags.DEFINE_integer("checkpoint_every_steps", 0,
                         "Also checkpoint every this many steps (0: at epoch "
                         "ends only).")
    flags.DEFINE_integer("steps_per_loop", 100,
                         "Steps per call of the compiled training loop.")
    flags.DEFINE_boolean("jit_compile", False,
                         "Compile the training step with XLA.")
    flags.DEFINE_integer("gradient_accumulation_steps", 1,
                         "Split each replica's share of the batch into this "
                         "many micro-batches, run one after another, and "
                         "apply their summed gradient once: the global batch "
                         "(and its schedule) with a micro-batch's memory.")
    flags.DEFINE_boolean("noise_scale", False,
                         "Measure the gradient noise scale B_simple (logged "
                         "to TensorBoard and results.json).")
    flags.DEFINE_float("noise_scale_decay", 0.99,
                       "Per-step decay of the noise scale's moving averages; "
                       "closer to 1 averages longer (late in training the "
                       "gradient is small against its noise and needs it).")
    for name in ("batch_size", "base_batch_size", "steps_per_loop",
                 "num_cpu_devices", "gradient_accumulation_steps"):
        flags.register_validator(name, lambda v: v is not None and v > 0,
                                 message=f"--{name} must be a positive integer.")
    flags.register_validator("epochs", lambda v: v is not None and v > 0,
                             message="--epochs must be positive.")
    for name in ("base_learning_rate", "b_noise"):
        flags.register_validator(name, lambda v: v is None or v > 0,
                                 message=f"--{name} must be positive.")
    flags.register_validator("base_warmup_epochs", lambda v: v >= 0,
                             message="--base_warmup_epochs must be >= 0.")
    flags.register_validator("max_steps", lambda v: v is None or v > 0,
                             message="--max_steps must be positive.")
    flags.register_validator("checkpoint_every_steps", lambda v: v >= 0,
                             message="--checkpoint_every_steps must be >= 0.")


@dataclasses.dataclass(frozen=True)
class CommonOptions:
    """The common flags as plain values (see `define_common_flags` for what
    each means), plus `verbose`. Every script's `run(**kwargs)` takes these
    besides its own arguments; `batch_size` is required and the base
    hyperparameters default to the script's tuned ones."""

    batch_size: int
    base_batch_size: int
    base_learning_rate: float
    base_warmup_epochs: float
    epochs: float
    schedule: str = "legw"
    min_learning_rate: float = 1e-5
    max_learning_rate: float = 1.0
    max_warmup_fraction: float = 0.5
    scaling: Optional[str] = None
    warmup_scaling: Optional[str] = None
    b_noise: Optional[float] = None
    decay: str = "polynomial"
    max_steps: Optional[int] = None
    model_dir: Optional[str] = None
    data_dir: Optional[str] = None
    strategy: str = "default"
    tpu: Optional[str] = None
    num_cpu_devices: int = 1
    seed: int = 0
    deterministic: bool = False
    checkpoint_every_steps: int = 0
    steps_per_loop: int = 100
    jit_compile: bool = False
    gradient_accumulation_steps: int = 1
    noise_scale: bool = False
    noise_scale_decay: float = 0.99
    verbose: int = 1

    @classmethod
    def of(cls, base, kwargs):
        """The options of `run(**kwargs)`, the script's `base` defaults
        filling what the caller leaves out."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(f"run() got unknown arguments {unknown}; it takes "
                            f"the script's own and {sorted(names)}.")
        if "batch_size" not in kwargs:
            raise TypeError("run() needs batch_size (the global batch).")
        return cls(**{**base, **kwargs})


def common_run_kwargs(values):
    """The common flags as plain keyword arguments of `run(...)`."""
    return {f.name: getattr(values, f.name)
            for f in dataclasses.fields(CommonOptions) if f.name != "verbose"}


def make_schedule(*, schedule, base_learning_rate, base_batch_size,
                  batch_size, base_warmup_epochs, num_examples, epochs,
                  scaling=None, warmup_scaling=None, decay="polynomial",
                  b_noise=None):
    """The `keras_legw.LEGW` schedule that the flags describe: the recipe
    `schedule`, its rules replaced by `scaling` / `warmup_scaling` when
    given."""
    if schedule not in keras_legw.RECIPES:
        raise ValueError(f"Flag --schedule must be one of "
                         f"{', '.join(keras_legw.RECIPES)}. Received: "
                         f"{schedule!r}")
    if (b_noise is not None) != (scaling == "noise"):
        raise ValueError("Flag --b_noise (the gradient noise scale, in "
                         "examples) is required with --scaling=noise and only "
                         f"allowed with it. Received: --b_noise={b_noise} "
                         f"with --scaling={scaling}")
    fixed = keras_legw.RECIPES[schedule]
    flags_given = dict(base_warmup_epochs=base_warmup_epochs, decay=decay)
    overrides = dict(scaling=scaling, warmup_scaling=warmup_scaling)
    return keras_legw.recipe(
        schedule, base_learning_rate=base_learning_rate,
        base_batch_size=base_batch_size, batch_size=batch_size,
        num_examples=num_examples, total_epochs=epochs, noise_scale=b_noise,
        **{k: v for k, v in flags_given.items() if k not in fixed},
        **{k: v for k, v in overrides.items() if v is not None})


def write_schedule(model_dir, schedule, total_steps):
    """Writes the schedule's arguments, the run's `total_steps` and the
    schedule's derived values (peak rate, warmup epochs and steps; null
    where the schedule has none, or for AutoWarmup until it decides) to
    `model_dir/schedule.json`."""
    os.makedirs(model_dir, exist_ok=True)
    derived = ("peak_learning_rate", "warmup_epochs", "warmup_steps")
    with open(os.path.join(model_dir, "schedule.json"), "w") as f:
        json.dump({**schedule.get_config(),
                   **{name: getattr(schedule, name, None) for name in derived},
                   "total_steps": total_steps}, f, indent=2)


def schedule_of(options, num_examples):
    """The schedule that `options` describe, for `num_examples` per epoch."""
    if options.schedule == AUTOWU:
        return keras_legw.AutoWarmupSchedule(
            keras_legw.whole_steps(options.epochs, num_examples,
                                   options.batch_size),
            min_learning_rate=options.min_learning_rate,
            max_learning_rate=options.max_learning_rate,
            max_warmup_fraction=options.max_warmup_fraction,
            seed=options.seed)
    return make_schedule(
        schedule=options.schedule, base_learning_rate=options.base_learning_rate,
        base_batch_size=options.base_batch_size, batch_size=options.batch_size,
        base_warmup_epochs=options.base_warmup_epochs,
        num_examples=num_examples, epochs=options.epochs,
        scaling=options.scaling, warmup_scaling=options.warmup_scaling,
        decay=options.decay, b_noise=options.b_noise)


def train(task, options, *, strategy, schedule, make_optimizer, num_examples,
          model_dir, global_clipnorm=None):
    """Writes `schedule.json` (on the chief) and trains `task` for the
    options' epochs with their loop settings (`trainer.train`). Returns
    (results, model)."""
    # Checked here too (the trainer checks for its direct callers) so that a
    # refused resume leaves schedule.json untouched.
    checkpoints.check_resume_batch(model_dir, options.batch_size)
    total_steps = keras_legw.whole_steps(options.epochs, num_examples,
                                         options.batch_size)
    if distribute.is_chief(strategy):
        write_schedule(model_dir, schedule, total_steps)
    return trainer.train(
        task, strategy=strategy, make_optimizer=make_optimizer,
        global_batch_size=options.batch_size, num_examples=num_examples,
        total_steps=total_steps, model_dir=model_dir,
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


def write_flags(model_dir, values=None):
    """Writes the resolved flags to `model_dir/flags.txt` (a --flagfile)."""
    values = values or flags.FLAGS
    os.makedirs(model_dir, exist_ok=True)
    module = sys.modules["__main__"].__spec__
    lines = values.flags_into_string()
    with open(os.path.join(model_dir, FLAGS_FILE), "w") as f:
        f.write(f"# {module.name if module else 'flags'}\n{lines}")


def run_script(run, kwargs, default_model_dir, summary):
    """A script's `main` after flag parsing: fills in the default model_dir,
    writes the resolved flags there, calls `run(**kwargs)` (a ValueError or
    data error ends the process with status 2 and one line) and prints
    `summary(results)` with where the results are."""
    kwargs["model_dir"] = kwargs["model_dir"] or default_model_dir
    exit_on_error(checkpoints.prepare_model_dir, own_dir=kwargs["model_dir"])
    write_flags(kwargs["model_dir"])
    results = exit_on_error(run, **kwargs)
    print(f"{summary(results)}; results in "
          f"{os.path.join(kwargs['model_dir'], 'results.json')}")
    return results


def exit_on_error(function, **kwargs):
    """Calls `function(**kwargs)`; a ValueError or data error ends the
    process with status 2 and one line on stderr, a preemption (SIGTERM or
    SIGINT, see `preemption`) with 128 + the signal and one line."""
    try:
        return function(**kwargs)
    except (ValueError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except preemption.Preempted as stopped:
        print(str(stopped), file=sys.stderr)
        sys.exit(stopped.exit_status)
