"""MNIST-LSTM end to end on the real data: smoke runs, strategies, resume,
errors. Small subsets and few steps keep each run to seconds."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_legw
from keras_legw import LARS, LEGW
from models import mnist_lstm
from models import mnist_lstm_input
from models.common import flags as common_flags
from tests.models import multi_worker

SMALL = dict(num_train_examples=1024, units=16, num_cpu_devices=2,
             verbose=0, deterministic=True)


def _checkpoint_weights(model_dir):
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    names = sorted(n for n in reader.get_variable_to_shape_map()
                   if n.endswith("VARIABLE_VALUE") and "save_counter" not in n)
    assert any(n.startswith("model_variables/") for n in names), names
    return {n: reader.get_tensor(n) for n in names}


def _assert_same_weights(dir_a, dir_b, exact=True):
    a, b = _checkpoint_weights(dir_a), _checkpoint_weights(dir_b)
    assert a.keys() == b.keys()
    for name in a:
        if exact:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        else:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5,
                                       err_msg=name)


def test_smoke_run_writes_results_and_follows_the_schedule(tmp_path):
    results = mnist_lstm.run(batch_size=256, epochs=2, max_steps=5,
                             model_dir=str(tmp_path), **SMALL)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    for key in ("steps", "epochs", "examples_per_second",
                "final_learning_rate", "wall_seconds", "test_accuracy"):
        assert on_disk[key] == results[key]
    assert results["steps"] == 5
    assert results["epochs"] == pytest.approx(5 * 256 / 1024)
    # The reported accuracy is that of the saved weights on all 10,000 test
    # images, computed here with NumPy from the model's logits.
    model = mnist_lstm.build_model(16)
    tf.train.Checkpoint(model_variables=list(model.variables)).restore(
        tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    ).expect_partial()
    _, (images, labels) = mnist_lstm_input.load_mnist()
    logits = model.predict(images.astype(np.float32) / 255.0,
                           batch_size=2000, verbose=0)
    assert results["test_accuracy"] == pytest.approx(
        np.mean(np.argmax(logits, axis=-1) == labels), abs=1e-6)
    expected = LEGW(0.002, 128, 256, 0.2, 1024, 2)(5)
    assert results["final_learning_rate"] == pytest.approx(float(expected))
    assert (tmp_path / "schedule.json").exists()
    assert os.listdir(tmp_path / "tensorboard")
    # The epoch ends at step ceil(1024 / 256) = 4 and at max_steps = 5.
    assert [h["step"] for h in results["history"]] == [4, 5]


def test_mirrored_two_replicas_match_one_device(tmp_path):
    """The same global batches, split over two replicas, give the weights of
    a one-replica run (up to float summation order)."""
    kwargs = dict(SMALL, batch_size=64, epochs=1, max_steps=6)
    mirrored = mnist_lstm.run(strategy="mirrored", model_dir=str(tmp_path / "m"),
                              **kwargs)
    mnist_lstm.run(strategy="default", model_dir=str(tmp_path / "d"), **kwargs)
    assert mirrored["num_replicas"] == 2
    _assert_same_weights(tmp_path / "m", tmp_path / "d", exact=False)


def test_stop_after_first_epoch_and_resume_equals_uninterrupted(tmp_path):
    kwargs = dict(SMALL, batch_size=256, epochs=2, strategy="mirrored")
    full = mnist_lstm.run(model_dir=str(tmp_path / "full"), **kwargs)
    first = mnist_lstm.run(model_dir=str(tmp_path / "split"), max_steps=4,
                           **kwargs)
    assert first["steps"] == 4  # one epoch of 1024 examples at batch 256
    resumed = mnist_lstm.run(model_dir=str(tmp_path / "split"), **kwargs)
    assert resumed["resumed_from_step"] == 4
    assert resumed["steps"] == full["steps"] == 8
    assert resumed["final_learning_rate"] == full["final_learning_rate"]
    assert resumed["test_accuracy"] == full["test_accuracy"]
    _assert_same_weights(tmp_path / "full", tmp_path / "split", exact=True)


def test_stop_mid_epoch_in_one_process_and_resume_equals_uninterrupted(
        tmp_path):
    """One device, stopped at step 6 (mid-way through the second 4-step
    epoch) after a step checkpoint at 3: the resumed run replays the data
    from step 6 and ends with the uninterrupted run's weights."""
    kwargs = dict(SMALL, strategy="default", batch_size=256, epochs=2,
                  checkpoint_every_steps=3)
    full = mnist_lstm.run(model_dir=str(tmp_path / "full"), **kwargs)
    first = mnist_lstm.run(model_dir=str(tmp_path / "split"), max_steps=6,
                           **kwargs)
    assert first["steps"] == 6
    resumed = mnist_lstm.run(model_dir=str(tmp_path / "split"), **kwargs)
    assert resumed["resumed_from_step"] == 6
    assert resumed["steps"] == full["steps"] == 8
    assert resumed["final_learning_rate"] == full["final_learning_rate"]
    _assert_same_weights(tmp_path / "full", tmp_path / "split", exact=True)


