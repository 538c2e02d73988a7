"""Validation of the cluster planner (`keras_legw.cluster`) against the zoo's
tf.distribute trainer on this host: a step's seconds on 1 and 2 devices, and
a whole run's training seconds on one device, predicted and measured.

    python -m bench.cluster_plan --plan=steps     # MNIST-LSTM and PTB-small
    python -m bench.cluster_plan --plan=runs      # MNIST fixed 2048, the ramp
    python -m bench.cluster_plan --plan=report    # Markdown table, verdicts
    python -m bench.cluster_plan --plan=steps --smoke --csv=/tmp/cp.csv \\
        --data_dir=/work/shared/data              # end to end, tiny settings
    python -m bench.cluster_plan --plan=steps --smoke --models=ptb_lstm ...

On an idle two-core CPU (estimates): --plan=steps about 15-20 minutes
(MNIST about 9, PTB about 7: four profiles, three all-reduce measurements,
fifteen trainer runs of 80 steps, each in its own process), --plan=runs
about 12 (two profiles, two 25-epoch runs of about 5 minutes). Each
--smoke plan runs every piece once at tiny settings: mostly the start-up of
its fresh processes (about 4 CPU seconds each to import TensorFlow; 14 for
--plan=steps, 4 for --plan=runs).

Take the measurements with nothing else running: every number here is a
time, and the predictions are only as good as the profile and the link
measured on the same idle machine. Each row is appended at once to `--csv`
(default docs/results/cluster_plan.csv); rows already there are skipped, so
rerunning a plan continues it. Beside the CSV: the step profiles
(`<csv stem>_<plan>_profile_<model>_<optimizer>_t<threads>.csv`, the
`python -m keras_legw profile` format, reused when present) and the raw
all-reduce timings (`<csv stem>_allreduce.csv`, reused likewise); delete
them to measure again.

`--plan=steps`, for MNIST-LSTM and PTB-small (a row per model, strategy and
global batch; kind "steps"; target: predicted within 20% of measured):

1. Profile: `keras_legw.profile_step_times` (``model.train_on_batch``) at
   per-device batches, in a fresh process, on random data of the model's
   shape: MNIST through `models.mnist_lstm_model.profile_task` (Adam);
   PTB-small from `models.ptb_lstm.build_model` with the state inputs fed
   zeros (a stateful model is no obstacle to ``train_on_batch``: its state
   is an input, and a zero state costs the same compute as a carried one;
   the loss is taken on the logits only, SGD with global clipnorm 5 as the
   trainer clips). Twice: with TensorFlow's thread pools at this host's
   cores (the one-replica rows) and at cores / 2 (the two-replica rows, see
   below).
2. Link: the gradient's all-reduce timed on this host, a float32 tensor of
   1/8, 1 and 4 times the model's gradient bytes, reduced by
   ``ReplicaContext.all_reduce("SUM")`` inside ``strategy.run`` in a
   compiled loop (the optimizer's path in the trainer), under the trainer's
   two-logical-CPU MirroredStrategy (``ReductionToOneDevice``) and under
   MultiWorkerMirroredStrategy with two localhost workers (TF_CONFIG, free
   ports; gRPC collectives). The ring formula's ``t = P / W + 2 alpha``
   (n = 2) is fitted to the medians: bus bandwidth ``W`` and latency
   ``alpha`` (intercept clipped at 0; a time that does not grow with the
   size is a pure latency, bandwidth 1e6 GB/s). Both go into the rows.
3. Measured: the zoo trainer (``models.<model>.run``, a fresh model_dir),
   `--steps` steps at a fixed global batch, `--steps_per_loop` a compiled
   call; seconds per step = global batch / the results' examples_per_second,
   which leaves out the first call (tracing) at the batch. One replica
   (--strategy=default), two (--strategy=mirrored --num_cpu_devices=2) and
   two localhost workers (--strategy=multi_worker, two processes).
4. Predicted: ``StepTimeModel(profile, link).step_seconds(B, n)``.

What the model cannot capture on logical CPUs: the two "devices" of the
mirrored and multi-worker runs share two physical cores, one memory bus and
caches; a device's compute at n = 2 is not the one-device profile's at
B / 2 (which had both cores), it is closer to one core's. So the n = 2 rows
are predicted with the profile measured with TensorFlow's intra- and
inter-op pools at cores / n threads, the budget a replica gets (chosen;
`predicted_full_threads_seconds` keeps the prediction from the full-core
profile for comparison). Even so the two replicas contend for the memory
bus, and two worker processes each start pools of `cores` threads
(oversubscribed). Nor does it capture: the all-reduce is timed alone, not
while the other replica computes; the all-reduce of ``k`` gradient tensors
pays ``k`` latencies (MNIST-LSTM has 5 tensors, PTB-small 9), the
measurement one; PTB's embedding gradient is sparse (IndexedSlices, reduced
as a gather of the rows used), the profile counts it dense; PTB at two
replicas reduces its gradient twice a step (once to clip the global norm,
once in the optimizer: `reduces_per_step`), the model once; the trainer's
input pipeline and compiled loop against ``train_on_batch``'s per-call
dispatch; the compute line ``a + c b`` fitted over all profiled batches.

`--plan=runs` (kind "runs"; target within 25%): a whole run on one device,
uncontended: MNIST-LSTM at a fixed 2048 (25 epochs, Adam: `python -m
models.mnist_lstm --batch_size=2048`) and the frozen growing-batch ramp
(`models.mnist_lstm_growing.FROZEN_RAMP` through the trainer, batch 256,
LAMB: `bench.growing_trainer`'s lamb_sqrt_fast_ramp). Predicted:
`keras_legw.cluster.plan_schedules` (steps of each stage x
``step_seconds``) from a full-core profile with the run's optimizer;
measured: the results' train_seconds, which include each batch's first
compiled call (tracing; the ramp traces four times), not the evaluations.

`--plan=report` prints the CSV as a Markdown table with a verdict a row.
"""

