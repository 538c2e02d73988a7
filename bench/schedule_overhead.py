"""Training-step time of a small LSTM with LEGW against a constant rate.

    python -m bench.schedule_overhead [--steps 200] [--repeats 5]

The MNIST-LSTM architecture (one LSTM layer of 128 units over 28 x 28) on one
random batch, SGD with momentum: the schedule's cost, not MNIST training.
Writes `--csv` (docs/results/schedule_overhead.csv).

Both optimizers train the same model on the same random batch in the same
process, interleaved, with compiled `train_on_batch` steps; prints the median
step time of each and their ratio (LEGW / constant). A ratio of 1.00 means the
schedule costs nothing measurable.
"""

import argparse
import csv
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_legw  # noqa: E402


def _model(learning_rate):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.LSTM(128),
                              keras.layers.Dense(10)])
    model.compile(keras.optimizers.SGD(learning_rate, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _time_steps(model, x, y, steps):
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / steps


def run(steps=200, repeats=5, batch_size=128):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch_size, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, size=batch_size)
    schedule = keras_legw.LEGW(0.1, 128, batch_size, 0.2, 60000, 25)
    models = {"constant": _model(0.1), "legw": _model(schedule)}
    for model in models.values():
        _time_steps(model, x, y, 10)  # trace and warm up
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            times[name].append(_time_steps(model, x, y, steps))
    medians = {name: statistics.median(t) for name, t in times.items()}
    return medians, medians["legw"] / medians["constant"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--csv", default="docs/results/schedule_overhead.csv")
    args = parser.parse_args()
    medians, ratio = run(args.steps, args.repeats, args.batch_size)
    with open(args.csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["batch_size", "steps", "repeats",
                         "legw_ms_per_step", "constant_ms_per_step",
                         "ratio_legw_to_constant"])
        writer.writerow([args.batch_size, args.steps, args.repeats,
                         f"{medians['legw'] * 1e3:.2f}",
                         f"{medians['constant'] * 1e3:.2f}", f"{ratio:.3f}"])
    for name, seconds in medians.items():
        print(f"{name:>9}: {seconds * 1e3:.3f} ms/step (median of "
              f"{args.repeats} x {args.steps} steps)")
    print(f"ratio legw/constant: {ratio:.3f}; written to {args.csv}")


if __name__ == "__main__":
    main()
