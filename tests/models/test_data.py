"""Dataset lookup, checksums and the IDX reader."""

import gzip
import shutil

import numpy as np
import pytest

from models import mnist_lstm_input
from models.common import data


def _write_idx(path, array, magic):
    header = magic.to_bytes(4, "big") + b"".join(
        d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trip(tmp_path):
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    _write_idx(tmp_path / "x.gz", images, 2051)
    np.testing.assert_array_equal(mnist_lstm_input.read_idx(tmp_path / "x.gz", 2051), images)


def test_read_idx_rejects_wrong_magic_and_truncation(tmp_path):
    _write_idx(tmp_path / "x.gz", np.zeros(5), 2049)
    with pytest.raises(data.DataError, match="not an IDX file of type 2051"):
        mnist_lstm_input.read_idx(tmp_path / "x.gz", 2051)
    with gzip.open(tmp_path / "y.gz", "wb") as f:
        f.write((2049).to_bytes(4, "big") + (10).to_bytes(4, "big") + b"abc")
    with pytest.raises(data.DataError, match=r"holds 3 values.*\[10\]"):
        mnist_lstm_input.read_idx(tmp_path / "y.gz", 2049)


def test_missing_file_names_the_searched_paths(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(data.DataError) as info:
        data.fetch("mnist", "t10k-labels-idx1-ubyte.gz", "0" * 64,
                   mnist_lstm_input.MNIST_URL, data_dir=str(tmp_path / "flag"),
                   download=False)
    message = str(info.value)
    for folder in ("flag/mnist", "env/mnist", "home/.keras/datasets/mnist"):
        assert folder in message
    assert "--data_dir" in message


def test_corrupt_file_is_reported_with_both_checksums(tmp_path):
    (tmp_path / "mnist").mkdir()
    path = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"not the real file")
    with pytest.raises(data.DataError, match="is corrupt: sha256") as info:
        mnist_lstm_input.load_mnist(data_dir=str(tmp_path), download=False)
    assert mnist_lstm_input.MNIST_FILES["t10k-labels-idx1-ubyte.gz"] in str(info.value)
    assert str(path) in str(info.value)


def test_search_order_is_flag_then_environment_then_keras_cache(
        tmp_path, monkeypatch):
    """A valid copy in each of the three places: the first in the documented
    order wins, and removing it hands over to the next."""
    name = "t10k-labels-idx1-ubyte.gz"
    original = data.fetch("mnist", name, mnist_lstm_input.MNIST_FILES[name],
                          mnist_lstm_input.MNIST_URL, download=False)
    places = [tmp_path / "flag", tmp_path / "env",
              tmp_path / "home" / ".keras" / "datasets"]
    for place in places:
        (place / "mnist").mkdir(parents=True)
        shutil.copy(original, place / "mnist" / name)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(places[1]))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for place in places:
        path = data.fetch("mnist", name, mnist_lstm_input.MNIST_FILES[name],
                          mnist_lstm_input.MNIST_URL, data_dir=str(places[0]),
                          download=False)
        assert path == place / "mnist" / name
        (place / "mnist" / name).unlink()


def test_real_mnist_loads_with_known_label_counts():
    (train_x, train_y), (test_x, test_y) = mnist_lstm_input.load_mnist(download=False)
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    # Label counts from the data set's README (../shared/data/mnist).
    assert np.bincount(test_y).tolist() == [980, 1135, 1032, 1010, 982, 892,
                                            958, 1028, 974, 1009]
    assert np.bincount(train_y)[:3].tolist() == [5923, 6742, 5958]
