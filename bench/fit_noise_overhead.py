"""Cost of measuring the noise scale in `model.fit`, as a ratio to plain fit
in the same process: the training steps' own measurement
(`keras_legw.noise_step`) on the second half of each epoch (what
`GrowingBatch` runs for an adaptive schedule: the first half runs Keras'
own step) and on every step, and the epoch-end measurement it replaced
(`measure_noise_scale`, 5 draws of 1024 against 128, extra forward and
backward passes; its cost per epoch is fixed, so on these short epochs of
6400 examples at 128 its ratio is about 9 times what a 60,000-example epoch
would see: docs/results/mnist-lstm.md gives both).

    python -m bench.fit_noise_overhead                # TensorFlow and JAX

MNIST-LSTM (128 units, LAMB, jit-compiled, real data from $LEGW_DATA_DIR)
at batch 128 (50 steps an epoch) and 8192 (4 steps an epoch); each backend
in its own process. After one untimed warm-up fit, the modes alternate
`--repeats` times, each repeat starting at the next mode (so no mode is
always first); each is timed over its epochs 2-3 (the first, with
tracing, is left out), the epoch-end measurement counted in its epoch. Appends rows to
`--csv` (docs/results/noise_scale_overhead.csv, path "fit").
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXAMPLES = {128: 6400, 8192: 32768}
MODES = ("plain", "late_half", "every_step", "epoch_end")
LABELS = {"late_half": "the steps' own halves, each epoch's second half "
                       "(GrowingBatch)",
          "every_step": "the steps' own halves, every step",
          "epoch_end": "epoch-end measure_noise_scale"}


class _EpochTimer:
    """Seconds of each epoch, with the epoch-end measurement inside; with
    `steps_per_epoch`, the measuring step on its second half only."""

    def __init__(self, measure=None, steps_per_epoch=None):
        import keras

        from keras_legw.noise_step import StepSwitch

        class Timer(keras.callbacks.Callback):
            def on_train_begin(cb, logs=None):
                cb.switch = (StepSwitch(cb.model) if steps_per_epoch
                             else None)

            def on_epoch_begin(cb, epoch, logs=None):
                cb.start = time.perf_counter()

            def on_train_batch_begin(cb, batch, logs=None):
                if cb.switch is not None:
                    cb.switch.measure(2 * (batch + 1) > steps_per_epoch)

            def on_epoch_end(cb, epoch, logs=None):
                if measure is not None:
                    measure(cb.model)
                self.seconds.append(time.perf_counter() - cb.start)

        self.seconds, self.callback = [], Timer()


def _seconds_per_step(batch, mode, x, y):
    import keras

    import keras_legw
    from keras_legw.noise_step import install_measuring_step
    from models.mnist_lstm_model import build_model
    keras.utils.set_random_seed(0)
    model = build_model(128)
    model.compile(keras.optimizers.Lamb(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True)
    measure = None
    if mode == "epoch_end":
        measure = lambda m: keras_legw.measure_noise_scale(  # noqa: E731
            m, x, y, 128, 1024, 5)
    timer = _EpochTimer(measure, len(x) // batch if mode == "late_half"
                        else None)
    if mode == "every_step":
        model.make_train_function()
        install_measuring_step(model)
    model.fit(x, y, batch_size=batch, epochs=3, shuffle=False, verbose=0,
              callbacks=[timer.callback])
    return sum(timer.seconds[1:]) / (2 * len(x) // batch)


def measure_backend(repeats):
    """{batch: {mode: median seconds per step}} on this process's backend."""
    from models import mnist_lstm_input
    (x, y), _ = mnist_lstm_input.load_mnist(None)
    out = {}
    for batch, n in EXAMPLES.items():
        xs, ys = x[:n].astype("float32") / 255.0, y[:n].astype("int32")
        times = {mode: [] for mode in MODES}
        _seconds_per_step(batch, "plain", xs, ys)  # warm-up, not timed
        for repeat in range(repeats):
            for mode in MODES[repeat % 4:] + MODES[:repeat % 4]:
                times[mode].append(_seconds_per_step(batch, mode, xs, ys))
        out[batch] = {mode: statistics.median(t) for mode, t in times.items()}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--csv",
                        default="docs/results/noise_scale_overhead.csv")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("OUT" + json.dumps(measure_backend(args.repeats)))
        return
    rows = []
    for backend in args.backends.split(","):
        result = subprocess.run(
            [sys.executable, "-m", "bench.fit_noise_overhead", "--one",
             f"--repeats={args.repeats}"], capture_output=True, text=True,
            env=dict(os.environ, KERAS_BACKEND=backend), check=True)
        line = [l for l in result.stdout.splitlines() if l.startswith("OUT")]
        for batch, modes in json.loads(line[-1][3:]).items():
            off = modes["plain"]
            for mode in MODES[1:]:
                label = f"batch {batch}, {LABELS[mode]}"
                rows.append(["fit", backend, label, args.repeats,
                             f"{off * 1e3:.1f}", f"{modes[mode] * 1e3:.1f}",
                             f"{modes[mode] / off:.3f}"])
                print(*rows[-1], flush=True)
    with open(args.csv, "a", newline="") as f:
        csv.writer(f).writerows(rows)


if __name__ == "__main__":
    main()
