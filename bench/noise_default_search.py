"""The search for the adaptive batch's default (issue 38's first part):
MNIST-LSTM through `model.fit` (LAMB, `noise` from 128 up to 8192, 25
epochs, seed 0 only) at one configuration of `NoiseBatchSchedule`'s rule.

    python -m bench.noise_default_search --noise_scale_multiplier=4
    python -m bench.noise_default_search --noise_scale_multiplier=2 \\
        --std_errors=1

Appends one row to `docs/results/noise_default_search.csv`: the rule's
parameters, test accuracy, optimizer steps, examples and the batch of each
epoch. The rule's defaults (multiplier 1, window 3, 2 standard errors, one
doubling a decision) are the row of `bench.noise_decisions --path=fit`.
"""

import argparse
import csv
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CSV = "docs/results/noise_default_search.csv"
COLUMNS = ["model", "path", "seed", "noise_scale_multiplier", "window",
           "std_errors", "max_doublings", "test_accuracy", "steps",
           "examples", "batches"]


def main():
    from models import mnist_lstm_growing
    from models.common import flags as common_flags
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in common_flags.NOISE_OPTIONS:
        parser.add_argument(f"--{name}", type=float if name in (
            "noise_scale_multiplier", "std_errors") else int,
            default=common_flags._noise_default(name))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rule = {name: getattr(args, name)
            for name in common_flags.NOISE_OPTIONS}
    result = mnist_lstm_growing.run(batch_schedule="noise",
                                    max_batch_size=8192, seed=args.seed,
                                    **rule)
    row = dict(model="mnist_lstm", path="fit", seed=args.seed, **rule,
               test_accuracy=f"{result['test_accuracy']:.4f}",
               steps=result["steps"], examples=result["examples"],
               batches=" ".join(str(int(b)) for b in result["batch_size"]))
    new = not os.path.exists(CSV)
    with open(CSV, "a", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)
    print(row)


if __name__ == "__main__":
    main()