import argparse
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench import sweep_runner
from keras_legw.cluster import (Interconnect, StepProfile, StepTimeModel,
                                plan_schedules, profile_step_times)
from models.mnist_lstm_growing import FROZEN_RAMP

CSV = "docs/results/cluster_plan.csv"
COLUMNS = ["kind", "model", "strategy", "devices", "schedule",
           "global_batch", "steps", "predicted_steps", "measured_seconds",
           "predicted_seconds", "ratio", "target", "within_target",
           "compute_seconds", "allreduce_seconds", "reduces_per_step",
           "predicted_full_threads_seconds", "profile_threads",
           "profile_batches", "intercept_seconds", "seconds_per_example",
           "extrapolated", "param_bytes", "bandwidth_gb_per_s", "latency_us",
           "run_wall_seconds"]
TARGETS = {"steps": 0.20, "runs": 0.25}
# The trainer's arguments of each strategy, and its devices.
STRATEGIES = {"default": ({}, 1),
              "mirrored": (dict(strategy="mirrored", num_cpu_devices=2), 2),
              "multi_worker": (dict(strategy="multi_worker"), 2)}
SIZE_FACTORS = (0.125, 1.0, 4.0)  # all-reduce sizes, x the gradient's bytes
# The real measurements. models: global batches of the trainer runs, the
# per-device batches profiled, the trainer's own extra arguments, the
# strategies. PTB's multi-worker rows were measured after the others: the
# zoo trainer failed for a stateful model under MultiWorkerMirroredStrategy
# until `Task.zero_state` was fixed.
REAL = dict(
    models={"mnist_lstm": dict(batches=(256, 1024, 4096),
                               profile=(128, 256, 512, 1024, 2048, 4096),
                               run={}, strategies=tuple(STRATEGIES)),
            "ptb_lstm": dict(batches=(20, 80, 320),
                             profile=(10, 20, 40, 80, 160, 320),
                             run=dict(num_test_tokens=2000),
                             strategies=tuple(STRATEGIES))},
    max_steps=80, steps_per_loop=10, repeats=5, steps_per_repeat=3,
    reduce_calls=20, reduce_repeats=5,
    runs={"fixed 2048": dict(batch_size=2048),
          f"ramp {FROZEN_RAMP}": dict(batch_size=256, optimizer="lamb",
                                      batch_schedule=FROZEN_RAMP)},
    run_profile=(256, 1024, 2048, 4096, 8192))
