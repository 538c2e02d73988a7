"""The LEGW learning-rate schedule for Keras 3, composed of small pieces.

`LEGW` is a `keras.optimizers.schedules.LearningRateSchedule`: pass it as the
optimizer's `learning_rate` and the optimizer calls it with its step counter.
It is the batch-size rules of `keras_legw.scaling` (peak and warmup length)
applied to two pure pieces, as optax composes its schedules: a linear warmup
(`linear_warmup`) joined at its end to a decay shape (`DECAY_SHAPES`), both
functions of the epoch. All math is in `keras.ops`, so it runs on every
Keras 3 backend, inside `tf.function(jit_compile=True)` and under
`tf.distribute` strategies.
"""

import math

import keras
from keras import ops

from keras_legw import scaling as rules
from keras_legw._validation import check_non_negative, check_one_of, check_positive



def linear_warmup(epoch, peak, warmup_epochs, after):
    """``peak * epoch / warmup_epochs`` while ``epoch < warmup_epochs``, then
    `after` (a tensor of the rate from the warmup's end on); `after` alone
    when there is no warmup."""
    if warmup_epochs == 0:
        return after
    return ops.where(epoch < warmup_epochs, peak * epoch / warmup_epochs,
                     after)


def constant_decay(t, since, peak, end):
    """The peak, whatever the progress."""
    del since, end
    return ops.full_like(t, peak)


def polynomial_decay(t, since, peak, end, power):
    """``end + (peak - end) * (1 - t) ** power``."""
    del since
    return end + (peak - end) * ops.power(1.0 - t, float(power))


def cosine_decay(t, since, peak, end):
    """``end + (peak - end) * (1 + cos(pi t)) / 2``."""
    del since
    return end + (peak - end) * 0.5 * (1.0 + ops.cos(math.pi * t))


def exponential_decay(t, since, peak, end, decay_rate, decay_epochs):
    """``end + (peak - end) * decay_rate ** (since / decay_epochs)``."""
    del t
    return end + (peak - end) * ops.power(float(decay_rate),
                                          since / float(decay_epochs))


# decay name: (shape, its own `LEGW` arguments). A shape takes t, the
# fraction of the decay done, in [0, 1]; since, the epochs since the warmup
# ended; the peak and the end rate; and its own arguments.
DECAY_SHAPES = {
    "constant": (constant_decay, ()),
    "polynomial": (polynomial_decay, ("power",)),
    "cosine": (cosine_decay, ()),
    "exponential": (exponential_decay, ("decay_rate", "decay_epochs")),
}
DECAYS = tuple(DECAY_SHAPES)


