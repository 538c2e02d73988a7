"""AutoWarmup: switches where the loss stops falling, at the cap when it
keeps falling, never on noise alone; the GP pieces against closed forms; a
real `model.fit`; the argument errors."""

import math
import re
import types

import keras
import numpy as np
import pytest

import keras_legw
from keras_legw import autowarmup

TOTAL, CAP = 2000, 1000  # max_warmup_fraction 0.5


def _run(loss_of_rate, noise=0.02, seed=0, every=100):
    """Drives the controller with loss = loss_of_rate(rate) + noise, checks
    every `every` steps, until the warmup ends."""
    rng = np.random.default_rng(seed)
    controller = keras_legw.AutoWarmupController(
        TOTAL, min_learning_rate=1e-5, max_learning_rate=1.0,
        max_warmup_fraction=0.5, seed=seed)
    step, controller.checks = 0, []
    while controller.warmup_steps is None:
        rate = controller.learning_rate(step)
        controller.observe(loss_of_rate(rate) + noise * rng.normal())
        step += 1
        if step % every == 0:
            controller.checks.append(controller.check())
    return controller


def test_warmup_rate_is_exponential_from_min_to_max_at_the_cap():
    controller = keras_legw.AutoWarmupController(TOTAL, 1e-5, 1.0, 0.5)
    assert controller.max_warmup_steps == CAP
    steps = np.array([0, 1, 250, 500, 999, 1000, 1500])
    want = np.minimum(1e-5 * (1e5 ** (1 / CAP)) ** steps, 1.0)
    got = [controller.learning_rate(s) for s in steps]
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_a_loss_that_falls_then_rises_switches_near_its_minimum():
    # Minimum of the loss at rate 1e-2, reached at step 600 of the warmup.
    controller = _run(lambda r: (math.log10(r) + 2.0) ** 2 / 4)
    assert 600 < controller.warmup_steps <= 900  # 3 checks past the minimum
    # It waited for 3 positive checks in a row.
    assert controller.checks[-3:] == [True] * 3
    assert controller.warmup_steps == 100 * len(controller.checks)
    assert 10 ** -2.5 < controller.peak_learning_rate < 10 ** -1.5


def test_a_loss_that_keeps_falling_switches_at_the_cap():
    controller = _run(lambda r: -math.log10(r))
    assert controller.warmup_steps == CAP
    assert controller.peak_learning_rate == pytest.approx(1.0)


def test_noise_alone_does_not_switch():
    controller = _run(lambda r: 1.0, noise=0.3)
    assert controller.warmup_steps == CAP
    assert not any(controller.positives)


def test_decay_is_a_cosine_from_the_peak_to_zero():
    controller = keras_legw.AutoWarmupController(100, 1e-3, 1.0, 0.5)
    controller._switch(40, 0.3)
    # After the switch a check tests nothing: never positive.
    assert controller.check() is False and controller.positives == []
    for step, fraction in [(40, 0.0), (55, 0.25), (70, 0.5), (100, 1.0),
                           (130, 1.0)]:
        want = 0.3 * 0.5 * (1 + math.cos(math.pi * fraction))
        assert controller.learning_rate(step) == pytest.approx(want, abs=1e-12)


def test_past_minimum_probability_is_the_normal_cdf_of_the_best_gap():
    mean = np.array([1.0, 0.2, 0.8, 0.6])
    covariance = np.diag([0.1, 0.2, 0.05, 0.3])
    # P(f_1 < f_3) = Phi((0.6 - 0.2) / sqrt(0.2 + 0.3 + 1e-4)) is the best.
    z = 0.4 / math.sqrt(0.5 + 1e-4)
    want = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    assert autowarmup.past_minimum_probability(mean, covariance) == \
        pytest.approx(want, rel=1e-12)


