"""Dataset files: where to find them and their checksums. Each application's
loader (`models.mnist_lstm_input`, `models.ptb_lstm_input`,
`models.gnmt_input`) fetches its files with `fetch`.

A dataset's files are looked up, in order, in
  1. `data_dir/<dataset>/` (the scripts' `--data_dir`),
  2. `$LEGW_DATA_DIR/<dataset>/`,
  3. the Keras cache, `~/.keras/datasets/<dataset>/`,
and else downloaded into the Keras cache with `keras.utils.get_file` (users
online). Every file's sha256 is checked; a missing or corrupt file raises one
`DataError` that names the path and what to do.
"""

import hashlib
import os
from pathlib import Path

DATA_DIR_ENV = "LEGW_DATA_DIR"

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
