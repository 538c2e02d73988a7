"""The measuring train step (`keras_legw.noise_step`): on least squares its
four logged values against the NumPy closed form of each half's gradient,
and its weights against plain `fit` and NumPy SGD, on TensorFlow (in this
process), JAX and PyTorch (fresh processes); nested data, sample weights and
metrics; an embedding (sparse gradients, Adam); BatchNormalization over the
halves; `remove()`; the errors; and
MirroredStrategy on two CPUs, where the values are per replica."""


import keras
import numpy as np
import pytest

from keras_legw.noise_step import MEASURE_LOGS, install_measuring_step
from tests.conftest import (OTHER_BACKENDS, checks_on_backend,
                            two_cpu_mirrored_strategy)
from tests.keras_legw import noise_step_checks as checks
from tests.keras_legw.backend_checks import (least_squares_data,
                                             least_squares_model)

ONE_ROW = r"needs batches \(per replica\) of at least 2 rows"


def mse_gradient(x, y, w):
    """d/dw of mean((x w - y)^2) over the rows: 2 / |R| x^T (x w - y)."""
    return 2.0 / len(x) * x.T @ (x @ w - y)


def step_values(x, y, w):
    """The four values of one step on rows (x, y) at weights w (float64)."""
    b = len(x)
    h = b // 2
    g1, g2 = mse_gradient(x[:h], y[:h], w), mse_gradient(x[h:], y[h:], w)
    g = mse_gradient(x, y, w)
    return [(g1 @ g1 + g2 @ g2) / 2, g @ g, 2 / (1 / h + 1 / (b - h)), b]


def sgd_reference(x, y, w, batch_size, rate, replicas=1):
    """(each step's values, the final weights) of SGD on least squares;
    with replicas, each step's values are the mean over the replicas'
    equal shares of the batch, as Keras averages the logs."""
    x, y, w = (np.asarray(a, np.float64) for a in (x, y.ravel(), w))
    logs = []
    for start in range(0, len(x), batch_size):
        rows = slice(start, start + batch_size)
        shares = zip(np.array_split(x[rows], replicas),
                     np.array_split(y[rows], replicas))
        logs.append(np.mean([step_values(xs, ys, w) for xs, ys in shares],
                            axis=0))
        w = w - rate * mse_gradient(x[rows], y[rows], w)
    return np.array(logs), w


def check_least_squares(out, rows=checks.ROWS, batch_size=checks.BATCH):
    x, y = least_squares_data(2, n=rows)
    want_logs, want_w = sgd_reference(x, y, 1 + checks.DELTA, batch_size,
                                      checks.RATE)
    measured, plain = out["measured"], out["plain"]
    np.testing.assert_allclose(measured["logs"], want_logs, rtol=1e-5)
    np.testing.assert_allclose(measured["weights"][0], want_w, rtol=1e-5)
    np.testing.assert_allclose(measured["weights"], plain["weights"],
                               rtol=1e-5)
    np.testing.assert_allclose(measured["history"]["loss"],
                               plain["history"]["loss"], rtol=1e-5)
    assert set(measured["history"]) == {"loss", *MEASURE_LOGS}
    assert out["after_remove"] == ["loss"] and out["own_step_back"]