def test_posterior_interpolates_noise_free_data_and_fit_finds_the_noise():
    x = np.linspace(0, 1, 40)
    y = np.sin(6 * x)
    mean, cov = autowarmup.posterior(x, y, x, 0.0, 1.0, 1e-8)
    np.testing.assert_allclose(mean, y, atol=1e-4)
    assert np.all(np.diag(cov) < 1e-4)
    rng = np.random.default_rng(0)
    noisy = np.sin(6 * x) + 0.5 * rng.normal(size=40)
    _, scale, noise = autowarmup.fit_gp(x, noisy / np.std(noisy))
    assert 0.05 < noise < 1.0 and scale > noise


def _correlation(a, b):
    """The RBF correlation of length scale 0.2, written out."""
    return np.exp(-np.subtract.outer(a, b) ** 2 / (2 * 0.2 ** 2))


def test_past_minimum_probability_counts_the_covariance():
    """``max_i Phi((m_k - m_i) / sqrt(C_ii + C_kk - 2 C_ik + 1e-4))``, with
    correlated points."""
    a = np.random.default_rng(1).normal(size=(5, 5))
    covariance = a @ a.T / 5
    mean = np.array([0.9, 0.1, 0.5, 0.3, 0.6])
    want = max(0.5 * (1 + math.erf((mean[4] - mean[i]) / math.sqrt(
        2 * (covariance[i, i] + covariance[4, 4] - 2 * covariance[i, 4]
             + 1e-4)))) for i in range(4))
    assert autowarmup.past_minimum_probability(mean, covariance) == \
        pytest.approx(want, rel=1e-12)


def test_posterior_is_the_gaussian_conditional():
    rng = np.random.default_rng(3)
    x, grid = rng.uniform(size=12), np.linspace(0, 1, 7)
    y = np.cos(5 * x) + 0.1 * rng.normal(size=12)
    mean, scale, noise = 0.3, 1.7, 0.05
    k_inv = np.linalg.inv(scale * _correlation(x, x) + noise * np.eye(12))
    k_star = scale * _correlation(x, grid)
    f_mean, f_cov = autowarmup.posterior(x, y, grid, mean, scale, noise)
    np.testing.assert_allclose(f_mean, mean + k_star.T @ k_inv @ (y - mean),
                               rtol=1e-9)
    np.testing.assert_allclose(
        f_cov, scale * _correlation(grid, grid) - k_star.T @ k_inv @ k_star,
        rtol=1e-9, atol=1e-12)


def test_fit_gp_maximises_the_marginal_likelihood_over_its_grid():
    """Against ``log N(y; m, s R + n I)`` evaluated directly at each pair of
    the grid (41 scales in [1e-3, 1e2] by 57 noises in [1e-6, 10], log
    spaced), m the constant mean that is best for the pair."""
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(size=30))
    y = 0.8 + np.sin(6 * x) + 0.3 * rng.normal(size=30)
    ones, best = np.ones(30), None
    for s in np.logspace(-3, 2, 41):
        for n in np.logspace(-6, 1, 57):
            k = s * _correlation(x, x) + n * np.eye(30)
            k_inv = np.linalg.inv(k)
            m = ones @ k_inv @ y / (ones @ k_inv @ ones)
            value = -0.5 * ((y - m) @ k_inv @ (y - m)
                            + np.linalg.slogdet(k)[1])
            if best is None or value > best[0]:
                best = (value, m, s, n)
    np.testing.assert_allclose(autowarmup.fit_gp(x, y), best[1:], rtol=1e-6)


def test_subsample_is_all_points_up_to_its_limit_else_a_sorted_draw():
    """Up to the limit the indices come back as they are and the rng is not
    drawn from (so a resumed run draws what the first one would); above it,
    `limit` distinct indices in order."""
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    indices = np.arange(100)
    assert autowarmup._subsample(rng, indices, 100) is indices
    assert rng.bit_generator.state == before
    drawn = autowarmup._subsample(rng, np.arange(101), 100)
    assert rng.bit_generator.state != before
    assert len(drawn) == len(np.unique(drawn)) == 100
    assert np.all(np.diff(drawn) > 0) and drawn[-1] <= 100


