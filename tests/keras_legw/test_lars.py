"""LARS against a NumPy transcription of the update, for two steps."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_legw
from tests.conftest import two_cpu_mirrored_strategy


def lars_numpy(weights, grads_per_step, *, lr, momentum, weight_decay,
               trust_coefficient, epsilon, nesterov, decay, adapt):
    """The issue's LARS update in float64. `decay`/`adapt`: per-variable
    flags (False = excluded)."""
    weights = [w.astype(np.float64).copy() for w in weights]
    velocity = [np.zeros_like(w) for w in weights]
    for grads in grads_per_step:
        for i, (w, g) in enumerate(zip(weights, grads)):
            g = g.astype(np.float64)
            if decay[i]:
                g = g + weight_decay * w
            w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
            ratio = 1.0
            if adapt[i] and w_norm > 0 and g_norm > 0:
                ratio = trust_coefficient * w_norm / (g_norm + epsilon)
            velocity[i] = momentum * velocity[i] + lr * ratio * g
            if nesterov:
                w -= momentum * velocity[i] + lr * ratio * g
            else:
                w -= velocity[i]
    return weights


def _model():
    keras.utils.set_random_seed(3)
    return keras.Sequential(name="net", layers=[
        keras.Input((5,)),
        keras.layers.Dense(4, bias_initializer="ones", name="hidden"),
        keras.layers.Dense(3, bias_initializer="zeros", name="head"),
    ])


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("epsilon", [0.0, 1e-3])
def test_two_steps_match_numpy_with_exclusions(nesterov, epsilon):
    model = _model()
    variables = model.trainable_variables
    assert [v.path for v in variables] == [
        "net/hidden/kernel", "net/hidden/bias", "net/head/kernel", "net/head/bias"]
    rng = np.random.default_rng(0)
    grads = [[rng.normal(size=v.shape).astype(np.float32) for v in variables]
             for _ in range(2)]
    grads[0][3][:] = 0.0  # a zero gradient: trust ratio falls back to 1
    hyper = dict(lr=0.5, momentum=0.9, weight_decay=0.01,
                 trust_coefficient=0.02, epsilon=epsilon, nesterov=nesterov)
    expected = lars_numpy(
        [v.numpy() for v in variables], grads, **hyper,
        decay=[True, False, True, False],        # "bias" excluded
        adapt=[True, True, False, False])        # "head" excluded
    optimizer = keras_legw.LARS(
        learning_rate=0.5, momentum=0.9, weight_decay=0.01,
        trust_coefficient=0.02, epsilon=epsilon, nesterov=nesterov,
        exclude_from_weight_decay=["bias"],
        exclude_from_layer_adaptation=["head/"])
    for step_grads in grads:
        optimizer.apply_gradients(zip(step_grads, variables))
    for got, want in zip(variables, expected):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_weight_decay_is_coupled_not_decoupled():
    """With a zero gradient only weight decay moves w: by lr * r * wd * w with
    r = eta * |w| / |wd * w| = eta / wd, i.e. w * (1 - lr * eta)."""
    w = keras.Variable(np.array([3.0, 4.0], np.float32))
    optimizer = keras_legw.LARS(0.1, momentum=0.0, weight_decay=0.5,
                                trust_coefficient=0.01)
    optimizer.apply_gradients([(np.zeros(2, np.float32), w)])
    np.testing.assert_allclose(w.numpy(), [3.0 * (1 - 0.001), 4.0 * (1 - 0.001)],
                               rtol=1e-6)
    assert optimizer.get_config()["weight_decay"] == 0.5
    assert optimizer.weight_decay is None  # the base class's decay stays off


def _fit(strategy, jit_compile):
    schedule = keras_legw.LEGW(1.0, base_batch_size=16, batch_size=32,
                               base_warmup_epochs=0.5, num_examples=256,
                               total_epochs=8)
    with strategy.scope():
        model = _model()
        model.compile(keras_legw.LARS(schedule, weight_decay=1e-4,
                                      exclude_from_weight_decay=["bias"]),
                      loss="mse", jit_compile=jit_compile)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 5)).astype(np.float32)
    y = x[:, :3] * 2.0
    history = model.fit(x, y, batch_size=32, epochs=8, shuffle=False,
                        verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 64
    return history.history["loss"], model.get_weights()


def test_fit_under_mirrored_strategy_matches_one_device():
    """model.fit with LARS(LEGW) on two replicas trains and gives the weights
    of a one-device run (the all-reduced gradient is the global one)."""
    mirrored_loss, mirrored = _fit(
        two_cpu_mirrored_strategy(), False)
    _, single = _fit(tf.distribute.OneDeviceStrategy("/cpu:0"), False)
    assert mirrored_loss[-1] < 0.5 * mirrored_loss[0]
    for a, b in zip(mirrored, single):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_fit_under_xla_matches_eager_graph():
    _, compiled = _fit(tf.distribute.get_strategy(), True)
    _, plain = _fit(tf.distribute.get_strategy(), False)
    for a, b in zip(compiled, plain):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_config_round_trip_with_schedule():
    schedule = keras_legw.LEGW(4.0, 512, 32768, 0.15625, 1281167, 90)
    optimizer = keras_legw.LARS(schedule, momentum=0.9, weight_decay=1e-4,
                                nesterov=True,
                                exclude_from_weight_decay=["bias", "batch_norm"],
                                exclude_from_layer_adaptation=["bias"])
    config = keras.optimizers.serialize(optimizer)
    restored = keras.optimizers.deserialize(config)
    assert isinstance(restored, keras_legw.LARS)
    assert restored.get_config() == optimizer.get_config()
    assert restored.get_config()["exclude_from_weight_decay"] == [
        "bias", "batch_norm"]
    assert restored.get_config()["exclude_from_layer_adaptation"] == ["bias"]
    assert isinstance(restored._learning_rate, keras_legw.LEGW)


@pytest.mark.parametrize("kwargs,argument", [
    (dict(momentum=1.0), "momentum"),
    (dict(momentum=-0.1), "momentum"),
    (dict(weight_decay=-1e-4), "weight_decay"),
    (dict(trust_coefficient=0.0), "trust_coefficient"),
    (dict(epsilon=-1.0), "epsilon"),
    (dict(exclude_from_weight_decay=["(bias"]), "exclude_from_weight_decay"),
    (dict(exclude_from_layer_adaptation=[3]), "exclude_from_layer_adaptation"),
])
def test_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`.*Received: {argument}="):
        keras_legw.LARS(0.1, **kwargs)


def test_zero_weight_norm_on_an_adapted_variable_uses_ratio_one():
    """A variable that starts at zero (|w| = 0) and is adapted takes the plain
    step lr * g (ratio 1); a zero gradient with epsilon 0 stays finite."""
    rng = np.random.default_rng(5)
    zero = keras.Variable(np.zeros((3, 2), np.float32), name="zero_kernel")
    still = keras.Variable(rng.normal(size=(4,)).astype(np.float32),
                           name="still_kernel")
    grads = [[rng.normal(size=(3, 2)).astype(np.float32),
              np.zeros(4, np.float32)] for _ in range(2)]
    hyper = dict(lr=0.5, momentum=0.9, weight_decay=0.0,
                 trust_coefficient=0.02, epsilon=0.0, nesterov=False)
    expected = lars_numpy([zero.numpy(), still.numpy()], grads, **hyper,
                          decay=[True, True], adapt=[True, True])
    assert np.abs(expected[0]).max() > 0
    optimizer = keras_legw.LARS(learning_rate=0.5, momentum=0.9,
                                trust_coefficient=0.02)
    for step_grads in grads:
        optimizer.apply_gradients(zip(step_grads, [zero, still]))
    for got, want in zip([zero, still], expected):
        assert np.all(np.isfinite(got.numpy()))
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-7)


def test_resnet50_exclusions_match_batch_norm_and_bias_variables():
    """The zoo's exclusions against ResNet-50's real variable paths: exactly
    the batch-norm variables and the biases skip decay and adaptation (the
    reference is each variable's layer type, not a regex)."""
    from models.resnet50 import EXCLUDED
    from models.resnet50_model import build_resnet50

    model = build_resnet50(image_size=32, num_classes=10)
    optimizer = keras_legw.LARS(0.1, weight_decay=1e-4,
                                exclude_from_weight_decay=EXCLUDED,
                                exclude_from_layer_adaptation=EXCLUDED)
    optimizer.build(model.trainable_variables)
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    seen = 0
    for layer in model.layers:
        for variable in layer.trainable_weights:
            excluded = (isinstance(layer, keras.layers.BatchNormalization)
                        or variable is getattr(layer, "bias", None))
            i = index[id(variable)]
            assert optimizer._use_decay[i] is not excluded, variable.path
            assert optimizer._use_adaptation[i] is not excluded, variable.path
            seen += 1
    assert seen == len(model.trainable_variables) == 161
    assert sum(optimizer._use_decay) == 54  # 53 convolutions and the logits


def test_float64_variables_update_in_float64():
    """Every factor is cast to the variable's dtype: float64 variables match
    the float64 transcription to 1e-14. (The rate is 0.125, which the base
    optimizer's float32 rate holds exactly; a weight decay of 0.3 or a
    gradient cast to float32 would show at about 1e-9.)"""
    rng = np.random.default_rng(6)
    variables = [keras.Variable(rng.normal(size=(3, 2)), dtype="float64",
                                name="kernel"),
                 keras.Variable(rng.normal(size=(2,)), dtype="float64",
                                name="bias")]
    grads = [[rng.normal(size=v.shape) for v in variables] for _ in range(2)]
    hyper = dict(lr=0.125, momentum=0.9, weight_decay=0.3,
                 trust_coefficient=0.03, epsilon=1e-3, nesterov=False)
    expected = lars_numpy([v.numpy() for v in variables], grads, **hyper,
                          decay=[True, True], adapt=[True, True])
    optimizer = keras_legw.LARS(learning_rate=0.125, momentum=0.9,
                                weight_decay=0.3, trust_coefficient=0.03,
                                epsilon=1e-3)
    for step_grads in grads:
        optimizer.apply_gradients(zip(step_grads, variables))
    for got, want in zip(variables, expected):
        assert got.dtype == "float64"
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-14, atol=0)