# --smoke: every piece once, in seconds (the numbers mean nothing).
SMOKE = dict(
    models={"mnist_lstm": dict(batches=(64,), profile=(16, 128),
                               run=dict(num_train_examples=512),
                               strategies=tuple(STRATEGIES)),
            "ptb_lstm": dict(batches=(8,), profile=(2, 32),
                             run=dict(num_train_tokens=4000,
                                      num_test_tokens=2000),
                             strategies=("default", "mirrored"))},
    max_steps=4, steps_per_loop=2, repeats=1, steps_per_repeat=1,
    reduce_calls=2, reduce_repeats=2,
    runs={"fixed 128": dict(batch_size=128, epochs=1,
                            num_train_examples=512),
          "ramp 0:64,1:128": dict(batch_size=64, optimizer="lamb",
                                  batch_schedule="0:64,1:128", epochs=2,
                                  num_train_examples=512)},
    run_profile=(16, 128))
MNIST_EXAMPLES, MNIST_EPOCHS = 60000, 25


# Children: each measurement in a fresh Python (a fresh TensorFlow).
def start_child(target, kwargs, env=None):
    """Starts ``module:function(**kwargs)`` in a fresh Python process, its
    output to temporary files; returns (process, stdout, stderr)."""
    module, function = target.split(":")
    code = ("import importlib, json, sys; r = getattr(importlib."
            "import_module(sys.argv[1]), sys.argv[2])(**json.loads("
            "sys.argv[3])); print('RESULTS' + json.dumps(r))")
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    process = subprocess.Popen(
        [sys.executable, "-c", code, module, function, json.dumps(kwargs)],
        stdout=out, stderr=err, text=True, env=env)
    return process, out, err


def child_result(child):
    """The JSON result of a finished child; ChildFailed with its stderr's
    tail if it failed."""
    process, out, err = child
    with out, err:
        out.seek(0)
        err.seek(0)
        if process.returncode:
            raise sweep_runner.ChildFailed(
                f"{process.args[3]}:{process.args[4]} failed with status "
                f"{process.returncode}:\n{err.read()[-3000:]}",
                process.returncode)
        line = next(l for l in out.read().splitlines()
                    if l.startswith("RESULTS"))
    return json.loads(line[len("RESULTS"):])


def call_in_child(target, kwargs):
    child = start_child(target, kwargs)
    child[0].wait()
    return child_result(child)


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def on_two_workers(target, kwargs):
    """``target(**kwargs)`` on two localhost workers (TF_CONFIG), at once;
    the chief's (worker 0's) result. When one fails the other is killed
    (it would wait for its peer in a collective forever)."""
    cluster = {"worker": [f"localhost:{_free_port()}" for _ in range(2)]}
    children = [start_child(target, kwargs, dict(os.environ, TF_CONFIG=(
        json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                 "index": i}}))))
                for i in range(2)]
    while any(c[0].poll() is None for c in children):
        if any(c[0].poll() for c in children):  # one failed
            for process, _, _ in children:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        time.sleep(0.2)
    # A failure raises first (not the peer killed for it).
    results = {}
    for i in sorted(range(2), key=lambda i: children[i][0].returncode <= 0):
        results[i] = child_result(children[i])
    return results[0]


# Profiles (run in children).
def mnist_task(rows, optimizer="adam", data_dir=None):
    """MNIST-LSTM's profile task, compiled with `optimizer` at its base
    rate (the zoo's `profile_task` compiles Adam)."""
    import keras

    from models.mnist_lstm_model import (BASE_LEARNING_RATES, make_optimizer,
                                         profile_task)
    del data_dir  # random images
    model, x, y = profile_task(rows)
    if optimizer != "adam":
        rate = BASE_LEARNING_RATES[optimizer]
        model.compile(make_optimizer(optimizer, rate),
                      keras.losses.SparseCategoricalCrossentropy(
                          from_logits=True))
    return model, x, y


