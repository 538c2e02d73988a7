"""LARS: layer-wise adaptive rate scaling (You, Gitman, Ginsburg 2017).

Keras 3 ships `keras.optimizers.Lamb` but no LARS, and tensorflow-addons (which
had one) cannot be installed beside Keras 3. This is the variant of the TPU /
MLPerf ResNet-50 reference, written with `keras.ops` only.
"""

import re

import keras
from keras import ops

from keras_legw._validation import check_non_negative, check_positive


def _compile_patterns(name, patterns):
    """Returns compiled regexes for `patterns` (None, a string or a list)."""
    if patterns is None:
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except (TypeError, re.error) as error:
            raise ValueError(
                f"Argument `{name}` must be a list of regular expressions. "
                f"Received: {name}={patterns!r} ({error})"
            ) from None
    return compiled


@keras.saving.register_keras_serializable(package="keras_legw")
class LARS(keras.optimizers.Optimizer):
    """Momentum SGD with a layer-wise trust ratio (LARS).

    A Keras 3 optimizer (Keras ships `keras.optimizers.Lamb` but no LARS).
    For each variable ``w`` with gradient ``g``:

        g <- g + weight_decay * w                 (unless excluded from decay)
        r  = trust_coefficient * |w| / (|g| + epsilon)   if |w| > 0 and |g| > 0
        r  = 1                                    otherwise, or if excluded
                                                  from layer adaptation
        v <- momentum * v + learning_rate * r * g
        w <- w - v                                (nesterov:
                                                   w <- w - (momentum * v
                                                   + learning_rate * r * g))

    ``|.|`` is the Euclidean (Frobenius) norm of the whole variable. This is
    the update of the TPU / MLPerf ResNet-50 reference LARS; the weight decay
    is coupled (added to the gradient before the trust ratio), so the base
    optimizer's decoupled `weight_decay` is not used.

    Exclusions are regular expressions searched (`re.search`) in each
    variable's `path` (for example ``"dense/bias"``), resolved once when the
    optimizer is built. Typical ResNet use excludes batch-norm and bias
    variables from both: ``exclude_from_weight_decay=["bias", "batch_norm"]``.

    Examples:
        >>> excluded = ["bias", "batch_norm"]
        >>> optimizer = LARS(learning_rate=LEGW(...), momentum=0.9,
        ...                  weight_decay=1e-4,
        ...                  exclude_from_weight_decay=excluded,
        ...                  exclude_from_layer_adaptation=excluded)

    Args:
        learning_rate (float | LearningRateSchedule): a float or a
            `keras.optimizers.schedules.LearningRateSchedule` (e.g. `LEGW`).
        momentum (float): momentum ``in [0, 1)``.
        weight_decay (float): coupled L2 weight decay, >= 0.
        trust_coefficient (float): the LARS coefficient ``eta``, > 0.
        epsilon (float): added to the gradient norm in the trust ratio;
            at least 0.
        nesterov (bool): use Nesterov momentum.
        exclude_from_weight_decay (str | list[str] | None): regexes of
            variable paths with no decay.
        exclude_from_layer_adaptation (str | list[str] | None): regexes of
            variable paths whose trust ratio is 1.
        name (str): the optimizer's name.
        **kwargs (Any): the base `keras.optimizers.Optimizer` arguments
            (`clipnorm`, `global_clipnorm`, ...), except `weight_decay`.

    Raises:
        ValueError: naming a bad argument (a momentum outside [0, 1), a
            negative `weight_decay` or `epsilon`, a `trust_coefficient`
            that is not positive, an exclusion that is not a regular
            expression).

    Reference: You, Gitman, Ginsburg, "Large Batch Training of Convolutional
    Networks", arXiv 1708.03888, 2017.
    """

    def __init__(
        self,
        learning_rate,
        momentum=0.9,
        weight_decay=0.0,
        trust_coefficient=0.001,
        epsilon=0.0,
        nesterov=False,
        exclude_from_weight_decay=None,
        exclude_from_layer_adaptation=None,
        name="LARS",
        **kwargs,
    ):
        # The base class's `weight_decay` is decoupled (AdamW style); LARS
        # couples it into the gradient, so the base one stays off.
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        check_non_negative("momentum", momentum)
        if momentum >= 1:
            raise ValueError(
                f"Argument `momentum` must be in [0, 1). Received: "
                f"momentum={momentum!r}"
            )
        check_non_negative("weight_decay", weight_decay)
        check_positive("trust_coefficient", trust_coefficient)
        check_non_negative("epsilon", epsilon)
        self.momentum = momentum
        self.lars_weight_decay = weight_decay
        self.trust_coefficient = trust_coefficient
        self.epsilon = epsilon
        self.nesterov = bool(nesterov)
        self.exclude_from_weight_decay = exclude_from_weight_decay
        self.exclude_from_layer_adaptation = exclude_from_layer_adaptation
        self._decay_patterns = _compile_patterns(
            "exclude_from_weight_decay", exclude_from_weight_decay
        )
        self._adaptation_patterns = _compile_patterns(
            "exclude_from_layer_adaptation", exclude_from_layer_adaptation
        )

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")
        # Resolved here, from the keras.Variable paths: under the TensorFlow
        # backend `update_step` may receive the backend variable, whose name
        # lacks the layer path.
        self._use_decay = [
            not any(p.search(v.path) for p in self._decay_patterns)
            for v in variables
        ]
        self._use_adaptation = [
            not any(p.search(v.path) for p in self._adaptation_patterns)
            for v in variables
        ]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        learning_rate = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        if self._use_decay[index] and self.lars_weight_decay > 0:
            gradient = gradient + ops.convert_to_tensor(
                self.lars_weight_decay, dtype) * variable
        if self._use_adaptation[index]:
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            g_norm = ops.sqrt(ops.sum(ops.square(gradient)))
            trust_ratio = ops.where(
                ops.logical_and(w_norm > 0, g_norm > 0),
                self.trust_coefficient * w_norm / (g_norm + self.epsilon),
                ops.ones_like(w_norm),
            )
            scaled = learning_rate * ops.cast(trust_ratio, dtype) * gradient
        else:
            scaled = learning_rate * gradient
        # convert_to_tensor, not cast: cast would round a Python float to
        # float32 (floatx) first, which float64 variables would notice.
        momentum = ops.convert_to_tensor(self.momentum, dtype)
        velocity = self.momentums[index]
        self.assign(velocity, momentum * velocity + scaled)
        if self.nesterov:
            self.assign_sub(variable, momentum * velocity + scaled)
        else:
            self.assign_sub(variable, velocity)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay": self.lars_weight_decay,
                "trust_coefficient": self.trust_coefficient,
                "epsilon": self.epsilon,
                "nesterov": self.nesterov,
                "exclude_from_weight_decay": self.exclude_from_weight_decay,
                "exclude_from_layer_adaptation": (
                    self.exclude_from_layer_adaptation
                ),
            }
        )
        return config
