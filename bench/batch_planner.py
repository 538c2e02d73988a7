"""Validates the batch planner (`keras_legw.planner.StepsModel`) against the
measured sweeps: predicted against measured steps to a target.

    python -m bench.batch_planner     # seconds: it reads the CSVs only

Steps to a target are the step of the first evaluation at or past it, in
the curves of the LEGW budget sweeps at their full budgets (one evaluation
per epoch, so a step count is exact to within one epoch):
    MNIST-LSTM test accuracy 98% and 98.5% (docs/results/mnist_lstm_curves.csv),
    PTB-small test perplexity 150 and GNMT-small test perplexity 50
    (docs/results/sequence_curves.csv).
For each model and target, three predictions of every batch that reaches it:
    two_point      fitted to the smallest and the largest batch that reach it;
    leave_one_out  fitted to all the other batches (with three or more);
    noise_scale    from B_noise measured at the base batch alone (the median
                   of the per-epoch values in docs/results/<model>_noise_
                   scale.csv up to the base run's target step; MNIST-LSTM
                   and PTB, which have one) and the base run's steps.
Rows go to docs/results/batch_planner.csv.
"""

import csv
import statistics

from keras_legw.planner import StepsModel, relative_error

OUT = "docs/results/batch_planner.csv"
COLUMNS = ["model", "target", "method", "fitted_on", "batch_size",
           "measured_steps", "predicted_steps", "relative_error",
           "noise_scale", "min_steps"]
MNIST = ("docs/results/mnist_lstm_curves.csv",
         {128: "legw_b128_s0_e25", 512: "legw_b512_s0_e25",
          2048: "legw_b2048_s0_e25", 8192: "legw_b8192_s0_e25"},
         "test_accuracy", 1)
SEQUENCE = "docs/results/sequence_curves.csv"
PTB = (SEQUENCE, {b: f"ptb_small_legw_b{b}_s0_e13" for b in (20, 80, 320,
                                                              1280)},
       "test_perplexity", -1)
GNMT = (SEQUENCE, {b: f"gnmt_small_legw_b{b}_lr0.01_d0.1_s0_e13"
                   for b in (128, 512, 1024)}, "test_perplexity", -1)
CASES = [("mnist_lstm", MNIST, 0.98), ("mnist_lstm", MNIST, 0.985),
         ("ptb_lstm", PTB, 150.0), ("gnmt", GNMT, 50.0)]
NOISE_CSVS = {"mnist_lstm": "docs/results/mnist_lstm_noise_scale.csv",
              "ptb_lstm": "docs/results/ptb_lstm_noise_scale.csv"}


def steps_to(path, runs, column, sign, target):
    """{batch: steps of the first evaluation at or past `target`} (sign 1:
    at or above, -1: at or below) for the runs that reach it."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    found = {}
    for batch, run in runs.items():
        for row in sorted((r for r in rows if r["run"] == run),
                          key=lambda r: int(r["step"])):
            if sign * float(row[column]) >= sign * target:
                found[batch] = int(row["step"])
                break
    return found


def base_noise_scale(model_name, target_step):
    """The median per-epoch B_noise at the base batch up to `target_step`."""
    with open(NOISE_CSVS[model_name]) as f:
        values = [float(r["noise_scale"]) for r in csv.DictReader(f)
                  if int(r["step"]) <= target_step
                  and r["noise_scale"] != "nan"]
    return statistics.median(values)


def predictions(model_name, measured):
    """(method, fitted_on, model) for the case's measured {batch: steps}."""
    batches = sorted(measured)
    out = []
    if len(batches) >= 2:
        pair = [batches[0], batches[-1]]
        out.append(("two_point", pair, StepsModel.fit(
            pair, [measured[b] for b in pair])))
    if len(batches) >= 3:
        for held in batches:
            rest = [b for b in batches if b != held]
            out.append((f"leave_one_out:{held}", rest, StepsModel.fit(
                rest, [measured[b] for b in rest])))
    if model_name in NOISE_CSVS:
        base = batches[0]
        out.append(("noise_scale", [base], StepsModel.from_noise_scale(
            base_noise_scale(model_name, measured[base]), base,
            measured[base])))
    return out


def rows_of(model_name, target, measured):
    rows = []
    for method, fitted_on, model in predictions(model_name, measured):
        held = (int(method.split(":")[1]) if method.startswith("leave")
                else None)
        for batch in sorted(measured):
            if held is not None and batch != held:
                continue
            predicted = float(model.steps(batch))
            rows.append(dict(
                model=model_name, target=target,
                method=method.split(":")[0],
                fitted_on=" ".join(map(str, fitted_on)), batch_size=batch,
                measured_steps=measured[batch],
                predicted_steps=f"{predicted:.1f}",
                relative_error=f"{relative_error(predicted, measured[batch]):+.3f}",
                noise_scale=f"{model.noise_scale:.4g}",
                min_steps=f"{model.min_steps:.4g}"))
    return rows


def main():
    rows = []
    for model_name, (path, runs, column, sign), target in CASES:
        measured = steps_to(path, runs, column, sign, target)
        rows += rows_of(model_name, target, measured)
    with open(OUT, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        print(", ".join(str(row[c]) for c in COLUMNS))


if __name__ == "__main__":
    main()