def ptb_task(rows, optimizer="sgd", data_dir=None):
    """PTB-small's profile task (`models.ptb_lstm.profile_task`: SGD at
    rate 1 with the trainer's global clipnorm)."""
    from models import ptb_lstm
    assert optimizer == "sgd", optimizer
    return ptb_lstm.profile_task(rows, data_dir=data_dir)


TASKS = {"mnist_lstm": (mnist_task, "adam"), "ptb_lstm": (ptb_task, "sgd")}


def profile_child(model, batches, threads, optimizer, repeats,
                  steps_per_repeat, data_dir=None):
    """`profile_step_times` of `model` with TensorFlow's pools at
    `threads` threads; the StepProfile's fields."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    task = TASKS[model][0](max(batches), optimizer, data_dir)
    profile = profile_step_times(*task, batches, repeats, steps_per_repeat)
    return dataclasses.asdict(profile)


def side_path(args, name):
    """A file beside --csv: <csv stem>_<name>."""
    return f"{os.path.splitext(args.csv)[0]}_{name}"


def profile(args, model, batches, threads, optimizer=None):
    """The model's StepProfile at `threads` threads: read from beside the
    CSV, else measured in a child and saved there."""
    optimizer = optimizer or TASKS[model][1]
    path = side_path(args, f"{args.plan}_profile_{model}_{optimizer}_t"
                           f"{threads}.csv")
    if os.path.exists(path):
        return StepProfile.read_csv(path)
    fields = call_in_child("bench.cluster_plan:profile_child", dict(
        model=model, batches=list(batches), threads=threads,
        optimizer=optimizer, repeats=args.settings["repeats"],
        steps_per_repeat=args.settings["steps_per_repeat"],
        data_dir=args.data_dir))
    result = StepProfile(**fields)
    result.to_csv(path)
    print(f"{model} profile at {threads} threads: " + ", ".join(
        f"{b}: {s * 1e3:.3g} ms" for b, s in zip(result.batch_sizes,
                                                 result.seconds)), flush=True)
    return result


# The link (run in children).
def allreduce_child(strategy, num_cpu_devices, sizes, calls, repeats):
    """Median seconds of one all-reduce of a float32 tensor of each of
    `sizes` bytes under the trainer's strategy `strategy`."""
    from models.common import distribute

    tf_strategy = distribute.make_strategy(strategy, None, num_cpu_devices)
    return [_time_allreduce(tf_strategy, size, calls, repeats)
            for size in sizes]


