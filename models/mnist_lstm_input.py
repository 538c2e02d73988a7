"""MNIST's files for MNIST-LSTM: the four IDX files, checked by sha256 and
found or downloaded by `models.common.data.fetch` (folder `mnist/`)."""

import gzip

import numpy as np

from models.common.data import DataError, fetch

MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
MNIST_FILES = {
    "train-images-idx3-ubyte.gz":
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz":
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


def read_idx(path, expected_magic):
    """Reads a gzipped IDX file (big-endian header, uint8 data)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DataError(f"{path} is not an IDX file of type {expected_magic} "
                        f"(magic number {magic}).")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big")
            for i in range(ndim)]
    array = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise DataError(f"{path} holds {array.size} values, its header "
                        f"promises {dims}.")
    return array.reshape(dims)


def load_mnist(data_dir=None, download=True):
    """Returns ((train_images, train_labels), (test_images, test_labels)).

    Images are uint8 arrays of shape (n, 28, 28), labels uint8 of shape (n,).
    """
    paths = {name: fetch("mnist", name, digest, MNIST_URL, data_dir,
                         download)
             for name, digest in MNIST_FILES.items()}
    return (
        (read_idx(paths["train-images-idx3-ubyte.gz"], 2051),
         read_idx(paths["train-labels-idx1-ubyte.gz"], 2049)),
        (read_idx(paths["t10k-images-idx3-ubyte.gz"], 2051),
         read_idx(paths["t10k-labels-idx1-ubyte.gz"], 2049)),
    )
