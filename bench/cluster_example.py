"""The cluster planner's worked example: MNIST-LSTM on 1 to 512 NVIDIA H200s
and PTB-small on 1 to 512 devices as fast as this machine's CPU, with the
fixed base batch, the fixed 64x batch, the hand ramp and the adaptive
default side by side (`python -m keras_legw plan --cluster`).

    python -m bench.cluster_example      # after bench.cluster_plan --plan=steps

What is measured and what is assumed:

- MNIST-LSTM's profile on an H200 is derived from measured whole runs
  (docs/results/gpu_report.csv, `bench.gpu_report`: 25 epochs of
  `model.fit` on JAX, XLA, float32, seeds 0 and 1): seconds per step =
  the run's wall seconds / its steps, at batch 128 and at 8192 (their mean
  over the seeds). Those seconds include each epoch's evaluation, so the
  line is a little high at both ends. Written to
  docs/results/cluster_h200_mnist_lstm_profile.csv.
- PTB-small's profile is the one `bench.cluster_plan --plan=steps` measured
  on this CPU with both threads (its file beside cluster_plan.csv).
- The gradient bytes are the models' trainable weights, as the CPU
  profiles of `bench.cluster_plan` measured them.
- The links are assumed: `keras_legw.cluster.INTERCONNECTS` (NVLink 4
  within 8 GPUs, InfiniBand NDR across nodes), one flat ring at that link.
- The steps are 25 (MNIST) and 13 (PTB) epochs at every batch; the noise
  curves for the adaptive schedule are the ones measured at the base batch
  (mnist_lstm_noise_scale.csv, ptb_lstm_noise_scale.csv).
"""

import csv
import re
import statistics

from keras_legw import cli, cluster

GPU_REPORT = "docs/results/gpu_report.csv"
H200_PROFILE = "docs/results/cluster_h200_mnist_lstm_profile.csv"
PTB_PROFILE = "docs/results/cluster_plan_steps_profile_ptb_lstm_sgd_t2.csv"
# The gradient bytes of models.mnist_lstm_model.build_model(128), as
# bench.cluster_plan's CPU profile of the same model measured them.
MNIST_CPU_PROFILE = ("docs/results/"
                     "cluster_plan_steps_profile_mnist_lstm_adam_t2.csv")


def h200_profile():
    """Writes MNIST-LSTM's H200 profile from gpu_report.csv's full runs:
    at each batch, the mean over the seeds of wall seconds / steps (the
    steps from the run's "test accuracy at the end" row)."""
    with open(GPU_REPORT) as f:
        rows = [r for r in csv.DictReader(f) if r["model"] == "mnist_lstm"]
    runs = {}  # (batch, seed): [wall seconds, steps]
    for r in rows:
        run = runs.setdefault((int(r["batch_size"]), r["seed"]), [None, None])
        if r["measurement"] == "wall seconds, full budget":
            run[0] = float(r["value"])
        elif r["measurement"] == "test accuracy at the end":
            run[1] = int(re.match(r"(\d+) steps", r["detail"]).group(1))
    runs = {key: run for key, run in runs.items() if None not in run}
    param_bytes = cluster.StepProfile.read_csv(MNIST_CPU_PROFILE).param_bytes
    with open(H200_PROFILE, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(cluster.PROFILE_COLUMNS)
        for batch in sorted({b for b, _ in runs}):
            seconds = statistics.mean(wall / steps for (b, _), (wall, steps)
                                      in runs.items() if b == batch)
            writer.writerow([batch, f"{seconds:.6g}", param_bytes, "jax",
                             "gpu:NVIDIA H200"])


def plan(profile, interconnect, devices, *args):
    print(f"\n$ python -m keras_legw plan --cluster --profile={profile} "
          f"--interconnect={interconnect} --devices={devices} "
          + " ".join(args), flush=True)
    cli.main(["plan", "--cluster", f"--profile={profile}",
              f"--interconnect={interconnect}", f"--devices={devices}",
              *args])


def main():
    h200_profile()
    mnist = ("--num-examples=60000", "--epochs=25", "--base-batch=128",
             "--batch=8192", "--ramp=0:256,1:1024,3:4096,6:8192",
             "--noise-curve=docs/results/mnist_lstm_noise_scale.csv",
             "--max-batch=8192")
    plan(H200_PROFILE, "nvlink4", "1,2,4,8", *mnist)
    plan(H200_PROFILE, "infiniband-ndr", "1,8,64,512", *mnist)
    plan(PTB_PROFILE, "infiniband-ndr", "1,4,20,80", "--num-examples=46460",
         "--epochs=13", "--base-batch=20", "--batch=1280",
         "--ramp=0:20,1:80,3:160,6:320",
         "--noise-curve=docs/results/ptb_lstm_noise_scale.csv",
         "--max-batch=1280")


if __name__ == "__main__":
    main()
