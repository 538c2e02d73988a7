"""MNIST-LSTM under AdaptDL (Pollux, Qiao et al., OSDI 2021), one replica:
the side-by-side comparison with keras_legw's growing batch.

A PyTorch port of the zoo's MNIST-LSTM (models/mnist_lstm_model.py): each
28x28 image is 28 steps of 28 pixels, one LSTM layer of 128 units (Keras'
initializers and forget-gate bias), a dense layer to 10 logits, softmax
cross-entropy; Adam (Keras' epsilon 1e-7) at 0.002 at batch 128. AdaptDL's
`AdaptiveDataLoader` grows the batch from 128 up to --max_batch_size by
goodput (its fitted throughput model x the statistical efficiency from the
gradient noise), with gradient accumulation (on one replica it grows only
with it), and `AdaptiveDataParallel` scales the rate by AdaScale's gain (for
Adam, by default, its square root). `remaining_epochs_until(25)` counts
AdaptDL's epochs, which are statistical progress (scale-invariant steps of
batch 128), not passes: the passes over the data are counted beside them.

Runs in its own virtualenv, without TensorFlow (bench/adaptdl_mnist/README.md):

    .venv-adaptdl/bin/python bench/adaptdl_mnist/train.py --seed=0

At the end one row goes to docs/results/adaptdl_comparison.csv and one row
per AdaptDL epoch to docs/results/adaptdl_curves.csv (--csv, --curves_csv).
A smoke run (under a minute on two cores):

    .venv-adaptdl/bin/python bench/adaptdl_mnist/train.py \\
        --num_train_examples=2048 --epochs=2 --csv=/tmp/a.csv \\
        --curves_csv=/tmp/b.csv

Restarts: with --checkpoint_dir=DIR, SIGINT or SIGTERM makes AdaptDL save
its state (and this script's counters) in DIR and exit with 143; the same
command again resumes from there. Without it the checkpoint goes to a
temporary folder that is removed at exit.
"""

import argparse
import csv
import functools
import os
import pickle
import shutil
import socket
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

# Shim 1: NumPy 1.24 removed the alias `np.int`; adaptdl 0.2.11 still uses it
# (goodput.py, GoodputFunction.optimize without gradient accumulation).
# Restore it before adaptdl is imported.
np.int = int

import torch  # noqa: E402

# Shim 2: since PyTorch 2.6 `torch.load` defaults to weights_only=True, which
# refuses the NumPy arrays that AdaptDL keeps in the optimizer's state (its
# gradient-noise statistics), so restoring AdaptiveDataParallel's checkpoint
# after a restart (adaptdl/torch/parallel.py) would fail. Default to the old
# behaviour; it only ever loads the checkpoints this script wrote.
_torch_load = torch.load


@functools.wraps(_torch_load)
def _torch_load_full(*args, **kwargs):
    kwargs.setdefault("weights_only", False)
    return _torch_load(*args, **kwargs)


torch.load = _torch_load_full

import adaptdl.checkpoint  # noqa: E402
import adaptdl.torch as adl  # noqa: E402
from adaptdl.torch.scaling_rules import AdamScale  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the zoo's MNIST loader, which needs no TF

from models import mnist_lstm_input  # noqa: E402
from models.common.data import DATA_DIR_ENV, DataError  # noqa: E402

CSV = REPO / "docs/results/adaptdl_comparison.csv"
CURVES_CSV = REPO / "docs/results/adaptdl_curves.csv"
COLUMNS = ["system", "config", "seed", "test_accuracy", "steps", "passes",
           "examples", "first_step_at_98_9", "batches", "wall_seconds"]
CURVE_COLUMNS = ["system", "config", "seed", "epoch", "step", "examples",
                 "passes", "batch_sizes", "learning_rate", "gain",
                 "test_accuracy", "wall_seconds"]
TARGET_ACCURACY = 0.989
BASE_BATCH_SIZE = 128
BASE_LEARNING_RATE = 0.002  # Adam's, tuned at batch 128 (mnist_lstm_model)
UNITS = 128
EVAL_BATCH_SIZE = 1000

# ---------------------------------------------------------------- the data