def check_structured(out, rows=20):
    measured, plain = out
    for got, want in zip(measured["weights"], plain["weights"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert set(measured["history"]) == {*plain["history"], *MEASURE_LOGS}
    for key, values in plain["history"].items():
        np.testing.assert_allclose(measured["history"][key], values,
                                   rtol=1e-5)
    # Batches of 9 rows (halves of 4 and 5) and the rest, two epochs.
    sizes = [[2 / (1 / 4 + 1 / 5), 9]] * 2 + [[1, 2]] * (rows == 20)
    sizes *= 2
    np.testing.assert_allclose(np.array(measured["logs"])[:, 2:], sizes,
                               rtol=1e-6)


def embedding_gradient(x, y, weights):
    """The gradient of mean((flatten(E[x]) W + c - y)^2) over the rows, as
    [dE, dW, dc] (an embedding row gathers each lookup's share)."""
    table, kernel, bias = weights
    features = table[x].reshape(len(x), -1)
    residual = 2.0 / len(x) * (features @ kernel + bias - y)
    d_table = np.zeros_like(table)
    np.add.at(d_table, x.ravel(), (residual * kernel.ravel()).reshape(-1, 2))
    return [d_table, features.T @ residual, residual.sum(axis=0)]


def check_embedding(out):
    """The first step's four values against NumPy; training as plain."""
    x, y, weights = checks.embedding_data()
    weights = [w.astype(np.float64) for w in weights]
    rows = [(x[:7], y[:7]), (x[:3], y[:3]), (x[3:7], y[3:7])]
    g, g1, g2 = ([np.concatenate([d.ravel() for d in embedding_gradient(
        xs, ys, weights)]) for xs, ys in rows])
    want = [(g1 @ g1 + g2 @ g2) / 2, g @ g, 2 / (1 / 3 + 1 / 4), 7]
    measured, plain = out
    np.testing.assert_allclose(measured["logs"][0], want, rtol=1e-5)
    for got, expected in zip(measured["weights"], plain["weights"]):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(measured["history"]["loss"],
                               plain["history"]["loss"], rtol=1e-5)


def check_batch_norm(out):
    """Momentum 0.5 from 0, one step of 8 rows: the moving mean is updated
    by the first half (rows 0-3), then by the second (rows 4-7)."""
    x = np.array(out["x"])
    want = 0.25 * x[:4].mean(axis=0) + 0.5 * x[4:].mean(axis=0)
    np.testing.assert_allclose(out["moving_mean"], want, rtol=1e-5)
    (small_sq, big_sq, small_batch, big_batch), = out["logs"]
    assert np.isfinite([small_sq, big_sq]).all() and small_sq > 0
    assert (small_batch, big_batch) == (4, 8)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_measuring_step_on_tensorflow(jit_compile):
    check_least_squares(checks.least_squares(jit_compile=jit_compile))


def test_nested_data_embedding_batch_norm_and_one_row_on_tensorflow():
    # Batches of one size: a smaller last batch makes TensorFlow retrace
    # with an unknown batch size, and Keras then weights its per-output loss
    # logs ("u_loss") 1 per update, which counts each half as a batch.
    check_structured(checks.structured(rows=18), rows=18)
    check_embedding(checks.embedding())
    check_batch_norm(checks.batch_norm())
    kind, message = checks.one_row()  # an assertion in the traced step
    assert kind in ("ValueError", "InvalidArgumentError")
    assert "needs batches (per replica) of at least 2 rows" in message


def _on_backend(backend, *checks, extra_env=None):
    return checks_on_backend("tests.keras_legw.noise_step_checks", backend, *checks,
                             extra_env=extra_env)


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_measuring_step_on_another_backend(backend):
    """All the checks in one process; on JAX with two host devices, for
    DataParallel (whose values are the global batch's)."""
    names = ["least_squares", "structured", "embedding", "batch_norm",
             "one_row"]
    env = {}
    if backend == "jax":
        names.append("data_parallel")
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    out = _on_backend(backend, *names, extra_env=env)
    assert out["tensorflow_at_import"] is False
    check_least_squares(out["least_squares"])
    check_structured(out["structured"])
    check_embedding(out["embedding"])
    check_batch_norm(out["batch_norm"])
    assert out["one_row"][0] == "ValueError"
    assert "Received: a batch of 1 row(s)" in out["one_row"][1]
    if backend == "jax":
        assert out["data_parallel"]["devices"] == 2
        check_least_squares(out["data_parallel"], rows=20, batch_size=8)


def test_mirrored_strategy_measures_per_replica():
    """Batches of 14 rows on two replicas: each replica measures its 7 rows
    (halves of 3 and 4); Keras averages the logs over the replicas."""
    x, y = least_squares_data(2, n=28)
    runs, measure = [], checks.Measure()
    for callbacks in ([measure], []):
        with two_cpu_mirrored_strategy().scope():
            model = least_squares_model(checks.DELTA, learning_rate=0.1)
        history = model.fit(x, y, batch_size=14, epochs=1, verbose=0,
                            shuffle=False, callbacks=callbacks)
        runs.append((model.get_weights()[0].ravel(), history.history))
    want_logs, want_w = sgd_reference(x, y, 1 + checks.DELTA, 14, 0.1,
                                      replicas=2)
    (measured_w, measured_h), (plain_w, plain_h) = runs
    np.testing.assert_allclose(measured_w, plain_w, rtol=1e-5)
    np.testing.assert_allclose(measured_w, want_w, rtol=1e-5)
    np.testing.assert_allclose(measured_h["loss"], plain_h["loss"], rtol=1e-5)
    np.testing.assert_allclose(measure.logs, want_logs, rtol=1e-5)
    assert want_logs[:, 2:].tolist() == [[2 / (1 / 3 + 1 / 4), 7]] * 2


class OwnStep(keras.Sequential):
    def train_step(self, data):
        return super().train_step(data)


def _compiled(optimizer=None, model=None, **compile_kwargs):
    model = model or keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer or keras.optimizers.SGD(0.1), "mse",
                  **compile_kwargs)
    return model


def _frozen():
    model = _compiled()
    model.trainable = False
    return _compiled(model=model)


UNSUPPORTED = dict(
    loss_scale_optimizer=(
        lambda: _compiled(keras.optimizers.LossScaleOptimizer(
            keras.optimizers.SGD(0.1))),
        r"^Argument `optimizer` must not scale the loss \(the measured "
        r"gradients would carry the loss scale\)\. Received: "
        r"optimizer=LossScaleOptimizer \(loss scaling, "
        r"loss_scale_factor=None\); use \"mixed_bfloat16\""),
    loss_scale_factor=(
        lambda: _compiled(keras.optimizers.SGD(0.1, loss_scale_factor=64.0)),
        r"^Argument `optimizer` must not scale the loss .* Received: "
        r"optimizer=SGD \(loss scaling, loss_scale_factor=64\.0\)"),
    gradient_accumulation=(
        lambda: _compiled(keras.optimizers.SGD(
            0.1, gradient_accumulation_steps=2)),
        r"^Argument `optimizer` must apply each step's gradient: the "
        r"measuring step does not support gradient accumulation\. "
        r"Received: gradient_accumulation_steps=2$"),
    steps_per_execution=(
        lambda: _compiled(steps_per_execution=2),
        r"^Argument `model` must be compiled with steps_per_execution=1: "
        r"callbacks see only the last step's logs of an execution\. "
        r"Received: steps_per_execution=2$"),
    no_trainable_weights=(
        _frozen,
        r"^Argument `model` must have trainable weights\. Received: "
        r"model='sequential.*' with none$"),
    not_compiled=(
        lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]),
        r"^Argument `model` must be a compiled Keras model\. Received: "
        r"model='sequential.*', not compiled$"),
    own_train_step=(
        lambda: _compiled(model=OwnStep([keras.Input((4,)),
                                         keras.layers.Dense(1)])),
        r"^Argument `model` must use Keras' own `train_step`; the measuring "
        r"step would replace this one\. Received: a model whose class "
        r"OwnStep overrides `train_step`$"),
)


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_what_it_does_not_support_raises(case):
    make_model, message = UNSUPPORTED[case]
    model = make_model()
    with pytest.raises(ValueError, match=message):
        install_measuring_step(model)
    assert "train_step" not in vars(model)


def test_an_unsupported_model_stops_fit_from_the_callback():
    x, y = least_squares_data(0, n=8)
    with pytest.raises(ValueError, match=r"steps_per_execution=1"):
        _compiled(steps_per_execution=2).fit(
            x, y, batch_size=4, verbose=0, callbacks=[checks.Measure()])
