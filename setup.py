"""pip-installable package for keras_legw (the library) and models (the zoo)."""

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
                 "Keras 3 on TensorFlow: schedule, LARS, model zoo"),
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["keras_legw", "keras_legw.*",
                                    "models", "models.*"]),
    python_requires=">=3.10",
    install_requires=[
        # Checked together here: TF 2.21, Keras 3.15, keras-hub 0.32.
        "tensorflow>=2.16,<2.22",
        "keras>=3.6,<4",
        "keras-hub>=0.32,<0.33",  # brings tensorflow-text (WordPiece)
        "absl-py>=2.0",
        "tensorboard>=2.16",  # tf.summary needs it; TF 2.21 no longer pulls it in
        "numpy>=1.26",
        "matplotlib>=3.7",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3"],
        # models.gnmt --dataset=wmt16
        "wmt16": ["tensorflow-datasets>=4.9"],
    },
    entry_points={"console_scripts": ["keras-legw=keras_legw.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
