"""The adaptive batch's decisions through `model.fit` and through the zoo's
trainer: the same MNIST-LSTM run (LAMB, `noise` from 128 up to 8192, 25
epochs, the library's default rule) on each path, every epoch's batch and
noise scale (the epoch's, from the steps of its second half).

    python -m bench.noise_decisions --path=fit --seed=0
    python -m bench.noise_decisions --path=trainer --seed=0

Appends one row per epoch to `docs/results/noise_decisions.csv`
(model,path,seed,epoch,batch_size,noise_scale: the batch the epoch trained
at and the noise scale measured in it, which decides the next epoch's) and
one row per run to `docs/results/noise_decisions_runs.csv`.
"""

import argparse
import csv
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DECISIONS = "docs/results/noise_decisions.csv"
RUNS = "docs/results/noise_decisions_runs.csv"
MAX_BATCH = 8192


def run_fit(seed):
    from models import mnist_lstm_growing
    result = mnist_lstm_growing.run(batch_schedule="noise",
                                    max_batch_size=MAX_BATCH, seed=seed)
    return (result["batch_size"], result["noise_scale"],
            dict(test_accuracy=result["test_accuracy"], steps=result["steps"],
                 examples=result["examples"],
                 seconds=result["wall_seconds"]))


def run_trainer(seed):
    from models import mnist_lstm
    with tempfile.TemporaryDirectory() as model_dir:
        result = mnist_lstm.run(batch_size=128, batch_schedule="noise",
                                max_batch_size=MAX_BATCH, optimizer="lamb",
                                seed=seed, model_dir=model_dir, verbose=0)
    history = result["history"]
    return ([h["batch_size"] for h in history],
            [h["noise_scale"] for h in history],
            dict(test_accuracy=result["test_accuracy"], steps=result["steps"],
                 examples=result["examples"],
                 seconds=result["train_seconds"]))


def _append(path, header, rows):
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(header)
        writer.writerows(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--path", choices=("fit", "trainer"), required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    batches, noise, summary = {"fit": run_fit, "trainer": run_trainer}[
        args.path](args.seed)
    _append(DECISIONS, ["model", "path", "seed", "epoch", "batch_size",
                        "noise_scale"],
            [["mnist_lstm", args.path, args.seed, epoch, int(b),
              f"{float(s):.1f}"]
             for epoch, (b, s) in enumerate(zip(batches, noise))])
    _append(RUNS, ["model", "path", "seed", "test_accuracy", "steps",
                   "examples", "seconds"],
            [["mnist_lstm", args.path, args.seed,
              f"{summary['test_accuracy']:.4f}", summary["steps"],
              summary["examples"], f"{summary['seconds']:.0f}"]])
    print(args.path, summary, "batches", batches)


if __name__ == "__main__":
    main()