@pytest.mark.parametrize("first,then", [("mirrored", "default"),
                                        ("default", "mirrored")])
def test_elastic_resume_on_another_number_of_replicas(tmp_path, first, then):
    """Stopped on 2 replicas, resumed on 1 (and the other way round), with
    the same global batch: the data and the rate are functions of the batch
    and the step, so it ends with an uninterrupted run's weights (within
    float tolerance: the all-reduce sums in another order)."""
    kwargs = dict(SMALL, batch_size=256, epochs=2)
    mnist_lstm.run(model_dir=str(tmp_path / "full"), strategy=then, **kwargs)
    mnist_lstm.run(model_dir=str(tmp_path / "split"), strategy=first,
                   max_steps=6, **kwargs)
    resumed = mnist_lstm.run(model_dir=str(tmp_path / "split"), strategy=then,
                             **kwargs)
    assert resumed["resumed_from_step"] == 6
    assert resumed["num_replicas"] == (2 if then == "mirrored" else 1)
    _assert_same_weights(tmp_path / "full", tmp_path / "split", exact=False)


def test_resume_at_another_batch_size_is_refused(tmp_path):
    mnist_lstm.run(model_dir=str(tmp_path), batch_size=256, epochs=2,
                   max_steps=2, **SMALL)
    schedule = (tmp_path / "schedule.json").read_text()
    (tmp_path / "flags.txt").write_text("--batch_size=256\n")
    result = _script([f"--model_dir={tmp_path}", "--batch_size=512",
                      "--epochs=2", "--num_train_examples=1024", "--units=16"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert ("--batch_size=512, but the checkpoints in" in result.stderr
            and "Resume with --batch_size=256" in result.stderr)
    assert (tmp_path / "schedule.json").read_text() == schedule
    # The refused flags are not written over the run's own.
    assert (tmp_path / "flags.txt").read_text() == "--batch_size=256\n"
    assert not list(tmp_path.glob("flags.txt.*"))


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(max(os.path.getsize(path) // 2, 1))


def test_a_truncated_newest_checkpoint_costs_one_checkpoint(tmp_path,
                                                            capfd):
    """Checkpoints at steps 4 and 8; the newest cut in half: the rerun names
    it in one line, resumes from step 4 and ends with the weights of a run
    that stopped at step 4 and resumed cleanly."""
    kwargs = dict(SMALL, strategy="default", batch_size=256, epochs=3)
    for name in ("damaged", "clean"):
        mnist_lstm.run(model_dir=str(tmp_path / name), max_steps=8
                       if name == "damaged" else 4, **kwargs)
    checkpoints = tmp_path / "damaged" / "checkpoints"
    _truncate(checkpoints / "ckpt-8.data-00000-of-00001")
    capfd.readouterr()
    resumed = mnist_lstm.run(model_dir=str(tmp_path / "damaged"), **kwargs)
    err = capfd.readouterr().err
    warnings = [l for l in err.splitlines() if l.startswith("warning:")]
    assert len(warnings) == 1 and "ckpt-8" in warnings[0]
    assert resumed["resumed_from_step"] == 4 and resumed["steps"] == 12
    mnist_lstm.run(model_dir=str(tmp_path / "clean"), **kwargs)
    _assert_same_weights(tmp_path / "damaged", tmp_path / "clean", exact=True)


def test_no_readable_checkpoint_is_one_error_and_nothing_is_overwritten(
        tmp_path):
    kwargs = dict(SMALL, strategy="default", batch_size=256, epochs=3)
    mnist_lstm.run(model_dir=str(tmp_path), max_steps=8, **kwargs)
    checkpoints = tmp_path / "checkpoints"
    for shard in checkpoints.glob("ckpt-*.data-*"):
        _truncate(shard)
    before = {p.name: p.read_bytes() for p in checkpoints.iterdir()}
    with pytest.raises(ValueError, match="No readable checkpoint in"):
        mnist_lstm.run(model_dir=str(tmp_path), **kwargs)
    assert {p.name: p.read_bytes() for p in checkpoints.iterdir()} == before


def test_a_model_dir_that_cannot_be_written_is_one_error(tmp_path):
    (tmp_path / "a_file").write_text("in the way")
    result = _script([f"--model_dir={tmp_path / 'a_file' / 'run'}",
                      "--max_steps=1"])
    assert result.returncode == 2
    assert "cannot be written" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name,cls", [
    ("adam", keras.optimizers.Adam), ("adamw", keras.optimizers.AdamW),
    ("lamb", keras.optimizers.Lamb), ("lars", LARS),
    ("momentum", keras.optimizers.SGD)])
def test_each_optimizer_is_built_with_its_own_base_rate(tmp_path, name, cls):
    assert set(mnist_lstm.OPTIMIZERS) == {"adam", "adamw", "lamb", "lars",
                                          "momentum"}
    optimizer = mnist_lstm.make_optimizer(name, 0.5)
    assert type(optimizer) is cls
    if name in ("lars", "momentum"):
        assert optimizer.momentum == 0.9
    if name == "adamw":
        assert optimizer.weight_decay == mnist_lstm.ADAMW_WEIGHT_DECAY
    results = mnist_lstm.run(batch_size=256, epochs=2, max_steps=2,
                             optimizer=name, model_dir=str(tmp_path), **SMALL)
    base = mnist_lstm.BASE_LEARNING_RATES[name]
    expected = LEGW(base, 128, 256, 0.2, 1024, 2)(2)
    assert results["final_learning_rate"] == pytest.approx(float(expected))


def test_label_smoothing_loss_against_numpy():
    logits = np.array([[2.0, -1.0, 0.5] + [0.0] * 7,
                       [0.1] * 9 + [3.0]], np.float32)
    labels = np.array([0, 9])
    smoothing = 0.2
    target = np.full((2, 10), smoothing / 10)
    target[np.arange(2), labels] += 1 - smoothing
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -(target * log_p).sum(-1)
    got = mnist_lstm.make_loss(smoothing)(tf.constant(labels), logits)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
    plain = mnist_lstm.make_loss(0.0)(tf.constant(labels), logits)
    np.testing.assert_allclose(np.asarray(plain),
                               -log_p[np.arange(2), labels], rtol=1e-5)


def test_noise_scaling_through_run(tmp_path):
    results = mnist_lstm.run(batch_size=512, epochs=2, max_steps=1,
                             scaling="noise", b_noise=300.0,
                             model_dir=str(tmp_path), **SMALL)
    schedule = LEGW(0.002, 128, 512, 0.2, 1024, 2, scaling="noise",
                    noise_scale=300.0)
    assert results["final_learning_rate"] == pytest.approx(float(schedule(1)))
    with pytest.raises(ValueError, match="--optimizer must be one of"):
        mnist_lstm.run(batch_size=512, optimizer="sgd", max_steps=1,
                       model_dir=str(tmp_path / "x"), **SMALL)


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_gradient_accumulation_equals_the_whole_batch(tmp_path, strategy):
    """--gradient_accumulation_steps=4 at batch 256 (micro-batches of 64
    over all replicas) gives the weights, optimizer state and learning rate
    of 256 in one piece, within float tolerance (sums in another order)."""
    kwargs = dict(SMALL, batch_size=256, epochs=2, max_steps=6,
                  strategy=strategy)
    whole = mnist_lstm.run(model_dir=str(tmp_path / "whole"), **kwargs)
    pieces = mnist_lstm.run(model_dir=str(tmp_path / "acc"),
                            gradient_accumulation_steps=4, **kwargs)
    assert pieces["steps"] == whole["steps"] == 6
    assert pieces["final_learning_rate"] == whole["final_learning_rate"]
    assert pieces["final_loss"] == pytest.approx(whole["final_loss"],
                                                 rel=1e-4)
    _assert_same_weights(tmp_path / "whole", tmp_path / "acc", exact=False)


def test_gradient_accumulation_resumed_mid_epoch_equals_uninterrupted(
        tmp_path):
    kwargs = dict(SMALL, strategy="mirrored", batch_size=256, epochs=2,
                  checkpoint_every_steps=3, gradient_accumulation_steps=2)
    mnist_lstm.run(model_dir=str(tmp_path / "full"), **kwargs)
    mnist_lstm.run(model_dir=str(tmp_path / "split"), max_steps=6, **kwargs)
    resumed = mnist_lstm.run(model_dir=str(tmp_path / "split"), **kwargs)
    assert resumed["resumed_from_step"] == 6 and resumed["steps"] == 8
    _assert_same_weights(tmp_path / "full", tmp_path / "split", exact=True)


def test_autowu_through_the_trainer_resumes_exactly(tmp_path):
    """--schedule=autowu: the rate follows the controller (the results'
    final rate is its closed form at the last step), and a run stopped
    mid-epoch resumes from the controller's state in the checkpoint (its
    losses, checks and random state) to the uninterrupted run's weights and
    decision."""
    # 2 steps an epoch, 40 steps, the cap at 20; Adam's loss climbs from a
    # rate near 1 (step ~16), which the checks at epoch ends catch.
    kwargs = dict(SMALL, strategy="default", batch_size=256, epochs=20,
                  num_train_examples=512, schedule="autowu",
                  min_learning_rate=1e-4, max_learning_rate=10.0)
    full = mnist_lstm.run(model_dir=str(tmp_path / "full"), **kwargs)
    mnist_lstm.run(model_dir=str(tmp_path / "split"), max_steps=11, **kwargs)
    resumed = mnist_lstm.run(model_dir=str(tmp_path / "split"), **kwargs)
    assert resumed["resumed_from_step"] == 11 and full["steps"] == 40
    assert 11 < full["warmup_steps"] < 20  # a switch by the checks
    assert full["peak_learning_rate"] < 0.3
    assert (resumed["warmup_steps"], resumed["peak_learning_rate"]) == (
        full["warmup_steps"], full["peak_learning_rate"])
    _assert_same_weights(tmp_path / "full", tmp_path / "split", exact=True)
    reference = keras_legw.AutoWarmupController(40, 1e-4, 10.0)
    reference.warmup_steps = full["warmup_steps"]
    reference.peak_learning_rate = full["peak_learning_rate"]
    assert [h["step"] for h in full["history"]][-1] == 40
    assert full["final_learning_rate"] == reference.learning_rate(40) == 0.0
    schedule = json.loads((tmp_path / "full" / "schedule.json").read_text())
    assert schedule["total_steps"] == 40 and schedule["max_learning_rate"] == 10


def test_autowu_checks_within_epochs_switch_sooner_and_resume(tmp_path):
    """With 8 steps an epoch and the cap at step 20, checks at epoch ends
    (8, 16) cannot give three positives before the cap: only the blow-up
    test, at every step, ends that warmup (at step 17, once the loss is 4x
    its start); checks every 0.25 epochs (2 steps) catch the climb (rate 1
    near step 11) and switch before it. A run stopped between two checks
    resumes to the same decision and weights."""
    kwargs = dict(SMALL, strategy="default", batch_size=64, epochs=5,
                  num_train_examples=512, schedule="autowu",
                  min_learning_rate=1e-4, max_learning_rate=1000.0)
    by_epoch = mnist_lstm.run(model_dir=str(tmp_path / "epoch"), **kwargs)
    assert by_epoch["warmup_steps"] == 17  # the blow-up, before the cap
    kwargs["check_every_epochs"] = 0.25
    full = mnist_lstm.run(model_dir=str(tmp_path / "full"), **kwargs)
    assert 11 < full["warmup_steps"] < 20 and full["warmup_steps"] % 2 == 0
    assert full["peak_learning_rate"] < 1.0
    mnist_lstm.run(model_dir=str(tmp_path / "split"), max_steps=13, **kwargs)
    resumed = mnist_lstm.run(model_dir=str(tmp_path / "split"), **kwargs)
    assert resumed["resumed_from_step"] == 13
    assert (resumed["warmup_steps"], resumed["peak_learning_rate"]) == (
        full["warmup_steps"], full["peak_learning_rate"])
    _assert_same_weights(tmp_path / "full", tmp_path / "split", exact=True)


def test_batch_not_divisible_by_micro_batches(tmp_path):
    with pytest.raises(ValueError, match=(
            r"--gradient_accumulation_steps=3: --batch_size=256 must divide "
            r"by it x 2 replica\(s\) = 6")):
        mnist_lstm.run(batch_size=256, strategy="mirrored", max_steps=1,
                       gradient_accumulation_steps=3,
                       model_dir=str(tmp_path), **SMALL)


def test_batch_not_divisible_by_replicas(tmp_path):
    with pytest.raises(ValueError, match=r"--batch_size=33 must be divisible "
                                         r"by the number of replicas, 2"):
        mnist_lstm.run(batch_size=33, strategy="mirrored", max_steps=1,
                       model_dir=str(tmp_path), **SMALL)


def _script(args, env=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "models.mnist_lstm", *args],
        capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, **(env or {})))


