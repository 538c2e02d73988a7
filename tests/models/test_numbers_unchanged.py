"""Refactoring must not change numbers: a short deterministic run of each
script gives the losses and metrics stored in `golden_results.json`.

The file was written by this test from the code at the commit that added
it. When a change is meant to change the numbers, say why in the commit and
regenerate it:

    LEGW_WRITE_GOLDEN=1 python -m pytest tests/models/test_numbers_unchanged.py
"""

import json
import os

import numpy as np
import pytest

from models import gnmt, mnist_lstm, ptb_lstm, resnet50

GOLDEN = os.path.join(os.path.dirname(__file__), "golden_results.json")
COMMON = dict(deterministic=True, verbose=0, num_cpu_devices=2, seed=3)
RUNS = {
    "mnist_lstm": lambda d: mnist_lstm.run(
        batch_size=64, epochs=2, max_steps=6, units=16,
        num_train_examples=256, checkpoint_every_steps=0, model_dir=d,
        **COMMON),
    "ptb_lstm": lambda d: ptb_lstm.run(
        batch_size=8, epochs=1, max_steps=6, num_train_tokens=4000,
        num_test_tokens=2000, strategy="mirrored", model_dir=d, **COMMON),
    "gnmt": lambda d: gnmt.run(
        batch_size=16, epochs=1, max_steps=4, config="tiny",
        num_train_pairs=256, num_test_pairs=16, beam_width=2, model_dir=d,
        base_learning_rate=2e-3, **COMMON),  # the stored numbers' rate
    "resnet50": lambda d: resnet50.run(
        batch_size=2, data="synthetic", image_size=32, max_steps=2,
        num_train_examples=8, model_dir=d, **COMMON),
}


def _numbers(results):
    """The losses and metrics of a results dict (no timings)."""
    return {**{k: results[k] for k in ("test_bleu",) if k in results},
            "final_loss": results["final_loss"],
            "final_learning_rate": results["final_learning_rate"],
            "history": [dict(step=h["step"], loss=h["loss"], **h["metrics"])
                        for h in results["history"]]}


@pytest.fixture(autouse=True)
def tiny_gnmt(monkeypatch):
    monkeypatch.setitem(gnmt.CONFIGS, "tiny", dict(
        layers=3, units=8, dropout=0.0, vocabulary_size=200, max_length=24))


@pytest.mark.parametrize("script", sorted(RUNS))
def test_short_deterministic_run_gives_the_stored_numbers(tmp_path, script):
    got = _numbers(RUNS[script](str(tmp_path)))
    stored = json.load(open(GOLDEN)) if os.path.exists(GOLDEN) else {}
    if os.environ.get("LEGW_WRITE_GOLDEN"):
        stored[script] = got
        with open(GOLDEN, "w") as f:
            json.dump(stored, f, indent=1, sort_keys=True)
    want = stored[script]
    assert [h["step"] for h in got["history"]] == \
        [h["step"] for h in want["history"]]
    assert got.keys() == want.keys()
    for key in set(want) - {"history"}:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5,
                                   err_msg=key)
    for mine, theirs in zip(got["history"], want["history"]):
        assert mine.keys() == theirs.keys()
        for key in theirs:
            np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-5,
                                       err_msg=f"{script} {key}")
