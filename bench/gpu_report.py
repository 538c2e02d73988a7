"""GPU report: ResNet-50 images/s, MNIST-LSTM's large-batch wall-clock
speedup, and the zoo trainer against `model.fit`, on one accelerator.

    python -m bench.gpu_report                      # about 4-8 min on one GPU
    python -m bench.gpu_report --tiny --out=/tmp/r  # check on a CPU (minutes)

Writes `<out>/gpu_report.csv` (default `docs/results/`), one row per
measurement, each with the device, the backend and the TensorFlow and Keras
versions. Every measurement goes through `model.fit` on the backend that
`--backend` names (default: tensorflow when it is installed, else jax):
- ResNet-50 v1.5 (`models.resnet50_model`) on synthetic data made once on
  the device: images/s at batch 256 in bfloat16 with XLA
  (`jit_compile=True`), in float32 with XLA, and in float32 without it. Each timed window is
  `--window_steps` steps, closed by reading the loss back (so queued device
  work is inside it); the first window (tracing, compilation) is left out and
  the median of the next `--windows` is reported.
- The same bfloat16 model's forward pass alone, and (JAX) one jitted
  stateless train step outside `fit`, to tell `fit`'s own cost from the
  device's (the profile docs/results/gpu.md reads when ResNet-50 is below
  target).
- MNIST-LSTM with LEGW and Adam (`models.mnist_lstm_model`, the base
  hyperparameters of the zoo): wall seconds from the start of `fit` to 98%
  test accuracy and to the end of 25 epochs, at batch 128 and 8192; their
  ratio is the large-batch speedup on the same hardware (seeds 0 and 1).
- The zoo trainer against `model.fit`, examples/s for the same model, batch
  and precision (MNIST-LSTM at 8192, ResNet-50 at 256). The zoo
  trainer is `tf.distribute`, so this needs the TensorFlow backend; on
  another backend the rows say so and hold no number.

A measurement that fails is a row with its error, and the next one still
runs. Seconds include compilation where the row says "wall".
"""

import argparse
import csv
import importlib.util
import math
import os
import statistics
import sys
import tempfile
import time

# AutoWarmup's rate range for Adam, the same at every batch size.
AUTOWU_RATES = (1e-5, 0.1)
COLUMNS = ["measurement", "model", "batch_size", "dtype", "xla", "seed", "value",
           "unit", "detail", "backend", "device", "tensorflow", "keras"]


def choose_backend(requested):
    """The Keras backend to use; set before Keras is imported."""
    if requested != "auto":
        return requested
    if importlib.util.find_spec("tensorflow"):
        return "tensorflow"
    return "jax"


def device_name(backend):
    """The accelerator's name as the backend reports it (or the CPU)."""
    if backend == "jax":
        import jax
        device = jax.devices()[0]
        return f"{device.platform}:{device.device_kind}"
    if backend == "torch":
        import torch
        return (f"cuda:{torch.cuda.get_device_name(0)}"
                if torch.cuda.is_available() else "cpu")
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "cpu"
    return "gpu:" + tf.config.experimental.get_device_details(gpus[0]).get(
        "device_name", gpus[0].name)


def window_timer():
    """A Keras callback timing each epoch of `fit` as one window (`seconds`)
    and keeping (seconds since fit began, logs) at each epoch end
    (`epoch_ends`); reading the logs back waits for the device. Made by a
    function because Keras is imported only once the backend is chosen."""
    import keras

    class WindowTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.fit_start = time.perf_counter()
            self.seconds, self.epoch_ends = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            now = time.perf_counter()
            self.seconds.append(now - self.start)
            self.epoch_ends.append((now - self.fit_start, logs))

    return WindowTimer()


def seconds_to_98(timer):
    """Seconds from the start of fit to the first epoch end at or above 98%
    test accuracy (None if never)."""
    return next((t for t, logs in timer.epoch_ends
                 if logs["val_accuracy"] >= 0.98), None)


def repeat_batch(x, y):
    """An endless generator of the same (device-resident) batch."""
    while True:
        yield x, y


def synthetic_images(batch, image_size, seed=0):
    """A batch of random images and labels made on the device."""
    import keras
    x = keras.random.uniform((batch, image_size, image_size, 3), seed=seed)
    y = keras.random.randint((batch,), 0, 1000, seed=seed + 1)
    return x, y


