"""MNIST-LSTM through `model.fit` with a growing batch: the script's run
on a slice of the real data, and its errors."""

import pytest

from models import mnist_lstm_growing


def test_a_short_ramp_trains_with_the_ramps_batches(tmp_path):
    results = mnist_lstm_growing.run(
        batch_schedule="0:128,1:256", epochs=2, units=8,
        num_train_examples=1024, backup_dir=str(tmp_path / "backup"))
    assert results["batch_size"] == [128, 256]
    assert results["steps"] == 1024 // 128 + 1024 // 256
    assert results["examples"] == 2048
    assert len(results["epoch_test_accuracy"]) == 2
    assert 0.0 <= results["test_accuracy"] <= 1.0
    assert results["learning_rate"][1] > 0


def test_an_unknown_optimizer_and_a_bad_ramp_are_one_error():
    with pytest.raises(ValueError, match="^Argument `optimizer` must be one"):
        mnist_lstm_growing.run(optimizer="adagrad", epochs=1)
    with pytest.raises(SystemExit) as info:
        mnist_lstm_growing.main(["--batch_schedule=0:256,1:128",
                                 "--epochs=1"])
    assert info.value.code == 2