@keras.saving.register_keras_serializable(package="keras_legw")
class LEGW(keras.optimizers.schedules.LearningRateSchedule):
    """Linear-epoch gradual warmup (LEGW) with batch-size scaling of the peak.

    Hyperparameters tuned at a base batch ``B0`` carry over to a global batch
    ``B`` with no retuning (You et al., "Large-Batch Training for LSTM and
    Beyond", arXiv 1901.08256, SC'19):

        k = B / B0
        P = eta0 * sqrt(k)        (scaling="sqrt"; "linear": eta0 * k;
                                   "none": eta0; "noise": eta0 *
                                   (1 + Bn/B0) / (1 + Bn/B))
        W = w0 * k                (warmup_scaling="linear"; "none": w0)
        e = step * B / N          (the epoch reached at `step`)

        lr(e) = P * e / W                   for e < W
        lr(e) = decay(min(e, E))            for e >= W

    and, with ``t = (e - W) / (E - W)`` the fraction of the decay done,

        constant:     P
        polynomial:   L + (P - L) * (1 - t) ** power
        cosine:       L + (P - L) * 0.5 * (1 + cos(pi * t))
        exponential:  L + (P - L) * decay_rate ** ((e - W) / decay_epochs)

    Legend: ``eta0`` `base_learning_rate`; ``B0`` `base_batch_size`; ``B``
    `batch_size` (global, examples per optimizer step); ``w0``
    `base_warmup_epochs`; ``Bn`` `noise_scale`; ``N`` `num_examples`
    (training examples per epoch); ``E`` `total_epochs`; ``L``
    `end_learning_rate`; ``P`` the peak learning rate; ``W`` the warmup
    length in epochs. Epochs are measured in examples seen, so they may be
    fractional. After ``E`` epochs the rate stays at its end value.

    It is a `keras.optimizers.schedules.LearningRateSchedule`: pass it as the
    optimizer's `learning_rate` and the optimizer calls it with its step
    counter. The math is in `keras.ops` only, so it runs on every Keras 3
    backend; it runs in `model.fit`, inside `tf.function(jit_compile=True)`
    and under `tf.distribute.MirroredStrategy` (all three tested). The
    properties `peak_learning_rate`, `warmup_epochs`, `warmup_steps`,
    `total_steps` and `scale_factor` read what it computed.

    Examples:
        MNIST, tuned at batch 128, trained at 8192 = 64x:

        >>> schedule = LEGW(base_learning_rate=0.1, base_batch_size=128,
        ...                 batch_size=8192, base_warmup_epochs=0.2,
        ...                 num_examples=60000, total_epochs=25)
        >>> schedule.peak_learning_rate, schedule.warmup_epochs
        (0.8, 12.8)
        >>> optimizer = keras.optimizers.SGD(learning_rate=schedule,
        ...                                  momentum=0.9)

    Args:
        base_learning_rate (float): peak learning rate tuned at
            `base_batch_size`.
        base_batch_size (int): batch size the hyperparameters were tuned at.
        batch_size (int): global batch size of this run.
        base_warmup_epochs (float): warmup length, in epochs, tuned at
            `base_batch_size`; 0 for no warmup.
        num_examples (int): training examples in one epoch.
        total_epochs (float): length of the schedule in epochs.
        decay (str): one of "constant", "polynomial", "cosine",
            "exponential".
        power (float): exponent of the polynomial decay (> 0).
        end_learning_rate (float): rate that "polynomial", "cosine" and
            "exponential" decay towards (>= 0, at most the peak).
        scaling (str): peak-rate rule: "sqrt" (LEGW), "linear", "noise" (the
            optimal step of McCandlish et al. 2018, arXiv 1812.06162, taken
            relative to the base batch; see `scale_learning_rate`) or
            "none". The warmup follows `warmup_scaling` whatever the rule.
        warmup_scaling (str): warmup-length rule: "linear" (LEGW: warmup
            epochs grow with k) or "none" (constant-epoch warmup, as in
            Goyal et al.).
        decay_rate (float | None): "exponential" only: factor applied every
            `decay_epochs`, in (0, 1].
        decay_epochs (float | None): "exponential" only: epochs per factor
            of `decay_rate`.
        noise_scale (float | None): "noise" only: the gradient noise scale
            ``B_noise`` in examples, measured at `base_batch_size` (for
            example with `NoiseScaleEstimator`); > 0.
        name (str): name of the schedule.

    Raises:
        ValueError: at construction, for any invalid argument: one error
            naming it and the value received, e.g. ``Argument `batch_size`
            must be a positive number. Received: batch_size=-8``.
    """

    def __init__(
        self,
        base_learning_rate,
        base_batch_size,
        batch_size,
        base_warmup_epochs,
        num_examples,
        total_epochs,
        decay="polynomial",
        power=2.0,
        end_learning_rate=0.0,
        scaling="sqrt",
        warmup_scaling="linear",
        decay_rate=None,
        decay_epochs=None,
        noise_scale=None,
        name="LEGW",
    ):
        super().__init__()
        self.base_learning_rate = base_learning_rate
        self.base_batch_size = base_batch_size
        self.batch_size = batch_size
        self.base_warmup_epochs = base_warmup_epochs
        self.num_examples = num_examples
        self.total_epochs = total_epochs
        self.decay = decay
        self.power = power
        self.end_learning_rate = end_learning_rate
        self.scaling = scaling
        self.warmup_scaling = warmup_scaling
        self.decay_rate = decay_rate
        self.decay_epochs = decay_epochs
        self.noise_scale = noise_scale
        self.name = name

        self._k = rules.batch_scale_factor(base_batch_size, batch_size)
        self._peak = rules.scale_learning_rate(
            base_learning_rate, self._k, self.scaling,
            self._noise_scale_ratio(),
        )
        self._warmup_epochs = rules.scale_warmup_epochs(
            base_warmup_epochs, self._k, warmup_scaling
        )
        check_positive("num_examples", num_examples)
        check_positive("total_epochs", total_epochs)
        if self._warmup_epochs >= total_epochs:
            raise ValueError(
                "Argument `base_warmup_epochs` must give a warmup shorter than "
                "`total_epochs`; with warmup_scaling="
                f"{warmup_scaling!r} and k={self._k:g} the warmup is "
                f"{self._warmup_epochs:g} epochs. Use a smaller "
                "`base_warmup_epochs`, more `total_epochs` or a smaller "
                f"`batch_size`. Received: base_warmup_epochs="
                f"{base_warmup_epochs!r}, total_epochs={total_epochs!r}"
            )
        self._validate_decay()

    def _noise_scale_ratio(self):
        """``B_noise / B0`` for scaling="noise", else None (validated)."""
        if (self.noise_scale is not None) != (self.scaling == "noise"):
            raise ValueError(
                "Argument `noise_scale` is required with scaling='noise' and "
                f"only allowed with it. Received: noise_scale="
                f"{self.noise_scale!r} with scaling={self.scaling!r}"
            )
        if self.noise_scale is None:
            return None
        check_positive("noise_scale", self.noise_scale)
        return float(self.noise_scale) / float(self.base_batch_size)

    def _validate_decay(self):
        check_one_of("decay", self.decay, DECAYS)
        check_positive("power", self.power)
        check_non_negative("end_learning_rate", self.end_learning_rate)
        if self.end_learning_rate > self._peak:
            raise ValueError(
                "Argument `end_learning_rate` must not exceed the peak "
                f"learning rate {self._peak:g}. "
                f"Received: end_learning_rate={self.end_learning_rate!r}"
            )
        if self.end_learning_rate and self.decay == "constant":
            raise ValueError(
                "Argument `end_learning_rate` is not used by "
                "decay='constant'; leave it at 0. "
                f"Received: end_learning_rate={self.end_learning_rate!r}"
            )
        for arg in ("decay_rate", "decay_epochs"):
            given = getattr(self, arg) is not None
            if given != (self.decay == "exponential"):
                raise ValueError(
                    f"Argument `{arg}` is required with decay='exponential' "
                    f"and only allowed with it. Received: {arg}="
                    f"{getattr(self, arg)!r} with decay={self.decay!r}"
                )
        if self.decay == "exponential":
            check_positive("decay_rate", self.decay_rate)
            if self.decay_rate > 1:
                raise ValueError(
                    "Argument `decay_rate` must be in (0, 1]. "
                    f"Received: decay_rate={self.decay_rate!r}"
                )
            check_positive("decay_epochs", self.decay_epochs)

    @property
    def scale_factor(self):
        """The batch scale factor ``k = batch_size / base_batch_size``."""
        return self._k

    @property
    def peak_learning_rate(self):
        """The learning rate at the end of the warmup, ``P``."""
        return self._peak

    @property
    def warmup_epochs(self):
        """The warmup length in epochs, ``W``."""
        return self._warmup_epochs

    @property
    def warmup_steps(self):
        """The first step at which the rate reaches its peak."""
        return rules.whole_steps(
            self._warmup_epochs, self.num_examples, self.batch_size)

    @property
    def total_steps(self):
        """Steps that cover `total_epochs` epochs (rounded up)."""
        return rules.whole_steps(
            self.total_epochs, self.num_examples, self.batch_size)

    def __call__(self, step):
        epoch = ops.cast(step, "float32") * (
            float(self.batch_size) / float(self.num_examples)
        )
        warmup, total = self._warmup_epochs, float(self.total_epochs)
        since = ops.maximum(ops.minimum(epoch, total) - warmup, 0.0)
        shape, own = DECAY_SHAPES[self.decay]
        decayed = shape(since / (total - warmup), since, self._peak,
                        float(self.end_learning_rate),
                        *(getattr(self, name) for name in own))
        return linear_warmup(epoch, self._peak, warmup, decayed)

    def get_config(self):
        return {
            "base_learning_rate": self.base_learning_rate,
            "base_batch_size": self.base_batch_size,
            "batch_size": self.batch_size,
            "base_warmup_epochs": self.base_warmup_epochs,
            "num_examples": self.num_examples,
            "total_epochs": self.total_epochs,
            "decay": self.decay,
            "power": self.power,
            "end_learning_rate": self.end_learning_rate,
            "scaling": self.scaling,
            "warmup_scaling": self.warmup_scaling,
            "decay_rate": self.decay_rate,
            "decay_epochs": self.decay_epochs,
            "noise_scale": self.noise_scale,
            "name": self.name,
        }
