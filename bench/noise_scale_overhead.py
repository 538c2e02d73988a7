"""Cost of `--noise_scale` per training step, as a ratio to a step without it.

    python -m bench.noise_scale_overhead [--repeats 2]

MNIST-LSTM (128 units, real data from $LEGW_DATA_DIR) at global batch 256,
on one replica (the batch split into two halves inside the step) and on two
replicas (MirroredStrategy over two logical CPUs: per-replica against
all-reduced gradients). Runs with and without the noise scale alternate in one
process; each is timed over epochs 2-4 of 6400 examples (the first epoch,
with tracing, is left out). Prints the median seconds per step and the ratio,
and writes them to `--csv` (docs/results/noise_scale_overhead.csv).
"""

import argparse
import csv
import os
import statistics
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from models import mnist_lstm  # noqa: E402


def seconds_per_step(strategy, noise_scale):
    with tempfile.TemporaryDirectory() as model_dir:
        results = mnist_lstm.run(
            batch_size=256, epochs=4, num_train_examples=6400,
            strategy=strategy, num_cpu_devices=2, noise_scale=noise_scale,
            model_dir=model_dir, steps_per_loop=25, verbose=0)
    first, last = results["history"][0], results["history"][-1]
    return ((last["train_seconds"] - first["train_seconds"])
            / (last["step"] - first["step"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--csv",
                        default="docs/results/noise_scale_overhead.csv")
    args = parser.parse_args()
    rows = []
    for strategy, label in (("default", "1 replica, two half batches"),
                            ("mirrored", "2 replicas (logical CPUs)")):
        times = {False: [], True: []}
        for _ in range(args.repeats):
            for noise_scale in (False, True):
                times[noise_scale].append(seconds_per_step(strategy, noise_scale))
        off, on = (statistics.median(times[k]) for k in (False, True))
        rows.append([label, args.repeats, f"{off * 1e3:.1f}",
                     f"{on * 1e3:.1f}", f"{on / off:.3f}"])
        print(f"{label}: {off * 1e3:.1f} ms/step without, {on * 1e3:.1f} "
              f"ms/step with --noise_scale, ratio {on / off:.3f}", flush=True)
    _write_trainer_rows(args.csv, rows)


def _write_trainer_rows(path, rows):
    """Replaces the trainer's rows of `path` (the fit path's,
    bench.fit_noise_overhead, stay)."""
    kept = []
    if os.path.exists(path):
        with open(path, newline="") as f:
            kept = [r for r in list(csv.reader(f))[1:] if r[0] != "trainer"]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "backend", "case", "repeats",
                         "ms_per_step_without", "ms_per_step_with", "ratio"])
        writer.writerows([["trainer", "tensorflow", *r] for r in rows] + kept)


if __name__ == "__main__":
    main()