def test_state_round_trip_resumes_the_same_decisions():
    def drive(controller, steps, start=0):
        rng = np.random.default_rng(start)
        for step in range(start, start + steps):
            rate = controller.learning_rate(step)
            controller.observe((math.log10(rate) + 2.0) ** 2 / 4
                               + 0.02 * rng.normal())
            if (step + 1) % 100 == 0:
                controller.check()

    whole = keras_legw.AutoWarmupController(TOTAL, seed=3)
    drive(whole, 800)
    # Mid-streak: two positive checks, the third (step 900) switches.
    assert whole.positives == [False, True, True]
    resumed = keras_legw.AutoWarmupController(TOTAL, seed=3)
    resumed.set_state(whole.get_state())
    drive(whole, 200, start=800)
    drive(resumed, 200, start=800)
    assert resumed.get_state() == whole.get_state()
    assert resumed.warmup_steps == whole.warmup_steps is not None


def test_fit_with_a_diverging_rate_switches_below_it_and_ends_at_zero():
    """Least squares with SGD diverges above a rate of about 1 (the largest
    Hessian eigenvalue of the mean squared error on N(0, I) inputs is 2):
    the warmup must end before the cap at a lower rate, and the rate ends at
    0."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=512)
         ).astype("float32")[:, None]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    steps_per_epoch, epochs = 16, 40
    warmup = keras_legw.AutoWarmup(
        steps_per_epoch * epochs, min_learning_rate=1e-4,
        max_learning_rate=100.0, max_warmup_fraction=0.5,
        check_every_steps=8)
    assert warmup.warmup_steps is None and warmup.peak_learning_rate is None
    model.fit(x, y, batch_size=32, epochs=epochs, callbacks=[warmup],
              verbose=0)
    assert warmup.warmup_steps < steps_per_epoch * epochs // 2
    assert warmup.peak_learning_rate < 1.0
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0,
                                                                 abs=1e-12)


def test_a_schedule_in_the_optimizer_is_an_error():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(keras_legw.LEGW(
        0.1, 128, 128, 0.1, 1000, 5)), "mse")
    with pytest.raises(ValueError, match=(
            r"^AutoWarmup sets the optimizer's learning rate itself: build "
            r"the optimizer with a float learning rate, not the schedule "
            r"LEGW\.$")):
        model.fit(np.ones((8, 2)), np.ones((8, 1)), verbose=0,
                  callbacks=[keras_legw.AutoWarmup(100)])


_POSITIVE = "must be a positive number. Received: "
_FRACTION = ("must be in (0, 1] and leave at least one warmup step of the "
             "100. Received: ")


@pytest.mark.parametrize("kwargs,message", [
    (dict(total_steps=1), "`total_steps` must be an integer >= 2. "
     "Received: total_steps=1"),
    (dict(total_steps=10.0), "`total_steps` must be an integer >= 2. "
     "Received: total_steps=10.0"),
    (dict(min_learning_rate=0.0), f"`min_learning_rate` {_POSITIVE}"
     "min_learning_rate=0.0"),
    (dict(max_learning_rate=-1.0), f"`max_learning_rate` {_POSITIVE}"
     "max_learning_rate=-1.0"),
    (dict(min_learning_rate=0.1, max_learning_rate=0.1),
     "`max_learning_rate` must be larger than `min_learning_rate`. "
     "Received: max_learning_rate=0.1, min_learning_rate=0.1"),
    (dict(max_warmup_fraction=0.0), f"`max_warmup_fraction` {_POSITIVE}"
     "max_warmup_fraction=0.0"),
    (dict(max_warmup_fraction=1.5), f"`max_warmup_fraction` {_FRACTION}"
     "max_warmup_fraction=1.5"),
    (dict(max_warmup_fraction=0.001), f"`max_warmup_fraction` {_FRACTION}"
     "max_warmup_fraction=0.001"),
    (dict(divergence_factor=0.0), f"`divergence_factor` {_POSITIVE}"
     "divergence_factor=0.0"),
    (dict(check_every_steps=0), "`check_every_steps` must be a positive "
     "integer. Received: check_every_steps=0"),
    (dict(check_every_steps=2.5), "`check_every_steps` must be a positive "
     "integer. Received: check_every_steps=2.5"),
])
def test_bad_arguments_name_the_argument(kwargs, message):
    kwargs = {"total_steps": 100, **kwargs}
    with pytest.raises(ValueError, match=f"^Argument {re.escape(message)}$"):
        keras_legw.AutoWarmup(**kwargs)


def test_arguments_at_their_limits_are_accepted():
    """The smallest run (2 steps), a warmup of the whole run, a warmup of
    one step, and a divergence factor just above 1."""
    for kwargs in (dict(total_steps=2), dict(max_warmup_fraction=1.0),
                   dict(max_warmup_fraction=0.01), dict(divergence_factor=1.5),
                   dict(min_learning_rate=0.1, max_learning_rate=0.11)):
        controller = keras_legw.AutoWarmupController(
            **{"total_steps": 100, **kwargs})
        assert controller.max_warmup_steps == int(
            kwargs.get("max_warmup_fraction", 0.5)
            * kwargs.get("total_steps", 100))


def _numpy_rate(step, switch, peak, low=1e-5, high=1.0):
    """The schedule's closed form, transcribed: exponential warmup to the
    cap (CAP steps) and a cosine from there, or, once a switch is decided,
    the cosine from (switch, peak) to 0 at TOTAL (the peak before it)."""
    gamma = (high / low) ** (1.0 / CAP)
    if switch is None:
        if step < CAP:
            return min(low * gamma ** step, high)
        switch, peak = CAP, min(low * gamma ** CAP, high)
    done = min(max(step - switch, 0), TOTAL - switch) / (TOTAL - switch)
    return peak * 0.5 * (1.0 + math.cos(math.pi * done))


def test_schedule_follows_the_controller_before_and_after_a_switch():
    """The in-graph rate equals a NumPy transcription of the formula at
    every step, before any decision (warmup, then the cap's decay) and after
    a switch the controller made; a resumed copy (set_state) agrees."""
    schedule = keras_legw.AutoWarmupSchedule(TOTAL, max_warmup_fraction=0.5)
    schedule.build()
    steps = np.arange(0, TOTAL + 50, 7)  # and past the end
    got = keras.ops.convert_to_numpy(schedule(steps))
    want = [_numpy_rate(t, None, None) for t in steps]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)

    rates = [schedule.controller.learning_rate(t) for t in range(700)]
    schedule.observe([(math.log10(r) + 2.0) ** 2 for r in rates])  # min 0.01
    for _ in range(3):
        schedule.check()
    switch, peak = schedule.warmup_steps, schedule.peak_learning_rate
    assert switch == 700 and 0.002 < peak < 0.05
    got = keras.ops.convert_to_numpy(schedule(steps))
    want = [_numpy_rate(t, switch, peak) for t in steps]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert [schedule.controller.learning_rate(t) for t in (710, 1500)] == \
        pytest.approx([_numpy_rate(t, switch, peak) for t in (710, 1500)])

    resumed = keras_legw.AutoWarmupSchedule(TOTAL, max_warmup_fraction=0.5)
    resumed.build()
    resumed.set_state(schedule.get_state())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(resumed(steps)),
                               got, rtol=1e-6)
    with pytest.raises(ValueError, match=r"^AutoWarmupSchedule\.build\(\) "
                       r"must be called before the schedule is used\.$"):
        keras_legw.AutoWarmupSchedule(TOTAL)(3)
    # Its two variables are state, not weights.
    assert not schedule._switch_step.trainable
    assert not schedule._peak.trainable


def test_schedule_cosine_ends_at_zero_with_one_step_after_the_cap():
    """total_steps 2, cap 1: rate min, then max at the cap (the decay's
    start), then 0 at total_steps and after it."""
    schedule = keras_legw.AutoWarmupSchedule(2, 1e-3, 1.0, 0.5)
    schedule.build()
    got = keras.ops.convert_to_numpy(schedule(np.arange(5)))
    np.testing.assert_allclose(got, [1e-3, 1.0, 0.0, 0.0, 0.0], atol=1e-6)
    schedule.observe([1.0])  # the cap: the controller switches at step 1
    want = [1.0, 1.0, 0.0, 0.0, 0.0]  # the cosine from (1, 1.0) to (2, 0)
    np.testing.assert_allclose(
        [schedule.controller.learning_rate(t) for t in range(5)], want,
        atol=1e-12)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(schedule(np.arange(5))), want, atol=1e-6)


def _controller_fields(controller):
    return (controller.total_steps, controller.min_learning_rate,
            controller.max_learning_rate, controller.max_warmup_steps,
            controller.divergence_factor, controller.get_state())


@pytest.mark.parametrize("kwargs", [
    {}, dict(min_learning_rate=1e-4, max_learning_rate=3.0,
             max_warmup_fraction=0.25, seed=7, divergence_factor=9.0)])
def test_callback_and_schedule_build_the_controller_they_are_given(kwargs):
    """Defaults and arguments reach the controller unchanged (its seed
    too: the rng state), and the schedule's config is its arguments."""
    want = _controller_fields(keras_legw.AutoWarmupController(TOTAL,
                                                              **kwargs))
    schedule = keras_legw.AutoWarmupSchedule(TOTAL, check_every_steps=4,
                                             **kwargs)
    callback = keras_legw.AutoWarmup(TOTAL, check_every_steps=4, **kwargs)
    assert _controller_fields(schedule.controller) == want
    assert _controller_fields(callback.controller) == want
    if kwargs:
        config = dict(total_steps=TOTAL, check_every_steps=4, **kwargs)
        assert schedule.get_config() == config
        copy = keras_legw.AutoWarmupSchedule.from_config(config)
        assert _controller_fields(copy.controller) == want


def test_callback_recovers_each_loss_and_tests_at_its_cadence_only():
    """Driven as `model.fit` drives it (`logs["loss"]` the running mean of
    the epoch, epochs of 25 steps), the controller sees each step's loss,
    and the GP test runs at the multiples of `check_every_steps` alone, not
    at epoch ends; the optimizer follows the controller's rate."""
    total, every, per_epoch = 400, 10, 25   # the cap is step 200
    warmup = keras_legw.AutoWarmup(total, 1e-5, 1.0, 0.5,
                                   check_every_steps=every)
    model = types.SimpleNamespace(
        optimizer=types.SimpleNamespace(learning_rate=None))
    warmup.set_model(model)
    checked, check = [], warmup.controller.check
    warmup.controller.check = lambda: checked.append(warmup.step) or check()
    rng, losses = np.random.default_rng(0), []
    warmup.on_train_begin()
    for epoch in range(total // per_epoch):
        warmup.on_epoch_begin(epoch)
        for batch in range(per_epoch):
            rate = model.optimizer.learning_rate
            # Lowest at rate 10**-2.5 (step 100); never 4x the start's.
            losses.append(1.0 + (math.log10(rate) + 2.5) ** 2 / 8
                          + 0.02 * rng.normal())
            warmup.on_train_batch_end(batch, {"loss": np.mean(
                losses[epoch * per_epoch:])})
        warmup.on_epoch_end(epoch)
    switch = warmup.warmup_steps
    assert 100 < switch < 200 and not warmup.controller.diverged
    np.testing.assert_allclose(warmup.controller.losses, losses[:switch],
                               rtol=1e-9)
    assert checked == list(range(every, total + 1, every))
    assert switch % every == 0  # at a test, not a blow-up
    assert model.optimizer.learning_rate == warmup.controller.learning_rate(
        total)


def test_schedule_says_when_a_loop_checks():
    """At epoch ends by default; with check_every_steps, at its multiples,
    and the next one is where a loop's compiled call must stop."""
    by_epoch = keras_legw.AutoWarmupSchedule(TOTAL)
    assert by_epoch.is_check_step(10, True) and not by_epoch.is_check_step(
        10, False)
    # While warming, every step (the blow-up test sees each loss); then
    # the check cadence.
    assert by_epoch.next_check_step(10) == 11
    by_epoch.controller._switch(5, 0.1)
    assert by_epoch.next_check_step(10) is None
    every = keras_legw.AutoWarmupSchedule(TOTAL, check_every_steps=25)
    assert [s for s in range(1, 101) if every.is_check_step(s, s == 60)] == [
        25, 50, 75, 100]
    assert every.next_check_step(24) == 25
    every.controller._switch(5, 0.1)
    assert [every.next_check_step(s) for s in (0, 24, 25, 26)] == [
        25, 25, 50, 50]
    assert every.get_config()["check_every_steps"] == 25
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="`check_every_steps`"):
            keras_legw.AutoWarmupSchedule(TOTAL, check_every_steps=bad)


def _least_squares_sgd(scale, every, seed=0, steps=400, batch=32):
    """SGD in float64 on least squares with inputs N(0, scale^2 I) in 4
    dimensions, noise 0.1, driven by the controller: the MSE's Hessian is
    2 scale^2 I, so SGD diverges above a rate of 1 / scale^2. Returns the
    controller and the loss on fresh data at the start and the end."""
    rng = np.random.default_rng(seed)
    w_true, w = np.array([1.0, -2.0, 0.5, 3.0]), np.zeros(4)
    controller = keras_legw.AutoWarmupController(
        steps, min_learning_rate=1e-5, max_learning_rate=1.0,
        max_warmup_fraction=0.5, seed=seed)

    def draw(n):
        x = scale * rng.normal(size=(n, 4))
        return x, x @ w_true + 0.1 * rng.normal(size=n)

    def loss(w, x, y):
        return float(np.mean((x @ w - y) ** 2))

    x_eval, y_eval = draw(4096)
    start = loss(w, x_eval, y_eval)
    for step in range(steps):
        x, y = draw(batch)
        rate = controller.learning_rate(step)
        with np.errstate(over="ignore", invalid="ignore"):
            controller.observe(loss(w, x, y))
            w = w - rate * 2.0 / batch * x.T @ (x @ w - y)
        if (step + 1) % every == 0:
            controller.check()
    with np.errstate(over="ignore", invalid="ignore"):
        return controller, start, loss(w, x_eval, y_eval)


@pytest.mark.parametrize("every", [1, 5, 10, 20])
@pytest.mark.parametrize("scale", [2.0, 3.0, 10.0])
def test_a_diverging_warmup_switches_below_the_divergence_rate(scale, every):
    """Whatever the test cadence, the warmup ends before the cap with a peak
    below 1 / scale^2, and the run ends finite and below its start loss."""
    controller, start, end = _least_squares_sgd(scale, every)
    assert controller.warmup_steps < controller.max_warmup_steps
    assert controller.peak_learning_rate < 1.0 / scale ** 2
    assert math.isfinite(end) and end < start
    assert end < 0.05  # near the noise floor (0.01)


def test_a_blow_up_switches_at_the_step_it_is_seen():
    """A non-finite loss, or a smoothed loss over 4x the start's, ends the
    warmup at that very step, not at a later check, and the peak is the
    rate at the minimum of the smoothed curve before it."""
    for blow_up in (math.inf, math.nan, 50.0):
        controller = keras_legw.AutoWarmupController(
            TOTAL, 1e-5, 1.0, 0.5)
        losses = [10.0 - 0.01 * t for t in range(300)] + [blow_up] * 3
        for t, value in enumerate(losses):
            controller.observe(value)
            if controller.warmup_steps is not None:
                break
        # Not finite: at once; 50 (> 4 x 9.99): once the median of the last
        # 3 losses is 50, at the second.
        assert controller.warmup_steps == (302 if blow_up == 50.0 else 301)
        assert controller.diverged
        resumed = keras_legw.AutoWarmupController(TOTAL, 1e-5, 1.0, 0.5)
        resumed.set_state(controller.get_state())
        assert resumed.diverged
        assert resumed.peak_learning_rate == controller.peak_learning_rate
        # A state saved before the blow-up test existed has no such key.
        legacy = {k: v for k, v in controller.get_state().items()
                  if k != "diverged"}
        resumed.set_state(legacy)
        assert not resumed.diverged
        # The curve fell until step 300: the smoothed minimum lies near it.
        assert (controller.warmup_rate(270) < controller.peak_learning_rate
                <= controller.warmup_rate(300))


@pytest.mark.parametrize("losses,factor,blow_up_step", [
    ([1.0, 1.0, 1.0, 4.0, 4.0, 4.0], 4.0, None),    # at 4x: not above it
    ([1.0, 1.0, 1.0, 4.01, 4.01], 4.0, 5),          # the median passes 4x
    ([1.0, 1.0, 1.0, 4.01, 1.0, 1.0, 4.01], 4.0, None),  # lone spikes
    ([1.0, 100.0, 1.0, 1.0, 5.0, 5.0], 4.0, 6),     # the start: a median
    ([1.0, 1.0, 1.0, 2.5, 2.5], 2.0, 5),            # the factor given
    ([0.0, 0.0, 0.0, 5.0, 5.0, 5.0], 4.0, None),    # start <= 0: no ratio
    ([-1.0, -1.0, -1.0, 5.0, 5.0, 5.0], 4.0, None),
])
def test_the_blow_up_is_a_median_of_3_above_factor_times_the_start(
        losses, factor, blow_up_step):
    controller = keras_legw.AutoWarmupController(
        TOTAL, divergence_factor=factor)
    for value in losses:
        controller.observe(value)
    assert controller.warmup_steps == blow_up_step
    assert controller.diverged is (blow_up_step is not None)


def test_the_gp_fits_the_log_of_a_positive_loss_else_a_robust_scale():
    losses = np.array([1.0, 10.0, 100.0, 1e30])
    y = autowarmup.gp_scale(losses)
    np.testing.assert_allclose(y, (np.log(losses) - np.log(losses).mean())
                               / np.log(losses).std())
    # Not all positive: arcsinh of the distance from the median in IQRs.
    mixed = np.array([-1.0, 0.0, 1.0, 2.0, 1e6])
    q25, q50, q75 = np.percentile(mixed, [25, 50, 75])
    robust = np.arcsinh((mixed - q50) / (q75 - q25))
    y = autowarmup.gp_scale(mixed)
    np.testing.assert_allclose(y, (robust - robust.mean()) / robust.std())
    # The one huge value leaves the rest their shape; standardising the raw
    # values (or any affine map of them) would put the four within 1e-5.
    assert np.ptp(y[:4]) > 0.2 and np.all(np.diff(y) > 0)
    # A zero is not positive (no log of 0), and an IQR of 0 counts as 1.
    flat = np.array([-1.0, 0.0, 0.0, 0.0, 0.0, 3.0])
    robust = np.arcsinh(flat)
    np.testing.assert_allclose(autowarmup.gp_scale(flat),
                               (robust - robust.mean()) / robust.std())
    zero = np.array([0.0, 1.0, 2.0, 3.0])
    robust = np.arcsinh((zero - 1.5) / 1.5)
    np.testing.assert_allclose(autowarmup.gp_scale(zero),
                               (robust - robust.mean()) / robust.std())


def test_divergence_factor_must_be_above_one():
    with pytest.raises(ValueError, match=r"^Argument `divergence_factor` "
                       r"must be above 1. Received: divergence_factor=1.0$"):
        keras_legw.AutoWarmupController(100, divergence_factor=1.0)


def test_the_issues_fit_switches_below_divergence_at_every_cadence():
    """The problem of issue 30 in `model.fit`: 4 inputs of scale 3, MSE,
    SGD, batch 32, 400 steps (diverges above 2 / 18 = 0.111)."""
    rng = np.random.default_rng(0)
    x = (3.0 * rng.normal(size=(32 * 400, 4))).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(
        size=len(x))).astype("float32")[:, None]
    for every in (5, 20):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(
            1, use_bias=False, kernel_initializer="zeros")])
        model.compile(keras.optimizers.SGD(1e-5), "mse")
        start = model.evaluate(x[:2048], y[:2048], verbose=0)
        warmup = keras_legw.AutoWarmup(400, 1e-5, 1.0, 0.5,
                                       check_every_steps=every)
        model.fit(x, y, batch_size=32, epochs=1, verbose=0,
                  callbacks=[warmup])
        end = model.evaluate(x[:2048], y[:2048], verbose=0)
        assert warmup.warmup_steps < 200 and warmup.peak_learning_rate < 0.111
        assert math.isfinite(end) and end < 0.05 < start


