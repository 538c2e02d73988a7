"""One function maps a strategy name to a `tf.distribute` strategy.

The distributed engine is tf.distribute; this module only chooses and builds a
strategy, in the manner of TF Model Garden's `distribute_utils`.
"""

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu")


def configure_cpu_devices(num_cpu_devices):
    """Splits the host CPU into `num_cpu_devices` logical devices, so that
    MirroredStrategy has several replicas on a CPU-only machine. Must run
    before TensorFlow initialises its devices; a no-op for 0 or 1 if the split
    is already in place."""
    if num_cpu_devices < 1:
        raise ValueError(
            f"Flag --num_cpu_devices must be >= 1. Received: {num_cpu_devices}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == num_cpu_devices:
        return
    if num_cpu_devices == 1 and current is None:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_cpu_devices)
    except RuntimeError:
        raise ValueError(
            f"Cannot split the CPU into {num_cpu_devices} devices: TensorFlow "
            f"has already initialised {len(current or [cpu])}. Set "
            "--num_cpu_devices before any TensorFlow op runs.") from None


def _replica_devices():
    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def get_strategy(name, tpu_address=None):
    """Returns the tf.distribute strategy called `name`.

    Args:
        name: one of "default" (no distribution), "one_device" (the first GPU,
            else the CPU), "mirrored" (every local GPU, else every logical
            CPU), "multi_worker" (MultiWorkerMirroredStrategy; the cluster
            comes from the TF_CONFIG environment variable) or "tpu"
            (TPUStrategy on the TPU at `tpu_address`: "" for a local TPU VM,
            a name or a grpc:// address).
        tpu_address: used with "tpu" only.

    Raises:
        ValueError: for an unknown name, a missing or malformed TF_CONFIG, or
            a TPU address given with another strategy.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Flag --strategy must be one of {', '.join(STRATEGIES)}. "
                         f"Received: {name!r}")
    if tpu_address is not None and name != "tpu":
        raise ValueError(f"Flag --tpu is only used with --strategy=tpu. "
                         f"Received: --strategy={name} --tpu={tpu_address}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(_replica_devices()[0])
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy(_replica_devices())
        # Logical CPUs: all-reduce through one device. The default collective
        # all-reduce numbers its instances per strategy, so a second
        # MirroredStrategy in one process can collide with the first.
        return tf.distribute.MirroredStrategy(
            _replica_devices(),
            cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multi_worker":
        config = os.environ.get("TF_CONFIG")
        try:
            cluster = json.loads(config)["cluster"] if config else None
        except (ValueError, KeyError, TypeError):
            cluster = None
        if not cluster:
            raise ValueError(
                "--strategy=multi_worker needs the TF_CONFIG environment "
                "variable with a 'cluster' and a 'task', e.g. "
                '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                '"task": {"type": "worker", "index": 0}}. '
                f"Received: TF_CONFIG={config!r}")
        return tf.distribute.MultiWorkerMirroredStrategy()
    # TPU: a thin, standard path (not testable without a TPU).
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=tpu_address or "")
    if tpu_address not in (None, "", "local"):
        tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def make_strategy(name, tpu_address=None, num_cpu_devices=1):
    """`configure_cpu_devices(num_cpu_devices)`, then `get_strategy`."""
    configure_cpu_devices(num_cpu_devices)
    return get_strategy(name, tpu_address)


def is_chief(strategy):
    """True on the process that writes summaries, results and checkpoints."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return (resolver.task_type == "worker" and resolver.task_id == 0
            and not has_chief)


def worker_dir(model_dir, strategy):
    """`model_dir` on the chief; a per-worker folder inside it elsewhere, so
    that every worker can take part in collective checkpoint saves."""
    if is_chief(strategy):
        return model_dir
    resolver = strategy.cluster_resolver
    return os.path.join(model_dir, f"{resolver.task_type}_{resolver.task_id}")