def test_one_pattern_as_a_string_and_the_slot_names():
    """A single regex may be given as a string; the momentum slots are named
    like Keras SGD's (`<variable>_momentum`), which checkpoints rely on."""
    model = _model()
    variables = model.trainable_variables
    as_string = keras_legw.LARS(0.1, exclude_from_weight_decay="bias",
                                exclude_from_layer_adaptation="head/")
    as_list = keras_legw.LARS(0.1, exclude_from_weight_decay=["bias"],
                              exclude_from_layer_adaptation=["head/"])
    for optimizer in (as_string, as_list):
        optimizer.build(variables)
    assert as_string._use_decay == as_list._use_decay == [
        True, False, True, False]
    assert as_string._use_adaptation == [True, True, False, False]
    assert [v.path for v in as_string.variables[2:]] == [
        "LARS/net_hidden_kernel_momentum", "LARS/net_hidden_bias_momentum",
        "LARS/net_head_kernel_momentum", "LARS/net_head_bias_momentum"]


def test_base_optimizer_arguments_reach_keras():
    """`global_clipnorm` and friends go to keras.optimizers.Optimizer: with
    no adaptation and no momentum the step is lr * g * min(1, c / |g|)."""
    w = keras.Variable(np.array([3.0, 4.0], np.float32), name="w")
    optimizer = keras_legw.LARS(0.5, momentum=0.0, global_clipnorm=1.0,
                                exclude_from_layer_adaptation=["w"])
    optimizer.apply_gradients([(np.array([6.0, 8.0], np.float32), w)])
    np.testing.assert_allclose(w.numpy(), [3.0 - 0.5 * 0.6, 4.0 - 0.5 * 0.8],
                               rtol=1e-6)
    assert optimizer.get_config()["global_clipnorm"] == 1.0