def test_a_check_fits_one_posterior_per_distinct_subsample(monkeypatch):
    """Up to CONDITION_POINTS (500) losses each of the five subsamples is
    all of them, so one posterior serves the five votes; beyond, each vote
    conditions on its own subsample of 500."""
    calls, grids, fitted = [], [], []
    posterior, fit_gp = autowarmup.posterior, autowarmup.fit_gp
    monkeypatch.setattr(autowarmup, "posterior", lambda x, y, grid, *rest: (
        calls.append(np.array(x)), grids.append(grid),
        posterior(x, y, grid, *rest))[2])
    monkeypatch.setattr(autowarmup, "fit_gp", lambda x, y: (
        fitted.append(len(x)), fit_gp(x, y))[1])
    rng = np.random.default_rng(0)
    for n, fits in ((300, 1), (900, 5)):
        calls.clear()
        controller = keras_legw.AutoWarmupController(TOTAL, seed=1)
        losses = 2.0 - np.sin(np.linspace(0, 3, n)) + 0.05 * rng.normal(
            size=n)
        votes, argmins = controller._test(losses)
        assert len(calls) == fits and len(argmins) == 5
        assert all(len(x) == min(n, 500) for x in calls)
        # The scale and noise come from 100 of the losses, and each mean
        # is read on 500 points from 0 to 1.
        assert fitted[-1] == 100
        np.testing.assert_array_equal(grids[-1], np.linspace(0, 1, 500))
        assert len({x.tobytes() for x in calls}) == fits
        assert votes in (0, autowarmup.NUM_FITS) if fits == 1 else (
            0 <= votes <= autowarmup.NUM_FITS)