def load_mnist(data_dir):
    """((train_images, train_labels), (test_images, test_labels)), uint8,
    through the zoo's own loader (`models.mnist_lstm_input`: NumPy only, its
    files checked by sha256, nothing downloaded) in --data_dir/mnist,
    $LEGW_DATA_DIR/mnist (by default the Makefile's ../shared/data), then
    the Keras cache."""
    shared = REPO.parent / "shared" / "data"
    if shared.is_dir():
        os.environ.setdefault(DATA_DIR_ENV, str(shared))
    try:
        return mnist_lstm_input.load_mnist(data_dir, download=False)
    except DataError as error:
        raise SystemExit(str(error)) from None


class Images(torch.utils.data.Dataset):
    """uint8 images and labels in memory; `__getitems__` gathers a whole
    batch at once (pixels / 255 as float32), so large batches cost one
    indexing, not one call per image."""

    def __init__(self, images, labels):
        self.images = torch.from_numpy(np.array(images))  # a writable copy
        self.labels = torch.from_numpy(labels.astype(np.int64))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index].float() / 255.0, self.labels[index]

    def __getitems__(self, indices):
        index = torch.as_tensor(indices)
        return self.images[index].float().div_(255.0), self.labels[index]


def whole_batch(batch):
    """The collate function for `Images.__getitems__`' ready batches."""
    return batch


# ------------------------------------------------------------ the model

class MnistLstm(torch.nn.Module):
    """keras.Sequential([LSTM(units), Dense(10)]) over (batch, 28, 28), with
    Keras' initializers: Glorot-uniform kernels, orthogonal recurrent kernel,
    zero biases but 1 on the forget gate (PyTorch's gate order i, f, g, o is
    Keras' i, f, c, o)."""

    def __init__(self, units=UNITS):
        super().__init__()
        self.lstm = torch.nn.LSTM(28, units, batch_first=True)
        self.dense = torch.nn.Linear(units, 10)
        with torch.no_grad():
            torch.nn.init.xavier_uniform_(self.lstm.weight_ih_l0)
            torch.nn.init.orthogonal_(self.lstm.weight_hh_l0)
            self.lstm.bias_ih_l0.zero_()
            self.lstm.bias_ih_l0[units:2 * units].fill_(1.0)
            self.lstm.bias_hh_l0.zero_()
            torch.nn.init.xavier_uniform_(self.dense.weight)
            self.dense.bias.zero_()

    def forward(self, images):
        _, (hidden, _) = self.lstm(images)
        return self.dense(hidden[-1])


def test_accuracy(model, images, labels):
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), EVAL_BATCH_SIZE):
            x = images[start:start + EVAL_BATCH_SIZE].float() / 255.0
            y = labels[start:start + EVAL_BATCH_SIZE]
            correct += (model(x).argmax(1) == y).sum().item()
    model.train()
    return correct / len(labels)


# ------------------------------------------------------------ AdaptDL