def resnet_fit_rate(args, dtype, xla):
    """ResNet-50 images/s through `fit`: median over the timed windows."""
    import keras

    from keras_legw import LARS
    from models.resnet50_model import build_resnet50

    keras.mixed_precision.set_dtype_policy(
        "float32" if dtype == "float32" else f"mixed_{dtype}")
    try:
        model = build_resnet50(args.image_size)
        model.compile(
            optimizer=LARS(0.1, momentum=0.9, weight_decay=1e-4,
                           exclude_from_weight_decay=["batch_norm", "bias"],
                           exclude_from_layer_adaptation=["batch_norm", "bias"]),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=xla)
        x, y = synthetic_images(args.resnet_batch, args.image_size)
        timer = window_timer()
        steps = args.window_steps if xla else max(2, args.window_steps // 4)
        model.fit(repeat_batch(x, y), steps_per_epoch=steps,
                  epochs=args.windows + 1, callbacks=[timer], verbose=0)
        rate = args.resnet_batch * steps / statistics.median(timer.seconds[1:])
        return rate, model, (x, y)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def resnet_forward_rate(args, model, batch):
    """Images/s of the compiled forward pass alone (inference mode); each
    step hands its logits back to the host, which waits for the device."""
    x, _ = batch
    seconds = []
    for _ in range(args.windows + 1):
        start = time.perf_counter()
        for _ in range(args.window_steps):
            model.predict_on_batch(x)
        seconds.append(time.perf_counter() - start)
    return args.resnet_batch * args.window_steps / statistics.median(seconds[1:])


def jax_stateless_step_rate(args, model, batch):
    """Images/s of one jitted stateless train step (JAX), outside `fit`."""
    import jax
    import keras

    x, y = batch
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = model.optimizer

    def compute_loss(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable,
                                                     x, training=True)
        return loss_fn(y, logits), non_trainable

    grad_fn = jax.value_and_grad(compute_loss, has_aux=True)

    @jax.jit
    def step(trainable, non_trainable, opt_vars, x, y):
        (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
        trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads,
                                                        trainable)
        return loss, trainable, non_trainable, opt_vars

    state = ([v.value for v in model.trainable_variables],
             [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables])
    seconds = []
    for _ in range(args.windows + 1):
        start = time.perf_counter()
        for _ in range(args.window_steps):
            loss, *state = step(*state, x, y)
        float(loss)
        seconds.append(time.perf_counter() - start)
    return args.resnet_batch * args.window_steps / statistics.median(seconds[1:])


def load_mnist(args):
    """MNIST as float arrays in [0, 1], optionally the first examples only."""
    from models import mnist_lstm_input
    (x, y), (x_test, y_test) = mnist_lstm_input.load_mnist(args.data_dir)
    if args.tiny:
        x, y = x[:2048], y[:2048]
        x_test, y_test = x_test[:1000], y_test[:1000]
    return ((x.astype("float32") / 255.0, y.astype("int32")),
            (x_test.astype("float32") / 255.0, y_test.astype("int32")))


def mnist_batches(x, y, batch_size, seed):
    """Full batches from one permutation per epoch, back to back (batches
    straddle epochs), as the zoo trainer reads them."""
    import numpy as np
    rng = np.random.default_rng(seed)
    order = np.empty(0, np.int64)
    while True:
        while len(order) < batch_size:
            order = np.concatenate([order, rng.permutation(len(y))])
        index, order = order[:batch_size], order[batch_size:]
        yield x[index], y[index]


def mnist_fit(args, train, test, batch_size, seed, autowarmup=False):
    """Trains MNIST-LSTM with Adam through `fit`, driven by LEGW or (with
    `autowarmup`) by `keras_legw.AutoWarmup` over LEGW's number of steps;
    returns the timer (epoch ends with test accuracy), the steps, the final
    accuracy and the AutoWarmup callback (or None)."""
    import keras

    import keras_legw
    from models.mnist_lstm_model import (BASE, BASE_LEARNING_RATES,
                                         build_model, make_optimizer)

    keras.utils.set_random_seed(seed)
    num_examples = len(train[1])
    schedule = keras_legw.LEGW(
        base_learning_rate=BASE_LEARNING_RATES["adam"],
        base_batch_size=BASE["base_batch_size"], batch_size=batch_size,
        base_warmup_epochs=BASE["base_warmup_epochs"],
        num_examples=num_examples, total_epochs=args.mnist_epochs)
    callbacks, warmup = [], None
    if autowarmup:
        warmup = keras_legw.AutoWarmup(
            schedule.total_steps, min_learning_rate=AUTOWU_RATES[0],
            max_learning_rate=AUTOWU_RATES[1], seed=seed)
        callbacks = [warmup]
    model = build_model(args.units)
    model.compile(optimizer=make_optimizer(
                      "adam", AUTOWU_RATES[0] if autowarmup else schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True),
                  metrics=["accuracy"], jit_compile=True)
    # Evaluation windows of one data epoch (rounded up to whole steps); the
    # schedule ends at its own total_steps, the last window may run a few
    # steps past it at rate 0.
    per_window = keras_legw.whole_steps(1, num_examples, batch_size)
    windows = math.ceil(schedule.total_steps / per_window)
    timer = window_timer()
    model.fit(mnist_batches(*train, batch_size, seed=seed),
              steps_per_epoch=per_window, epochs=windows,
              validation_data=test, validation_batch_size=1000,
              callbacks=[*callbacks, timer], verbose=0)
    accuracy = timer.epoch_ends[-1][1]["val_accuracy"]
    return timer, per_window * windows, accuracy, warmup


def fit_examples_per_second(timer, batch_size, steps_per_window):
    return batch_size * steps_per_window / statistics.median(timer.seconds[1:])


def trainer_rate(model_name, args, batch_size):
    """Examples/s of the zoo trainer (TensorFlow only), first loop left out."""
    with tempfile.TemporaryDirectory() as model_dir:
        if model_name == "mnist_lstm":
            from models import mnist_lstm
            steps = args.window_steps
            results = mnist_lstm.run(
                batch_size=batch_size, epochs=args.mnist_epochs,
                max_steps=steps * (args.windows + 1), steps_per_loop=steps,
                units=args.units, jit_compile=True, data_dir=args.data_dir,
                model_dir=model_dir, verbose=0,
                num_train_examples=2048 if args.tiny else None)
            return results["examples_per_second"]
        from bench.resnet50_throughput import measure
        return measure(batch_size, "bfloat16", True, args.window_steps,
                       args.windows, args.image_size)


def mnist_fit_rate(args, train, batch_size):
    """MNIST-LSTM examples/s through `fit` over timed windows (no eval)."""
    import keras

    import keras_legw
    from models.mnist_lstm_model import BASE, build_model, make_optimizer

    schedule = keras_legw.LEGW(0.002, BASE["base_batch_size"], batch_size,
                               BASE["base_warmup_epochs"], len(train[1]),
                               args.mnist_epochs)
    model = build_model(args.units)
    model.compile(optimizer=make_optimizer("adam", schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True), jit_compile=True)
    timer = window_timer()
    model.fit(mnist_batches(*train, batch_size, seed=0),
              steps_per_epoch=args.window_steps, epochs=args.windows + 1,
              callbacks=[timer], verbose=0)
    return fit_examples_per_second(timer, batch_size, args.window_steps)


class Report:
    """Appends rows to the CSV as they come, so a killed run keeps them."""

    def __init__(self, path, common):
        self.path, self.common = path, common
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w", newline="") as f:
            csv.DictWriter(f, fieldnames=COLUMNS).writeheader()

    def add(self, **row):
        row = {**self.common, **row}
        if isinstance(row.get("value"), float):
            row["value"] = f"{row['value']:.5g}"
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=COLUMNS).writerow(row)
        print(", ".join(f"{k}={row.get(k, '')}" for k in COLUMNS[:9]),
              flush=True)

    def measure(self, function, **row):
        """Adds `function()`'s value as a row, or its error as the detail."""
        start = time.perf_counter()
        try:
            value = function()
        except Exception as error:  # the report goes on; the row says why
            message = f"{type(error).__name__}: {error}".splitlines()[0]
            self.add(**row, value="", detail=f"failed: {message[:300]}")
            return None
        row.setdefault("detail", "")
        row["detail"] = (row["detail"] + f" ({time.perf_counter() - start:.0f}"
                         " s with compilation)").strip()
        self.add(**row, value=value)
        return value


