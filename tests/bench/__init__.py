"""Tests of the benchmark commands that produce the published numbers."""
