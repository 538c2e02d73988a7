"""pip-installable package for keras_legw, the library: Keras and NumPy only.

The model zoo (`models/`) and the benchmarks (`bench/`) run from the
checkout; `pip install -e '.[zoo]'` brings what they need."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"',
                    (HERE / "keras_legw" / "__init__.py").read_text()).group(1)

setup(
    name="keras-legw",
    version=VERSION,
    description=("LEGW (linear-epoch gradual warmup) large-batch training for "
                 "Keras 3 on any backend: schedules, LARS, AutoWarmup, "
                 "noise scale"),
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    # Not `models`: a top-level package of that name would shadow users' own.
    packages=find_packages(include=["keras_legw", "keras_legw.*"]),
    python_requires=">=3.10",
    install_requires=[
        "keras>=3.6,<4",
        "numpy>=1.26",
    ],
    extras_require={
        # `python -m keras_legw plan --plot`
        "plot": ["matplotlib>=3.7"],
        # The model zoo and benchmarks, run from the checkout. Checked
        # together here: TF 2.21, Keras 3.15, keras-hub 0.32.
        "zoo": [
            "tensorflow>=2.16,<2.22",
            "keras-hub>=0.32,<0.33",  # brings tensorflow-text (WordPiece)
            "absl-py>=2.0",
            "tensorboard>=2.16",  # tf.summary; TF 2.21 no longer pulls it in
            "matplotlib>=3.7",
        ],
        # The library's tests also run on Keras' JAX backend (the CPU wheel).
        "test": ["pytest>=8", "pytest-xdist>=3", "hypothesis>=6", "jax>=0.4.30",
                 "sacrebleu>=2.4,<3"],
        # The documentation site (`make docs`): MkDocs Material, the API
        # pages from the docstrings by mkdocstrings (ruff formats their
        # signatures).
        "docs": ["mkdocs>=1.6,<2", "mkdocs-material>=9.5,<10",
                 "mkdocstrings[python]>=0.26,<2", "ruff>=0.5"],
        # models.gnmt --dataset=wmt16
        "wmt16": ["tensorflow-datasets>=4.9"],
    },
    entry_points={"console_scripts": ["keras-legw=keras_legw.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