def resnet_section(args, report):
    """ResNet-50: fit in bfloat16+XLA and float32 without XLA, then the
    profile pieces of the bfloat16 model."""
    kept = {}

    def bf16():
        rate, kept["model"], kept["batch"] = resnet_fit_rate(args, "bfloat16",
                                                             True)
        return rate

    row = dict(model="resnet50", batch_size=args.resnet_batch)
    report.measure(bf16, measurement="fit images/s", dtype="bfloat16",
                   xla=True, unit="images/s",
                   detail=f"median of {args.windows} windows of "
                          f"{args.window_steps} steps", **row)
    report.measure(lambda: resnet_fit_rate(args, "float32", True)[0],
                   measurement="fit images/s", dtype="float32", xla=True,
                   unit="images/s",
                   detail=f"median of {args.windows} windows of "
                          f"{args.window_steps} steps", **row)
    report.measure(lambda: resnet_fit_rate(args, "float32", False)[0],
                   measurement="fit images/s", dtype="float32", xla=False,
                   unit="images/s",
                   detail=f"median of {args.windows} windows of "
                          f"{max(2, args.window_steps // 4)} steps", **row)
    if "model" not in kept:
        return
    report.measure(lambda: resnet_forward_rate(args, kept["model"],
                                               kept["batch"]),
                   measurement="forward images/s (profile)",
                   dtype="bfloat16", xla=True, unit="images/s",
                   detail="predict_on_batch, inference mode", **row)
    if args.backend == "jax":
        report.measure(lambda: jax_stateless_step_rate(args, kept["model"],
                                                       kept["batch"]),
                       measurement="jitted step images/s (profile)",
                       dtype="bfloat16", xla=True, unit="images/s",
                       detail="one jax.jit stateless train step, no fit",
                       **row)