def _time_allreduce(strategy, size, calls, repeats):
    """`calls` all-reduces in one compiled loop (as the trainer's loop runs
    its steps), each fed the last's result; median over `repeats` of the
    seconds per all-reduce. The first call traces, untimed."""
    import tensorflow as tf

    values = strategy.experimental_distribute_values_from_function(
        lambda context: tf.zeros([max(1, size // 4)]))

    def reduce(tensor):  # a copy on the replica's device (a gradient's)
        return tf.distribute.get_replica_context().all_reduce(
            "SUM", tf.identity(tensor))

    @tf.function
    def loop(values, count):
        # The first outside the loop: under MultiWorkerMirroredStrategy a
        # reduced value is a tensor, not the PerReplica given.
        values = strategy.run(reduce, args=(values,))
        for _ in tf.range(count - 1):
            values = strategy.run(reduce, args=(values,))
        return values

    def seconds(count):
        start = time.perf_counter()
        out = loop(values, tf.constant(count))
        strategy.experimental_local_results(out)[0][:1].numpy()
        return (time.perf_counter() - start) / count

    seconds(1)
    return float(np.median([seconds(calls) for _ in range(repeats)]))


def allreduce_timings(args, model, strategy, param_bytes):
    """[(bytes, seconds)] of the all-reduce under `strategy`: read from
    beside the CSV, else measured in children and appended there."""
    path = side_path(args, "allreduce.csv")
    rows = [(int(r["bytes"]), float(r["seconds"]))
            for r in sweep_runner.read_rows(path)
            if (r["model"], r["strategy"]) == (model, strategy)]
    if rows:
        return rows
    sizes = [int(param_bytes * f) // 4 * 4 for f in SIZE_FACTORS]
    settings = args.settings
    kwargs = dict(strategy=strategy, num_cpu_devices=STRATEGIES[strategy][
        0].get("num_cpu_devices", 1), sizes=sizes,
        calls=settings["reduce_calls"], repeats=settings["reduce_repeats"])
    target = "bench.cluster_plan:allreduce_child"
    seconds = (on_two_workers(target, kwargs) if strategy == "multi_worker"
               else call_in_child(target, kwargs))
    for size, value in zip(sizes, seconds):
        sweep_runner.append_row(path, ["model", "strategy", "bytes",
                                       "seconds"], dict(
            model=model, strategy=strategy, bytes=size, seconds=repr(value)))
    return list(zip(sizes, seconds))


def fit_interconnect(timings, devices):
    """The Interconnect whose ring all-reduce ``2 (n-1)/n P / W + 2 (n-1)
    alpha`` best fits `timings` [(bytes, seconds)] (least squares, alpha
    >= 0; a time that does not grow with the bytes: a pure latency)."""
    share = 2.0 * (devices - 1) / devices
    messages = 2.0 * (devices - 1)
    x = share * np.array([b for b, _ in timings], dtype=np.float64)
    t = np.array([s for _, s in timings], dtype=np.float64)
    (intercept, slope), *_ = np.linalg.lstsq(
        np.stack([np.ones_like(x), x], axis=1), t, rcond=None)
    if slope <= 0:
        return Interconnect(1e6, float(t.mean() / messages * 1e6))
    if intercept < 0:
        intercept, slope = 0.0, float(x @ t / (x @ x))
    return Interconnect(float(1.0 / slope / 1e9),
                        float(intercept / messages * 1e6))


# --plan=steps.
def thread_budget(devices):
    """Threads a replica gets when `devices` share this host's cores."""
    return max(1, len(os.sched_getaffinity(0)) // devices)


def step_models(args, model):
    """{strategy: (StepTimeModel, the full-core one)} of `model`: the
    profiles at each thread budget and the links measured here."""
    settings = args.settings["models"][model]
    full = profile(args, model, settings["profile"], thread_budget(1))
    shared = profile(args, model, settings["profile"], thread_budget(2))
    found = {"default": (StepTimeModel(full, Interconnect(1.0)),) * 2}
    for strategy in [s for s in settings["strategies"]
                     if STRATEGIES[s][1] > 1]:
        timings = allreduce_timings(args, model, strategy, full.param_bytes)
        link = fit_interconnect(timings, STRATEGIES[strategy][1])
        print(f"{model} {strategy} all-reduce: " + ", ".join(
            f"{b / 1e6:.3g} MB {s * 1e3:.3g} ms" for b, s in timings)
            + f" -> {link}", flush=True)
        found[strategy] = (StepTimeModel(shared, link),
                           StepTimeModel(full, link))
    return found


def train_in_child(model, kwargs, strategy):
    """The zoo trainer's results of `model` with `kwargs` under `strategy`,
    in a fresh model_dir (one process, or two workers)."""
    with tempfile.TemporaryDirectory() as model_dir:
        kwargs = dict(kwargs, model_dir=model_dir, verbose=0,
                      **STRATEGIES[strategy][0])
        if strategy == "multi_worker":
            return on_two_workers(f"models.{model}:run", kwargs)
        return sweep_runner.run_in_child(model, kwargs)


def measure_steps(args, model, strategy, batch):
    """The trainer's results at a fixed `batch`, `max_steps` steps."""
    settings = args.settings
    kwargs = dict(settings["models"][model]["run"], batch_size=batch,
                  max_steps=settings["max_steps"],
                  steps_per_loop=settings["steps_per_loop"],
                  data_dir=args.data_dir)
    return train_in_child(model, kwargs, strategy)


def model_fields(step_model, device_batch):
    """The columns of a StepTimeModel's inputs."""
    profile, link = step_model.profile, step_model.interconnect
    return dict(
        profile_batches=" ".join(
            map(str, profile.batch_sizes)),
        intercept_seconds=f"{step_model.intercept_seconds:.6g}",
        seconds_per_example=f"{step_model.seconds_per_example:.6g}",
        extrapolated=step_model.extrapolated(device_batch),
        param_bytes=profile.param_bytes,
        bandwidth_gb_per_s=f"{link.bandwidth_gb_per_s:.6g}",
        latency_us=f"{link.latency_us:.6g}")


def verdict_fields(kind, measured, predicted):
    ratio = predicted / measured
    return dict(kind=kind, measured_seconds=f"{measured:.6g}",
                predicted_seconds=f"{predicted:.6g}", ratio=f"{ratio:.4g}",
                target=TARGETS[kind],
                within_target=abs(ratio - 1) <= TARGETS[kind])


def steps_row(model, strategy, batch, results, models):
    """A steps row: measured and predicted seconds a step, the inputs."""
    step_model, full = models[strategy]
    devices = STRATEGIES[strategy][1]
    share = batch / devices
    row = verdict_fields("steps", batch / results["examples_per_second"],
                         step_model.step_seconds(batch, devices))
    row.update(model_fields(step_model, share))
    row.update(
        model=model, strategy=strategy, devices=devices,
        schedule=f"fixed {batch}", global_batch=batch, steps=results["steps"],
        compute_seconds=f"{step_model.compute_seconds(share):.6g}",
        allreduce_seconds=f"{step_model.allreduce_seconds(devices):.6g}",
        # PTB clips the global gradient: reduced by the trainer, then again
        # by the optimizer.
        reduces_per_step=0 if devices == 1 else (
            2 if model == "ptb_lstm" else 1),
        predicted_full_threads_seconds=(
            f"{full.step_seconds(batch, devices):.6g}"),
        profile_threads=thread_budget(devices),
        run_wall_seconds=f"{results['wall_seconds']:.1f}")
    if devices == 1:
        row.update(bandwidth_gb_per_s="", latency_us="")
    return row


def done_keys(args):
    return {(r["kind"], r["model"], r["strategy"], r["schedule"])
            for r in sweep_runner.read_rows(args.csv)}


def report_row(row):
    print(f"{row['kind']} {row['model']} {row['strategy']} "
          f"{row['schedule']}: measured {float(row['measured_seconds']):.4g}"
          f" s, predicted {float(row['predicted_seconds']):.4g} s (x"
          f"{row['ratio']})", flush=True)


def steps_plan(args):
    """Profiles, links, trainer runs and a row per (model, strategy,
    global batch) not yet in the CSV."""
    done = done_keys(args)
    for model in args.models:
        settings = args.settings["models"][model]
        todo = [(strategy, batch) for strategy in settings["strategies"]
                for batch in settings["batches"]
                if ("steps", model, strategy, f"fixed {batch}") not in done]
        if not todo:
            continue
        models = step_models(args, model)
        for strategy, batch in todo:
            results = measure_steps(args, model, strategy, batch)
            row = steps_row(model, strategy, batch, results, models)
            sweep_runner.append_row(args.csv, COLUMNS, row)
            report_row(row)


# --plan=runs.
def run_prediction(args, spec):
    """plan_schedules' row of a whole MNIST run `spec` on one device, from
    a full-core profile with the run's optimizer; and its StepTimeModel."""
    optimizer = spec.get("optimizer", "adam")
    step_model = StepTimeModel(profile(
        args, "mnist_lstm", args.settings["run_profile"], thread_budget(1),
        optimizer), Interconnect(1.0))
    stages = spec.get("batch_schedule") or spec["batch_size"]
    (row,) = plan_schedules(step_model, {"run": stages}, [1], spec.get(
        "num_train_examples", MNIST_EXAMPLES), spec.get("epochs",
                                                        MNIST_EPOCHS))
    return row, step_model


def runs_row(name, spec, results, plan_row, step_model):
    batch = spec["batch_size"]
    row = verdict_fields("runs", results["train_seconds"],
                         plan_row.wall_seconds)
    row.update(model_fields(step_model, batch))
    row.update(
        model="mnist_lstm", strategy="default", devices=1, schedule=name,
        global_batch=batch, steps=results["steps"],
        predicted_steps=plan_row.steps, extrapolated=plan_row.extrapolated,
        profile_threads=thread_budget(1), bandwidth_gb_per_s="",
        latency_us="", reduces_per_step=0,
        run_wall_seconds=f"{results['wall_seconds']:.1f}")
    return row


def runs_plan(args):
    """Each whole run not yet in the CSV: predicted, trained, a row."""
    done = done_keys(args)
    for name, spec in args.settings["runs"].items():
        if ("runs", "mnist_lstm", "default", name) in done:
            continue
        plan_row, step_model = run_prediction(args, spec)
        results = train_in_child("mnist_lstm", dict(
            spec, data_dir=args.data_dir), "default")
        row = runs_row(name, spec, results, plan_row, step_model)
        sweep_runner.append_row(args.csv, COLUMNS, row)
        report_row(row)


# --plan=report.
def verdict(row):
    ratio, target = float(row["ratio"]), float(row["target"])
    off = f"{(ratio - 1) * 100:+.0f}%"
    return (f"within {target:.0%} ({off})" if abs(ratio - 1) <= target
            else f"**off by {off}**")


def report(args):
    """The CSV as a Markdown table, a verdict per row, and the count."""
    rows = sweep_runner.read_rows(args.csv)
    print("| kind | model | strategy | devices | schedule | steps | "
          "measured s | predicted s | predicted / measured | verdict |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['kind']} | {row['model']} | {row['strategy']} | "
              f"{row['devices']} | {row['schedule']} | {row['steps']} | "
              f"{float(row['measured_seconds']):.4g} | "
              f"{float(row['predicted_seconds']):.4g} | {row['ratio']} | "
              f"{verdict(row)} |")
    for kind in TARGETS:
        some = [r for r in rows if r["kind"] == kind]
        if some:
            hits = sum(abs(float(r["ratio"]) - 1) <= float(r["target"])
                       for r in some)
            print(f"\n{kind}: {hits} of {len(some)} rows within "
                  f"{TARGETS[kind]:.0%}")


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan", choices=("steps", "runs", "report"),
                        default="steps")
    parser.add_argument("--csv", default=CSV)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--models", default="mnist_lstm,ptb_lstm",
                        help="--plan=steps: comma-separated models")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny settings: each plan in seconds (the "
                             "numbers mean nothing)")
    parser.add_argument("--steps", type=int, default=None,
                        help="trainer steps a steps row (default 80)")
    parser.add_argument("--steps_per_loop", type=int, default=None,
                        help="steps a compiled call (default 10)")
    args = parser.parse_args()
    args.models = args.models.split(",")
    unknown = sorted(set(args.models) - set(TASKS))
    if unknown:
        parser.error(f"--models: {unknown} are not among {sorted(TASKS)}")
    args.settings = dict(SMOKE if args.smoke else REAL)
    for name, key in (("steps", "max_steps"),
                      ("steps_per_loop", "steps_per_loop")):
        if getattr(args, name) is not None:
            args.settings[key] = getattr(args, name)
    if args.settings["max_steps"] <= args.settings["steps_per_loop"]:
        parser.error("--steps must be more than --steps_per_loop: the "
                     "trainer's throughput leaves out the first call")
    return args


def main():
    args = parse_arguments()
    {"steps": steps_plan, "runs": runs_plan, "report": report}[args.plan](args)


if __name__ == "__main__":
    main()
