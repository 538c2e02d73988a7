"""Entry point of the Bazel py_test targets: runs pytest on the given files,
with this repository's conftest, and exits with pytest's status."""

import os
import sys

import pytest

if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", root]
                         + sys.argv[1:]))
