"""Test set-up shared by the whole suite.

The host CPU is split into two logical devices before TensorFlow initialises,
so that `tf.distribute.MirroredStrategy` runs with two replicas on a CPU-only
machine.
"""

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The real data sets lie beside the checkout (../shared/data), here and in CI.
_SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
if os.path.isdir(_SHARED):
    os.environ.setdefault("LEGW_DATA_DIR", os.path.abspath(_SHARED))

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

NUM_LOGICAL_CPUS = 2

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration()] * NUM_LOGICAL_CPUS
)


def two_cpu_mirrored_strategy():
    """MirroredStrategy over the two logical CPUs, reducing through one
    device: the default collective all-reduce numbers its instances per
    strategy, and a second strategy in one process collides with the first
    ("Shape mismatch in the collective instance 100")."""
    return tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"],
        cross_device_ops=tf.distribute.ReductionToOneDevice())


# The backends besides TensorFlow that `checks_on_backend` runs; PyTorch is
# skipped, saying so, under LEGW_SKIP_TORCH=1 (`make test TORCH=`).
OTHER_BACKENDS = ["jax", pytest.param("torch", marks=pytest.mark.skipif(
    os.environ.get("LEGW_SKIP_TORCH") == "1",
    reason="runs on the torch backend; LEGW_SKIP_TORCH=1"))]


def checks_on_backend(module, backend, *checks, extra_env=None):
    """{check: its output} of the checks module `module` (`python -m module
    CHECK ...`, printing one line "OUT<json>") run on `backend`, in one fresh
    process."""
    result = subprocess.run(
        [sys.executable, "-m", module, *checks], text=True,
        capture_output=True,
        env=dict(os.environ, KERAS_BACKEND=backend, **(extra_env or {})))
    assert result.returncode == 0, result.stderr[-3000:]
    line = [l for l in result.stdout.splitlines() if l.startswith("OUT")][-1]
    return json.loads(line[3:])