def mnist_section(args, report):
    """MNIST-LSTM: seconds to 98% and to the end, at 128 and 8192, for each
    seed; the speedups pair the two batches of one seed."""
    train, test = load_mnist(args)
    for seed in args.mnist_seeds:
        walls = {}
        for batch in args.mnist_batches:
            def run(batch=batch):
                timer, steps, accuracy, _ = mnist_fit(args, train, test,
                                                      batch, seed)
                to_98 = seconds_to_98(timer)
                walls[batch] = (timer.epoch_ends[-1][0], to_98, steps,
                                accuracy)
                return timer.epoch_ends[-1][0]

            row = dict(model="mnist_lstm", batch_size=batch, dtype="float32",
                       xla=True, seed=seed)
            if report.measure(run, measurement="wall seconds, full budget",
                              unit="s", detail=f"{args.mnist_epochs:g} "
                              "epochs, LEGW + Adam, fit from its start",
                              **row) is None:
                continue
            _, to_98, steps, accuracy = walls[batch]
            report.add(measurement="test accuracy at the end", value=accuracy,
                       unit="fraction", detail=f"{steps} steps", **row)
            report.add(measurement="wall seconds to 98% test accuracy",
                       value="" if to_98 is None else to_98, unit="s",
                       detail="never reached" if to_98 is None else
                       "first epoch end at or above 0.98", **row)
        add_speedups(args, report, walls, seed)
    return train


def add_speedups(args, report, walls, seed):
    """Rows of wall seconds at the smallest batch over the largest."""
    small, large = min(args.mnist_batches), max(args.mnist_batches)
    if small not in walls or large not in walls:
        return
    for i, what in ((0, "full budget"), (1, "98% test accuracy")):
        a, b = walls[small][i], walls[large][i]
        if a and b:
            report.add(measurement=f"speedup {large} over {small}, {what}",
                       model="mnist_lstm", batch_size=large, dtype="float32",
                       xla=True, seed=seed, value=a / b, unit="ratio",
                       detail=f"wall seconds at {small} / at {large}")


def autowarmup_section(args, report):
    """MNIST-LSTM with AutoWarmup (Adam, the same min and max rate at every
    batch) at 128 and 8192, for each seed: accuracy, the switch and the
    wall seconds, beside the LEGW rows of `mnist_section`."""
    train, test = load_mnist(args)
    for seed in args.mnist_seeds:
        for batch in args.mnist_batches:
            row = dict(model="mnist_lstm", batch_size=batch, dtype="float32",
                       xla=True, seed=seed)
            result = {}

            def run(batch=batch, seed=seed):
                timer, steps, accuracy, warmup = mnist_fit(
                    args, train, test, batch, seed, autowarmup=True)
                to_98 = seconds_to_98(timer)
                result.update(accuracy=accuracy, steps=steps, to_98=to_98,
                              warmup=warmup)
                return accuracy

            detail = (f"AutoWarmup, Adam, rates {AUTOWU_RATES[0]:g} to "
                      f"{AUTOWU_RATES[1]:g}, {args.mnist_epochs:g} epochs")
            if report.measure(run, measurement="autowu test accuracy",
                              unit="fraction", detail=detail, **row) is None:
                continue
            warmup = result["warmup"]
            report.add(measurement="autowu switch step",
                       value=warmup.warmup_steps, unit="steps",
                       detail=f"of {warmup.controller.total_steps}; cap "
                              f"{warmup.controller.max_warmup_steps}", **row)
            report.add(measurement="autowu peak learning rate",
                       value=warmup.peak_learning_rate, unit="rate",
                       detail="LEGW's peak: 0.002 x sqrt(batch / 128)", **row)
            report.add(measurement="autowu wall seconds to 98%",
                       value="" if result["to_98"] is None else
                       result["to_98"], unit="s", detail="", **row)


