"""Test set-up shared by the whole suite.

The host CPU is split into two logical devices before TensorFlow initialises,
so that `tf.distribute.MirroredStrategy` runs with two replicas on a CPU-only
machine.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The real data sets lie beside the checkout (../shared/data), here and in CI.
_SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
if os.path.isdir(_SHARED):
    os.environ.setdefault("LEGW_DATA_DIR", os.path.abspath(_SHARED))

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
