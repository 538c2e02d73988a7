"""The keras_legw model zoo: one training script per application of the LEGW
paper, on shared machinery in `models.common`."""
