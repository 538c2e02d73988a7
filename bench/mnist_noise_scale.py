"""The gradient noise scale of MNIST-LSTM over a training run.

    python -m bench.mnist_noise_scale [--batch_size=128] [--epochs=25]

Trains `models.mnist_lstm` with the frozen base hyperparameters and
`--noise_scale` (one replica: the batch split into two halves in each step),
and writes, per epoch, the simple noise scale B_simple and the test accuracy
to docs/results/mnist_lstm_noise_scale.csv.
"""

import argparse
import csv
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from models import mnist_lstm  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--epochs", type=float, default=25)
    parser.add_argument("--model_dir", default="runs/noise_scale")
    parser.add_argument("--csv", default="docs/results/mnist_lstm_noise_scale.csv")
    args = parser.parse_args()
    results = mnist_lstm.run(batch_size=args.batch_size, epochs=args.epochs,
                             noise_scale=True, verbose=0,
                             model_dir=os.path.join(
                                 args.model_dir, f"b{args.batch_size}"))
    os.makedirs(os.path.dirname(args.csv), exist_ok=True)
    with open(args.csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["batch_size", "epoch", "step", "noise_scale",
                         "test_accuracy"])
        for entry in results["history"]:
            writer.writerow([args.batch_size, round(entry["epoch"], 3),
                             entry["step"],
                             round(entry["metrics"]["noise_scale"], 1),
                             entry["metrics"]["test_accuracy"]])
    print(f"noise scale at the end: {results['noise_scale']:.1f}; "
          f"written to {args.csv}")


if __name__ == "__main__":
    main()
