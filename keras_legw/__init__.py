"""keras_legw: large-batch training for Keras 3 with LEGW.

LEGW (linear-epoch gradual warmup; You et al., "Large-Batch Training for LSTM
and Beyond", arXiv 1901.08256, SC'19): when the batch grows k-fold, multiply
the peak learning rate by sqrt(k) and the warmup length, in epochs, by k.

Public API:
    LEGW                      the learning-rate schedule
    recipe, goyal, RECIPES    named scaling recipes (legw, goyal, ...)
    StepsModel                steps and epochs to a target at any batch,
                              from the noise scale (the batch planner)
    profile_step_times, StepProfile, StepTimeModel, Interconnect
                              wall-clock and device-hours of a run on N
                              devices, from measured step times and the
                              all-reduce (the cluster planner)
    LARS                      layer-wise adaptive rate scaling optimizer
    AutoWarmup                adaptive warmup callback (Kim et al. 2021)
    AutoWarmupSchedule        the same as a schedule, for custom loops
    BatchRamp, NoiseBatchSchedule, batch_schedule, parse_batch_ramp
                              batch-size schedules: a fixed ramp, or one that
                              grows with the measured noise scale
    GrowingBatch, GrowingBatchDataset, GrowingBatchRate
                              training with a growing batch in model.fit
    BatchGrowth               the growing-batch engine that GrowingBatch and
                              the zoo's trainer drive (for your own loop)
    RateAtBatch               that rate as a schedule at one batch, for
                              custom loops (the zoo's trainer)
    noise_scale_estimates, NoiseScaleEstimator
                              the gradient noise scale (largest useful batch)
    measure_noise_scale, NoiseScaleCallback
                              the same for a compiled model / in model.fit
    batch_scale_factor, scale_learning_rate, scale_warmup_epochs,
    epochs_to_steps, steps_to_epochs, whole_steps
                              the scaling rules and unit conversion
"""

from keras_legw.autowarmup import (AutoWarmup, AutoWarmupController,
                                   AutoWarmupSchedule)
from keras_legw.batch_growth import BatchGrowth
from keras_legw.batch_schedules import (BatchRamp, NoiseBatchSchedule,
                                        batch_schedule, parse_batch_ramp)
from keras_legw.growing_batch import (GrowingBatch, GrowingBatchDataset,
                                      GrowingBatchRate, RateAtBatch)
from keras_legw.lars import LARS
from keras_legw.planner import StepsModel
from keras_legw.cluster import (Interconnect, StepProfile, StepTimeModel,
                                profile_step_times)
from keras_legw.recipes import RECIPES, goyal, recipe
from keras_legw.noise_scale import (NoiseScaleCallback, NoiseScaleEstimator,
                                    NoiseScaleResult, measure_noise_scale,
                                    noise_scale_estimates)
from keras_legw.scaling import (
    batch_scale_factor,
    epochs_to_steps,
    scale_learning_rate,
    scale_warmup_epochs,
    steps_to_epochs,
    whole_steps,
)
from keras_legw.schedules import LEGW

__version__ = "0.1.0"

__all__ = [
    "AutoWarmup",
    "AutoWarmupController",
    "AutoWarmupSchedule",
    "BatchGrowth",
    "BatchRamp",
    "GrowingBatch",
    "GrowingBatchDataset",
    "GrowingBatchRate",
    "RateAtBatch",
    "LARS",
    "LEGW",
    "NoiseBatchSchedule",
    "NoiseScaleCallback",
    "NoiseScaleEstimator",
    "NoiseScaleResult",
    "RECIPES",
    "StepsModel",
    "StepProfile",
    "StepTimeModel",
    "Interconnect",
    "profile_step_times",
    "batch_scale_factor",
    "batch_schedule",
    "epochs_to_steps",
    "goyal",
    "measure_noise_scale",
    "noise_scale_estimates",
    "parse_batch_ramp",
    "recipe",
    "scale_learning_rate",
    "scale_warmup_epochs",
    "steps_to_epochs",
    "whole_steps",
]
