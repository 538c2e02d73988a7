"""The gradient noise scale B_simple over a training run, per epoch.

    python -m bench.noise_scale_curve --model=mnist_lstm   # batch 128, 25 epochs
    python -m bench.noise_scale_curve --model=ptb_lstm --epochs=2   # batch 20

Trains the model with its frozen base hyperparameters and `--noise_scale`,
and writes, per epoch, B_simple (in examples: images, or sequences of 20
tokens) and the test metric to docs/results/<model>_noise_scale.csv.
MNIST-LSTM runs on one replica (each batch split into two halves); the PTB
model carries its LSTM state from batch to batch, so it runs on two
replicas (two logical CPUs, MirroredStrategy): the small batch is a
replica's half, the big one the global batch.
"""

import argparse
import csv
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from models import mnist_lstm, ptb_lstm  # noqa: E402

SETUPS = {
    # model: (run, defaults, test metric)
    "mnist_lstm": (mnist_lstm.run, dict(batch_size=128, epochs=25),
                   "test_accuracy"),
    "ptb_lstm": (ptb_lstm.run, dict(batch_size=20, epochs=3,
                                    strategy="mirrored", num_cpu_devices=2),
                 "test_perplexity"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=list(SETUPS), default="mnist_lstm")
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--model_dir", default="runs/noise_scale")
    parser.add_argument("--csv", default=None)
    args = parser.parse_args()
    run, kwargs, metric = SETUPS[args.model]
    kwargs = dict(kwargs)
    for name in ("batch_size", "epochs"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    csv_path = args.csv or f"docs/results/{args.model}_noise_scale.csv"
    model_dir = os.path.join(args.model_dir, args.model,
                             f"b{kwargs['batch_size']}")
    results = run(noise_scale=True, verbose=0, model_dir=model_dir, **kwargs)
    os.makedirs(os.path.dirname(csv_path), exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["batch_size", "epoch", "step", "noise_scale", metric])
        for entry in results["history"]:
            writer.writerow([kwargs["batch_size"], round(entry["epoch"], 3),
                             entry["step"],
                             round(entry["metrics"]["noise_scale"], 1),
                             round(entry["metrics"][metric], 4)])
    print(f"noise scale at the end: {results['noise_scale']:.1f}; "
          f"written to {csv_path}")


if __name__ == "__main__":
    main()
