"""Shared machinery of the model zoo: flags, strategies, data, trainer."""