@pytest.mark.parametrize("args,message", [
    (["--batch_size=0"], "--batch_size must be a positive integer"),
    (["--batch_size=7", "--strategy=mirrored", "--num_cpu_devices=2"],
     "must be divisible by the number of replicas, 2"),
    (["--data_dir=/nonexistent", "--max_steps=1"], None),
    (["--strategy=bogus"], "flag --strategy=bogus"),
    (["--optimizer=adamz"], "flag --optimizer=adamz"),
    (["--epochs=abc"], "flag --epochs=abc"),
])
def test_bad_flags_exit_with_a_clear_error(tmp_path, args, message):
    """Status 2 and one line, after TensorFlow's start-up log lines (its
    parser's errors too, which absl ends with status 1 and two lines)."""
    env = {}
    if message is None:  # missing data: no copy anywhere, downloads blocked
        env = {"LEGW_DATA_DIR": str(tmp_path / "none"),
               "HOME": str(tmp_path), "https_proxy": "http://127.0.0.1:9",
               "HTTPS_PROXY": "http://127.0.0.1:9"}
        message = "not found in /nonexistent/mnist"
    result = _script([f"--model_dir={tmp_path / 'run'}", *args], env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [l for l in result.stderr.splitlines() if l.startswith("error")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not [l for l in result.stderr.splitlines()
                if l.startswith(("Try --helpfull", "FATAL Flags"))]


@pytest.mark.parametrize("kwargs,message", [
    (dict(strategy="horovod"), "Flag --strategy must be one of"),
    (dict(epochs=-1), "Flag --epochs must be positive"),
    (dict(base_warmup_epochs=1, batch_size=8192),
     "Argument `base_warmup_epochs` must give a warmup shorter"),
    (dict(optimizer="adagrad"), "Flag --optimizer must be one of"),
    (dict(label_smoothing=1.0), r"--label_smoothing must be in \[0, 1\)"),
    (dict(scaling="noise"),
     r"Flag --b_noise \(the gradient noise scale, in examples\) is required"),
    (dict(b_noise=1000.0), "only allowed with it"),
    (dict(b_noise=-3.0), "--b_noise must be positive"),
    (dict(schedule="autowu", max_learning_rate=1e-6),
     "Argument `max_learning_rate` must be larger than `min_learning_rate`"),
    (dict(gradient_accumulation_steps=0),
     "--gradient_accumulation_steps must be a positive integer"),
    (dict(gradient_accumulation_steps=3, batch_size=128),
     "--gradient_accumulation_steps=3: --batch_size=128 must divide by it"),
])
def test_bad_options_are_one_clear_error(tmp_path, kwargs, message):
    """The same checks as the flags' (the script turns these ValueErrors
    into one line and exit status 2, as the test above shows)."""
    with pytest.raises(ValueError, match=message):
        mnist_lstm.run(**dict(dict(SMALL, batch_size=64, epochs=1,
                                   max_steps=1, model_dir=str(tmp_path)),
                              **kwargs))


def test_script_smoke_run_with_max_steps(tmp_path):
    result = _script([f"--model_dir={tmp_path}", "--batch_size=512",
                      "--max_steps=2", "--num_train_examples=2048",
                      "--units=16"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test_accuracy" in result.stdout
    assert "--batch_size=512" in (tmp_path / "flags.txt").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["steps"] == 2


MULTI_WORKER_STEPS = 80


def _start_workers(model_dir, args=(
        "--batch_size=64", "--epochs=100", f"--max_steps={MULTI_WORKER_STEPS}",
        "--checkpoint_every_steps=10", "--steps_per_loop=10",
        "--num_train_examples=256")):
    return multi_worker.start_workers([
        "-m", "models.mnist_lstm", "--strategy=multi_worker", *args,
        "--units=16", "--deterministic", f"--model_dir={model_dir}"])


def test_multi_worker_killed_worker_restarts_from_last_checkpoint(tmp_path):
    """Two local worker processes (TF_CONFIG). Worker 1 is killed after the
    first checkpoints; the job is restarted (as a cluster manager restarts a
    MultiWorkerMirroredStrategy job) and both workers resume from the last
    checkpoint and end with equal weights."""
    model_dir = str(tmp_path)
    workers = _start_workers(model_dir)
    index = os.path.join(model_dir, "checkpoints", "ckpt-10.index")
    deadline = time.time() + 300
    while not os.path.exists(index):
        assert time.time() < deadline, "no checkpoint within 300 s"
        assert workers[1].poll() is None, workers[1].communicate()[1][-3000:]
        time.sleep(0.05)
    workers[1].kill()
    try:  # the chief fails or blocks in a collective without its peer
        workers[0].wait(timeout=10)
    except subprocess.TimeoutExpired:
        workers[0].kill()
    for worker in workers:
        worker.communicate()
    assert not os.path.exists(os.path.join(model_dir, "results.json")), (
        "the job finished before worker 1 could be killed")

    workers = _start_workers(model_dir)
    multi_worker.wait_for_both(workers)
    chief, other = [json.loads(open(os.path.join(d, "results.json")).read())
                    for d in (model_dir, os.path.join(model_dir, "worker_1"))]
    assert chief["num_replicas"] == 2
    assert chief["resumed_from_step"] == other["resumed_from_step"] >= 10
    assert chief["steps"] == other["steps"] == MULTI_WORKER_STEPS
    _assert_same_weights(model_dir, os.path.join(model_dir, "worker_1"))


# Preemption: 2 epochs of 16 steps, one step per loop call, so a signal sent
# once training starts stops it after the first step, mid-epoch.
PREEMPTED_RUN = ["--batch_size=64", "--epochs=2", "--num_train_examples=1024",
                 "--steps_per_loop=1"]


def _wait_for(path, processes, timeout=300):
    """Waits until `path` exists (the trainer writes run.json once it catches
    the signals, just before the first step)."""
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert time.time() < deadline, f"no {path} within {timeout} s"
        for process in processes:
            assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.05)


def _saved_step(model_dir):
    return json.loads(open(os.path.join(model_dir, "progress.json")).read())[
        "step"]


# A growing batch: 1024 examples, 16 steps at 64 then 8 at 128.
RAMP = ["--batch_schedule=0:64,1:128"]


@pytest.mark.parametrize("signal_number,status,ramp", [
    (signal.SIGTERM, 143, True), (signal.SIGINT, 130, False)])
def test_a_signal_saves_mid_epoch_and_the_same_command_resumes(
        tmp_path, signal_number, status, ramp):
    """SIGTERM (or SIGINT) while training: a checkpoint at the step reached,
    not an epoch end, exit status 128 + the signal with one line. The
    SIGTERM run grows its batch (64, then 128): the same command resumes
    there, with the ramp's state and the examples seen from the checkpoint,
    and ends with an uninterrupted run's weights, its history recording
    each epoch's batch, steps and examples."""
    args = [*PREEMPTED_RUN, *(RAMP if ramp else []), "--units=16",
            "--deterministic", "--num_cpu_devices=2",
            f"--model_dir={tmp_path / 'split'}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "models.mnist_lstm", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(tmp_path / "split" / "run.json", [process])
    process.send_signal(signal_number)
    _, err = process.communicate(timeout=300)
    assert process.returncode == status, err[-3000:]
    step = _saved_step(tmp_path / "split")
    assert 0 < step < 24 and step != 16
    assert (f"Stopped by {signal.Signals(signal_number).name} at step {step}"
            in err and "Traceback" not in err)
    assert os.path.exists(tmp_path / "split" / "checkpoints" /
                          f"ckpt-{step}.index")
    if signal_number == signal.SIGINT:
        return  # the same path as SIGTERM from here
    result = _script(args, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = json.loads((tmp_path / "split" / "results.json").read_text())
    assert resumed["resumed_from_step"] == step and resumed["steps"] == 24
    assert resumed["train_seconds"] > 0
    assert resumed["batch_sizes"][-2:] == [64, 128]
    assert [(h["step"], h["batch_size"], h["examples"])
            for h in resumed["history"] if h["step"] in (16, 24)] == [
        (16, 64, 1024), (24, 128, 2048)]
    mnist_lstm.run(batch_size=64, batch_schedule="0:64,1:128", epochs=2,
                   model_dir=str(tmp_path / "full"), **SMALL)
    _assert_same_weights(tmp_path / "full", tmp_path / "split", exact=True)


def test_multi_worker_sigterm_to_one_worker_stops_both_at_one_step(tmp_path):
    """Two local workers; only worker 1 gets SIGTERM. Both agree on a step,
    save there (mid-epoch) and exit with 143; the restarted job resumes
    from it and ends with the weights of an uninterrupted two-replica run
    (within float tolerance: another all-reduce)."""
    model_dir = str(tmp_path / "job")
    workers = _start_workers(model_dir, PREEMPTED_RUN)
    _wait_for(os.path.join(model_dir, "worker_1", "run.json"), workers)
    workers[1].send_signal(signal.SIGTERM)
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 143, err[-3000:]
        assert "Stopped by SIGTERM at step" in err
    step = _saved_step(model_dir)
    assert step == _saved_step(os.path.join(model_dir, "worker_1"))
    assert 0 < step < 32 and step != 16

    workers = _start_workers(model_dir, PREEMPTED_RUN)
    multi_worker.wait_for_both(workers)
    chief = json.loads(open(os.path.join(model_dir, "results.json")).read())
    assert chief["resumed_from_step"] == step and chief["steps"] == 32
    mnist_lstm.run(batch_size=64, epochs=2, strategy="mirrored",
                   model_dir=str(tmp_path / "full"), **SMALL)
    _assert_same_weights(tmp_path / "full", model_dir, exact=False)


def test_a_diverging_autowu_warmup_switches_in_the_trainer(tmp_path):
    """Adam warmed towards 1e30 (x 5.6 a step) blows up long before the cap
    (step 40): the trainer feeds every warmup step's loss to the schedule,
    whose blow-up test switches at once, so the run finishes (the trainer's
    non-finite stop does not fire) with a finite loss. (An LSTM's loss stays
    finite for the rest of an 8-step loop too, so this passes with loops of
    whole epochs as well; that the loops stop at every warmup step is
    `test_schedule_says_when_a_loop_checks`.)"""
    kwargs = dict(SMALL, strategy="default", batch_size=64, epochs=10,
                  num_train_examples=512, schedule="autowu",
                  min_learning_rate=1e-3, max_learning_rate=1e30,
                  check_every_epochs=10.0)
    results = mnist_lstm.run(model_dir=str(tmp_path), **kwargs)
    assert results["steps"] == 80
    assert results["warmup_steps"] < 40
    assert results["peak_learning_rate"] < 1.0
    assert all(math.isfinite(h["loss"]) for h in results["history"])


def test_a_full_disk_is_one_line_exit_1_and_the_last_checkpoint_kept(
        tmp_path, monkeypatch, capsys):
    """The third checkpoint's write fails as SaveV2 does on a full disk
    (ResourceExhaustedError, a `_temp` folder left behind): one line naming
    the folder, exit status 1, the partial folder removed, the second
    checkpoint kept; rerun with space, the run resumes from it."""
    real_save = tf.train.CheckpointManager.save
    saves = []

    def save_until_full(manager, checkpoint_number=None, **kwargs):
        saves.append(checkpoint_number)
        if len(saves) == 3:
            os.makedirs(os.path.join(manager.directory,
                                     f"ckpt-{checkpoint_number}_temp"))
            raise tf.errors.ResourceExhaustedError(
                None, None, "SaveV2: No space left on device")
        return real_save(manager, checkpoint_number=checkpoint_number,
                         **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save_until_full)
    kwargs = dict(SMALL, strategy="default", batch_size=256, epochs=4,
                  model_dir=str(tmp_path))
    with pytest.raises(SystemExit) as info:
        common_flags.exit_on_error(mnist_lstm.run, **kwargs)
    assert info.value.code == 1
    err = capsys.readouterr().err
    folder = os.path.join(str(tmp_path), "checkpoints")
    assert err.count("\n") == 1
    assert err.startswith(f"error: Cannot write the checkpoint of step 12 in "
                          f"{folder}: the disk is full. The last good "
                          f"checkpoint ({folder}/ckpt-8) is kept")
    assert sorted(os.listdir(folder)) == ["checkpoint", *sorted(
        f for f in os.listdir(folder) if f.startswith("ckpt-"))]
    assert not any(f.endswith("_temp") for f in os.listdir(folder))
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    resumed = mnist_lstm.run(**kwargs)
    assert resumed["resumed_from_step"] == 8 and resumed["steps"] == 16


def test_multi_worker_workers_agree_on_each_noise_batch(tmp_path):
    """Two local workers with --batch_schedule=noise: each epoch's batch is
    one decision (the chief's estimates, broadcast), so both workers record
    the same batches and end with the same weights."""
    model_dir = str(tmp_path)
    workers = _start_workers(model_dir, (
        "--batch_size=32", "--batch_schedule=noise", "--max_batch_size=256",
        "--epochs=3", "--num_train_examples=512", "--steps_per_loop=8"))
    multi_worker.wait_for_both(workers)
    chief, other = [json.loads(open(os.path.join(d, "results.json")).read())
                    for d in (model_dir, os.path.join(model_dir, "worker_1"))]
    assert chief["batch_sizes"] == other["batch_sizes"]
    assert len(chief["batch_sizes"]) == 3
    assert chief["steps"] == other["steps"]
    _assert_same_weights(model_dir, os.path.join(model_dir, "worker_1"))


@pytest.mark.parametrize("kwargs,message", [
    (dict(batch_schedule="noise"), "`max_batch_size` is required"),
    (dict(batch_schedule="0:64,1:32"), "Flag --batch_schedule=0:64,1:32: "),
    (dict(batch_schedule="0:64,1:128", schedule="autowu"),
     "it works with --schedule=legw only"),
    (dict(batch_schedule="0:64,1:128", scaling="noise", b_noise=100.0),
     "--scaling must be one of sqrt, linear, none with --batch_schedule"),
    (dict(max_batch_size=1024), "give --batch_schedule too"),
    (dict(batch_schedule="0:64,1:99", strategy="mirrored"),
     "Flag --batch_schedule=0:64,1:99: .*batch_multiple=2"),
])
def test_bad_growing_batch_options_are_one_clear_error(tmp_path, kwargs,
                                                       message):
    with pytest.raises(ValueError, match=message):
        mnist_lstm.run(batch_size=64, epochs=2, model_dir=str(tmp_path),
                       **dict(SMALL, **kwargs))


def test_resume_with_another_epochs_is_refused(tmp_path):
    """The rate decays over the run's length: a resume that changes it is
    refused in one line, the folder's files kept."""
    mnist_lstm.run(model_dir=str(tmp_path), batch_size=256, epochs=2,
                   max_steps=2, **SMALL)
    schedule = (tmp_path / "schedule.json").read_text()
    result = _script([f"--model_dir={tmp_path}", "--batch_size=256",
                      "--epochs=3", "--num_train_examples=1024", "--units=16"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert ("This run's total_steps is 12, but the checkpoints in"
            in result.stderr and "a run of 8 total_steps" in result.stderr)
    assert (tmp_path / "schedule.json").read_text() == schedule