def single_replica_environment(checkpoint_dir, share_dir):
    """Sets the ADAPTDL_* variables that a scheduler sets for each replica
    (adaptdl/env.py) for one replica on this machine: rank 0 of 1 on 1 node,
    its rendezvous on the loopback address at a free port, checkpoints in
    `checkpoint_dir` (which must hold nothing else: AdaptDL reads any entry
    there as a sign of a checkpoint) and the share folder `share_dir`.
    Resuming after an earlier checkpoint needs ADAPTDL_NUM_RESTARTS one past
    the last one's number. Returns whether there is one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    saved = [int(p.name.split("-")[1]) for p in Path(checkpoint_dir).glob(
        "checkpoint-*") if p.name.split("-")[1].isdigit()]
    os.environ.update({
        "ADAPTDL_CHECKPOINT_PATH": str(checkpoint_dir),
        "ADAPTDL_SHARE_PATH": str(share_dir),
        "ADAPTDL_MASTER_ADDR": "127.0.0.1",
        "ADAPTDL_MASTER_PORT": str(port),
        "ADAPTDL_NUM_REPLICAS": "1",
        "ADAPTDL_NUM_NODES": "1",
        "ADAPTDL_REPLICA_RANK": "0",
        "ADAPTDL_NUM_RESTARTS": str(max(saved) + 1 if saved else 0),
    })
    for name in ("ADAPTDL_SUPERVISOR_URL", "ADAPTDL_JOB_ID"):
        os.environ.pop(name, None)  # no scheduler: no hints posted
    return bool(saved)


class Records(adaptdl.checkpoint.State):
    """This script's counters and per-epoch rows, saved with AdaptDL's own
    state so that a restart resumes them too."""

    def __init__(self):
        super().__init__("bench-adaptdl-mnist-records")
        self.steps = 0
        self.examples = 0
        self.batches = []      # the batch sizes of the current epoch
        self.rows = []         # one dict per finished epoch
        self.seconds = 0.0     # wall seconds of earlier sessions
        self.session_start = time.time()

    def wall_seconds(self):
        return self.seconds + time.time() - self.session_start

    def save(self, fileobj):
        pickle.dump((self.steps, self.examples, self.batches, self.rows,
                     self.wall_seconds()), fileobj)

    def load(self, fileobj):
        (self.steps, self.examples, self.batches, self.rows,
         self.seconds) = pickle.load(fileobj)


def train_epoch(net, optimizer, loader, records):
    """One AdaptDL epoch: batches until the statistical progress reaches the
    next multiple of a pass at batch 128 (it may take several passes)."""
    loss_fn = torch.nn.CrossEntropyLoss()
    for images, labels in loader:
        batch = loader.current_batch_size  # total: atomic x (accumulation+1)
        if not records.batches or records.batches[-1] != batch:
            records.batches.append(batch)
        optimizer.zero_grad()  # AdaptDL skips it while accumulating
        loss = loss_fn(net(images), labels)
        optimizer_step = net.require_backward_grad_sync  # set by forward
        loss.backward()
        optimizer.step()  # AdaptDL's: no update while accumulating
        records.steps += int(optimizer_step)
        records.examples += len(labels)


def epoch_row(records, epoch, num_examples, net, accuracy):
    """One row of the curves; `net` gives AdaptDL's last gain and rate
    factor."""
    return dict(
        epoch=epoch + 1, step=records.steps, examples=records.examples,
        passes=f"{records.examples / num_examples:.3f}",
        batch_sizes="/".join(map(str, records.batches)),
        learning_rate=f"{BASE_LEARNING_RATE * net._state.lr_factor:.6g}",
        gain=f"{net.gain:.4g}", test_accuracy=f"{accuracy:.4f}",
        wall_seconds=f"{records.wall_seconds():.1f}")


# ------------------------------------------------------------ the run

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.
                                     RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0,
                        help="torch's seed: the initial weights. AdaptDL's "
                        "sampler shuffles by epoch number alone.")
    parser.add_argument("--epochs", type=int, default=25,
                        help="AdaptDL epochs (statistical progress).")
    parser.add_argument("--max_batch_size", type=int, default=8192)
    parser.add_argument("--local_bsz_bounds", default="32,1024",
                        help="min,max atomic batch per replica; larger "
                        "batches accumulate gradients (AdaptDL's CIFAR "
                        "example's bounds).")
    parser.add_argument("--scaling_rule", choices=("default", "adamscale"),
                        default="default",
                        help="default: AdaptiveDataParallel's choice for "
                        "Adam (AdamScale, with the plain gradient-noise "
                        "estimator); adamscale: pass AdamScale() explicitly, "
                        "which also switches to the Adam-preconditioned "
                        "noise estimator.")
    parser.add_argument("--num_train_examples", type=int, default=None,
                        help="Train on the first N images only (smoke runs).")
    parser.add_argument("--data_dir", default=None,
                        help="A folder with a mnist/ subfolder.")
    parser.add_argument("--checkpoint_dir", default=None,
                        help="Where AdaptDL checkpoints on SIGINT/SIGTERM, "
                        "and resumes from (default: a temporary folder).")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch's intra-op threads (0: its default, one "
                        "per core). 1 by default: on two cores busy with "
                        "other trainings, two threads made each step 20-30x "
                        "slower.")
    parser.add_argument("--csv", default=str(CSV))
    parser.add_argument("--curves_csv", default=str(CURVES_CSV))
    args = parser.parse_args(argv)
    low, high = (int(v) for v in args.local_bsz_bounds.split(","))
    if not low <= BASE_BATCH_SIZE <= high:
        parser.error(f"--local_bsz_bounds must hold {BASE_BATCH_SIZE}")
    args.local_bsz_bounds = (low, high)
    if args.max_batch_size < BASE_BATCH_SIZE:
        parser.error(f"--max_batch_size must be >= {BASE_BATCH_SIZE}")
    return args


def config_name(args):
    name = f"adam_b{BASE_BATCH_SIZE}_max{args.max_batch_size}_e{args.epochs}"
    if args.scaling_rule != "default":
        name += f"_{args.scaling_rule}"
    if args.num_train_examples:
        name += f"_n{args.num_train_examples}"
    return name


def append_rows(path, columns, rows):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, columns)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def build(args, train):
    """The process group, loader, model and optimizer, in AdaptDL's order
    (each restores its checkpointed state when there is one)."""
    adl.init_process_group("gloo")
    loader = adl.AdaptiveDataLoader(Images(*train), batch_size=BASE_BATCH_SIZE,
                                    shuffle=True, drop_last=True,
                                    collate_fn=whole_batch)
    loader.autoscale_batch_size(args.max_batch_size,
                                local_bsz_bounds=args.local_bsz_bounds,
                                gradient_accumulation=True)
    model = MnistLstm()
    optimizer = torch.optim.Adam(model.parameters(), lr=BASE_LEARNING_RATE,
                                 eps=1e-7)  # Keras' Adam epsilon
    rule = AdamScale() if args.scaling_rule == "adamscale" else None
    net = adl.AdaptiveDataParallel(model, optimizer, scaling_rule=rule)
    return loader, net, optimizer


def train_and_record(args, train, test):
    loader, net, optimizer = build(args, train)
    records = Records()
    adaptdl.checkpoint.load_state(records)
    records.session_start = time.time()
    test_images = torch.from_numpy(np.array(test[0]))
    test_labels = torch.from_numpy(test[1].astype(np.int64))
    num_examples = len(train[1])
    for epoch in adl.remaining_epochs_until(args.epochs):
        train_epoch(net, optimizer, loader, records)
        accuracy = test_accuracy(net.module, test_images, test_labels)
        row = epoch_row(records, epoch, num_examples, net, accuracy)
        records.rows.append(row)
        records.batches = []
        print(f"epoch {row['epoch']}: step {row['step']}, examples "
              f"{row['examples']} ({row['passes']} passes), batch "
              f"{row['batch_sizes']}, rate {row['learning_rate']}, gain "
              f"{row['gain']}, test_accuracy {row['test_accuracy']}, "
              f"{row['wall_seconds']} s", flush=True)
    return records, num_examples


def summary(args, records, num_examples):
    rows = records.rows
    first = next((r["step"] for r in rows
                  if float(r["test_accuracy"]) >= TARGET_ACCURACY), "")
    return dict(
        system="adaptdl", config=config_name(args), seed=args.seed,
        test_accuracy=rows[-1]["test_accuracy"], steps=records.steps,
        passes=f"{records.examples / num_examples:.3f}",
        examples=records.examples, first_step_at_98_9=first,
        batches=" ".join(r["batch_sizes"] for r in rows),
        wall_seconds=rows[-1]["wall_seconds"])


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", "skipping zero_grad for accumulated")
    train, test = load_mnist(args.data_dir)
    if args.num_train_examples:
        train = tuple(part[:args.num_train_examples] for part in train)
    scratch = tempfile.mkdtemp(prefix="adaptdl_mnist_")
    checkpoint_dir = args.checkpoint_dir or os.path.join(scratch, "checkpoint")
    os.makedirs(checkpoint_dir, exist_ok=True)
    os.makedirs(os.path.join(scratch, "share"))
    try:
        if single_replica_environment(checkpoint_dir,
                                      os.path.join(scratch, "share")):
            print(f"resuming from the checkpoint in {checkpoint_dir}",
                  flush=True)
        records, num_examples = train_and_record(args, train, test)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not records.rows:
        raise SystemExit(f"no epoch left to train up to --epochs="
                         f"{args.epochs}")
    row = summary(args, records, num_examples)
    append_rows(args.csv, COLUMNS, [row])
    append_rows(args.curves_csv, CURVE_COLUMNS,
                [dict(system="adaptdl", config=row["config"], seed=args.seed,
                      **r) for r in records.rows])
    print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    print(f"appended to {args.csv} and {args.curves_csv}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
