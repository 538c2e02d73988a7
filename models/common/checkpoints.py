"""Checkpoints and the files beside them in a run's folder.

`model_dir/checkpoints` holds the model's variables, the optimizer (with its
step counter) and any extra state (an adaptive schedule's); three are kept.
Beside them: `run.json` (the global batch or the batch schedule, which a
resume must match),
`history.json` (one entry per epoch), `progress.json` (the newest
checkpoint's step and training seconds) and `results.json`. JSON files are
written atomically, so a crash never leaves half a file.
"""

import errno
import glob
import json
import os
import shutil
import sys

import tensorflow as tf

RESULTS_FILE = "results.json"
RUN_FILE = "run.json"  # what a resume must match: the batch or its schedule
HISTORY_FILE = "history.json"
PROGRESS_FILE = "progress.json"  # the newest checkpoint's step and seconds


def read_json(path, default):
    """The JSON value in `path`, or `default` if there is no such file."""
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


class JsonState(tf.train.experimental.PythonState):
    """An object's `get_state()` (JSON-able) as a part of a checkpoint,
    restored with its `set_state(...)`."""

    def __init__(self, owner):
        self._owner = owner

    def serialize(self):
        return json.dumps(self._owner.get_state())

    def deserialize(self, string_value):
        self._owner.set_state(json.loads(string_value))


def prepare_model_dir(own_dir):
    """Creates `own_dir` and checks that a file can be written there, before
    any training: a folder that cannot be written is one clear error."""
    probe = os.path.join(own_dir, ".write_test")
    try:
        os.makedirs(own_dir, exist_ok=True)
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as error:
        raise ValueError(f"--model_dir: {own_dir} cannot be written "
                         f"({error.strerror or error}). Choose a folder you "
                         "can write to.") from None


def checkpoint_candidates(checkpoint_dir):
    """The checkpoints in `checkpoint_dir`, newest first: the manager's list,
    or the `ckpt-N.index` files when its `checkpoint` file is unreadable."""
    try:
        state = tf.train.get_checkpoint_state(checkpoint_dir)
        paths = list(state.all_model_checkpoint_paths) if state else []
    except (tf.errors.OpError, ValueError):
        paths = []
    if not paths:
        indexes = tf.io.gfile.glob(os.path.join(checkpoint_dir,
                                                "ckpt-*.index"))
        paths = sorted((p[:-len(".index")] for p in indexes),
                       key=lambda p: int(p.rsplit("-", 1)[1]))
    return paths[::-1]


def restore_newest_readable(checkpoint, checkpoint_dir):
    """Restores the newest checkpoint that reads whole; each unreadable one
    is named in one line on stderr and the previous one is tried. Returns
    the path restored (None when there is none).

    Raises:
        ValueError: checkpoints exist but none is readable (nothing in the
            folder is touched).
    """
    candidates = checkpoint_candidates(checkpoint_dir)
    for path in candidates:
        try:
            checkpoint.restore(path).assert_consumed()
            return path
        except (tf.errors.OpError, ValueError, AssertionError, IndexError,
                OSError) as error:  # what a cut or garbled file raises
            reason = str(error).strip().splitlines()[0][:200]
            print(f"warning: checkpoint {path} is unreadable ({reason}); "
                  "trying the previous one", file=sys.stderr, flush=True)
    if candidates:
        raise ValueError(
            f"No readable checkpoint in {checkpoint_dir} (tried "
            f"{', '.join(candidates)}). Nothing was overwritten: restore a "
            "good copy, or move the folder away to start over.")
    return None


MODEL_VARIABLES = "model_variables"  # the model's entry in a checkpoint


def restore_model_variables(model, model_dir):
    """Restores `model`'s variables alone (not the optimizer's) from the
    newest checkpoint of the run in `model_dir`, to evaluate a trained model
    again. Returns the checkpoint's path.

    Raises:
        ValueError: `model_dir` holds no checkpoint, or one of another model.
    """
    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    if path is None:
        raise ValueError(f"No checkpoint in {model_dir}/checkpoints: pass the "
                         "--model_dir of a trained run.")
    checkpoint = tf.train.Checkpoint(**{MODEL_VARIABLES: list(model.variables)})
    try:
        # The optimizer's values are left out on purpose (expect_partial);
        # a variable the checkpoint lacks, or holds at another dtype or
        # shape, means another model.
        checkpoint.restore(path).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) \
            as error:
        raise ValueError(f"{path} is not a checkpoint of this model "
                         f"({str(error).splitlines()[0][:200]}).") from None
    return path


def run_identity(global_batch_size, batch_schedule=None, total_steps=None,
                 epochs=None):
    """What `run.json` holds and a resume must match: the global batch, or
    a growing batch's schedule as written (`--batch_schedule`), and the
    run's length (`total_steps` at a fixed batch, `epochs` of a growing
    one), over which the learning rate decays."""
    identity = ({"batch_schedule": batch_schedule}
                if batch_schedule is not None
                else {"global_batch_size": global_batch_size})
    for key, value in (("total_steps", total_steps), ("epochs", epochs)):
        if value is not None:
            identity[key] = value
    return identity


