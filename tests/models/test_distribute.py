"""Strategy selection."""

import pytest
import tensorflow as tf

from models.common import distribute


def test_mirrored_uses_every_logical_cpu():
    strategy = distribute.get_strategy("mirrored")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == 2  # tests/conftest.py splits the CPU
    assert distribute.is_chief(strategy)


def test_default_and_one_device():
    assert distribute.get_strategy("default").num_replicas_in_sync == 1
    one = distribute.get_strategy("one_device")
    assert isinstance(one, tf.distribute.OneDeviceStrategy)


@pytest.mark.parametrize("name,kwargs,message", [
    ("horovod", {}, "--strategy must be one of default, one_device"),
    ("mirrored", {"tpu": "grpc://1.2.3.4:8470"}, "--tpu is only used with"),
])
def test_bad_strategy_arguments(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        distribute.get_strategy(name, tpu_address=kwargs.get("tpu"))


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG"):
        distribute.get_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="Received: TF_CONFIG='{not json'"):
        distribute.get_strategy("multi_worker")


def test_cpu_split_cannot_change_after_initialisation():
    distribute.configure_cpu_devices(2)  # what conftest set: a no-op
    with pytest.raises(ValueError, match="already initialised 2"):
        distribute.configure_cpu_devices(3)