def test_three_finite_losses_are_enough_for_a_test():
    controller = keras_legw.AutoWarmupController(TOTAL)
    assert controller._test([3.0, math.nan, 2.0]) == (None, [])
    votes, argmins = controller._test([3.0, math.nan, 2.0, 1.0])
    assert votes == 0 and len(argmins) == 5
    assert all(0.0 <= x <= 1.0 for x in argmins)


def test_a_check_is_positive_on_a_majority_of_the_five_fits():
    """Positive when at least 3 of the 5 fits vote; with fewer than 3
    losses there is nothing to fit and the check is negative."""
    controller = keras_legw.AutoWarmupController(TOTAL)
    controller.observe(2.0)
    controller.observe(1.0)
    assert controller.check() is False and controller.positives == []
    controller.observe(1.5)
    for votes, positive in [(0, False), (2, False), (3, True), (5, True)]:
        controller._test = lambda losses, v=votes: (v, [0.5] * 5)
        assert controller.check() is positive
    assert controller.positives == [False, True, True]
    assert controller.warmup_steps is None


def test_a_blow_up_peaks_at_the_smoothed_minimum_of_the_losses_before_it():
    """The peak is the rate at each fit's argmin x over the n - 1 losses
    before the blow-up (step x (n - 1)); with fewer than 3 of them there is
    no fit, and the peak is the minimum rate."""
    controller = keras_legw.AutoWarmupController(TOTAL, 1e-5, 1.0, 0.5)
    seen = []
    controller._test = lambda losses: (seen.append(len(losses)),
                                       (0, [0.5, 0.5, 0.25, 0.75, 0.5]))[1]
    for t in range(300):
        controller.observe(10.0 - 0.01 * t)
    controller.observe(math.inf)
    assert seen == [300] and controller.warmup_steps == 301
    want = np.mean([controller.warmup_rate(x * 300)
                    for x in (0.5, 0.5, 0.25, 0.75, 0.5)])
    assert controller.peak_learning_rate == pytest.approx(want, rel=1e-12)

    early = keras_legw.AutoWarmupController(TOTAL, 1e-5, 1.0, 0.5)
    early.observe(1.0)
    early.observe(math.nan)
    assert early.warmup_steps == 2 and early.peak_learning_rate == 1e-5