_BATCH_KEYS = ("batch_schedule", "global_batch_size")
_LENGTH_KEYS = ("total_steps", "epochs")


def check_resume_batch(model_dir, global_batch_size, batch_schedule=None,
                       total_steps=None, epochs=None):
    """Refuses to resume checkpoints trained at another global batch, with
    another batch schedule, or for another length (a `run.json` written
    before lengths were recorded is checked for its batch only): the
    learning rate and the data order are functions of the batch, the
    examples seen and the run's length."""
    path = os.path.join(model_dir, RUN_FILE)
    if not (os.path.exists(path) and checkpoint_candidates(
            os.path.join(model_dir, "checkpoints"))):
        return
    with open(path) as f:
        saved = json.load(f)
    wanted = run_identity(global_batch_size, batch_schedule, total_steps,
                          epochs)
    if not saved:
        return
    if any(saved.get(k) != wanted.get(k) for k in _BATCH_KEYS):
        describe = lambda identity: (  # noqa: E731
            f"--batch_schedule={identity['batch_schedule']}"
            if "batch_schedule" in identity
            else f"--batch_size={identity.get('global_batch_size')}")
        raise ValueError(
            f"{describe(wanted)}, but the checkpoints in {model_dir} were "
            f"trained with {describe(saved)}: the schedule and the data order"
            f" depend on it. Resume with {describe(saved)}, or use a new "
            "--model_dir.")
    for key in _LENGTH_KEYS:
        if key in saved and key in wanted and saved[key] != wanted[key]:
            raise ValueError(
                f"This run's {key} is {wanted[key]:g}, but the checkpoints in "
                f"{model_dir} belong to a run of {saved[key]:g} {key}: the "
                "learning rate decays over the run's length. Resume with the "
                "same --epochs (and --num_train_examples), or use a new "
                "--model_dir.")


def write_json(path, value):
    """Writes `value` as JSON to `path` atomically (a temporary file, then a
    rename), so a crash never leaves half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (the disk is full, say); the last
    good checkpoint is kept."""


def _remove_partial(prefix):
    """Removes what an interrupted save of `prefix` left (TensorFlow writes
    `<prefix>_temp/` and renames it at the end)."""
    for leftover in glob.glob(glob.escape(prefix) + "_temp*"):
        shutil.rmtree(leftover, ignore_errors=True)


class Checkpoints:
    """A run's checkpoints of `trackables` (name -> trackable), written to
    `own_dir` and restored from the chief's `model_dir`."""

    def __init__(self, trackables, model_dir, own_dir):
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(own_dir, "checkpoints"),
            max_to_keep=3)
        self._model_dir, self._own_dir = model_dir, own_dir

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def restore(self, step_of):
        """Restores the newest readable checkpoint. Every worker restores the
        chief's: a worker killed mid-save may hold an older one of its own,
        and workers that resume at different steps would pair up the wrong
        collective ops. Returns (step, history up to it, training seconds up
        to it), `step_of()` reading the restored step."""
        restore_newest_readable(self.checkpoint,
                                os.path.join(self._model_dir, "checkpoints"))
        step = step_of()
        history = [h for h in read_json(self._path(HISTORY_FILE), [])
                   if h["step"] <= step]
        progress = read_json(self._path(PROGRESS_FILE), {})
        if progress.get("step") == step:
            seconds = progress["train_seconds"]
        else:
            seconds = history[-1]["train_seconds"] if history else 0.0
        return step, history, seconds

    def save(self, step, train_seconds):
        """A checkpoint at `step` (once) and the training seconds so far."""
        prefix = os.path.join(self.manager.directory, f"ckpt-{step}")
        if self.latest != prefix:
            try:
                self.manager.save(checkpoint_number=step)
            except (tf.errors.ResourceExhaustedError, OSError) as error:
                _remove_partial(prefix)
                reason = ("the disk is full" if isinstance(
                    error, tf.errors.ResourceExhaustedError)
                    or getattr(error, "errno", None) == errno.ENOSPC
                    else str(error).splitlines()[0])
                raise CheckpointWriteError(
                    f"Cannot write the checkpoint of step {step} in "
                    f"{self.manager.directory}: {reason}. The last good "
                    f"checkpoint ({self.latest}) is kept; free space and "
                    "rerun the same command to resume from it.") from None
        write_json(self._path(PROGRESS_FILE),
                   {"step": step, "train_seconds": train_seconds})

    def write_history(self, history):
        write_json(self._path(HISTORY_FILE), history)

    def _path(self, name):
        return os.path.join(self._own_dir, name)