def trainer_section(args, report, train):
    """The zoo trainer against fit (TensorFlow backend only)."""
    cases = [("mnist_lstm", max(args.mnist_batches), "float32"),
             ("resnet50", args.resnet_batch, "bfloat16")]
    for model_name, batch, dtype in cases:
        row = dict(model=model_name, batch_size=batch, dtype=dtype, xla=True)
        if args.backend != "tensorflow":
            report.add(measurement="trainer / fit examples/s", value="",
                       unit="ratio", detail="not measured: the zoo trainer "
                       "is tf.distribute and the backend is "
                       f"{args.backend} (TensorFlow is not installed here)",
                       **row)
            continue
        if model_name == "mnist_lstm":
            fit = report.measure(lambda: mnist_fit_rate(args, train, batch),
                                 measurement="fit examples/s",
                                 unit="examples/s", **row)
        else:
            fit = report.measure(lambda: resnet_fit_rate(args, dtype, True)[0],
                                 measurement="fit examples/s",
                                 unit="examples/s", **row)
        zoo = report.measure(lambda: trainer_rate(model_name, args, batch),
                             measurement="trainer examples/s",
                             unit="examples/s", **row)
        if fit and zoo:
            report.add(measurement="trainer / fit examples/s", value=zoo / fit,
                       unit="ratio", detail="same model, batch, precision",
                       **row)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="auto",
                        choices=["auto", "tensorflow", "jax", "torch"])
    parser.add_argument("--tiny", action="store_true",
                        help="small sizes, to check the script on a CPU")
    parser.add_argument("--out", default="docs/results")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--sections", default="resnet,mnist,trainer",
                        help="comma-separated: resnet, mnist, trainer, "
                             "autowu (not in the default)")
    parser.add_argument("--csv_name", default="gpu_report.csv")
    args = parser.parse_args(argv)
    sizes = dict(resnet_batch=256, image_size=224, window_steps=20, windows=3,
                 mnist_epochs=25.0, mnist_batches=(128, 8192), units=128,
                 mnist_seeds=(0, 1))
    if args.tiny:
        sizes = dict(resnet_batch=4, image_size=64, window_steps=4, windows=2,
                     mnist_epochs=2.0, mnist_batches=(128, 1024), units=16,
                 mnist_seeds=(0, 1))
    for key, value in sizes.items():
        setattr(args, key, value)
    args.backend = choose_backend(args.backend)
    return args


def main(argv=None):
    args = parse_args(argv)
    os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    if keras.backend.backend() != args.backend:
        sys.exit(f"error: Keras was already imported with the "
                 f"{keras.backend.backend()} backend; run this script in its "
                 "own process.")
    tf_version = "not installed"
    if importlib.util.find_spec("tensorflow"):
        import tensorflow as tf
        tf_version = tf.__version__
    backend_version = (tf_version if args.backend == "tensorflow" else
                       sys.modules[args.backend].__version__
                       if args.backend in sys.modules else "")
    report = Report(os.path.join(args.out, args.csv_name), dict(
        backend=f"{args.backend} {backend_version}".strip(),
        device=device_name(args.backend),
        tensorflow=tf_version, keras=keras.__version__))
    sections = args.sections.split(",")
    train = None
    if "resnet" in sections:
        resnet_section(args, report)
    if "mnist" in sections:
        train = mnist_section(args, report)
    if "autowu" in sections:
        autowarmup_section(args, report)
    if "trainer" in sections:
        trainer_section(args, report, train if train is not None
                        else load_mnist(args)[0])


if __name__ == "__main__":
    main()
