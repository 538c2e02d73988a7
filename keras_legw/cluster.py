"""Plan a cluster run before booking it: the wall-clock and device-hours of a
batch schedule on 1 to N devices, from step times measured on one device and
a model of the gradient all-reduce.

    profile = profile_step_times(model, x, y, [16, 32, 64, 128])
    times = StepTimeModel(profile, INTERCONNECTS["nvlink4"])
    rows = plan_schedules(times, {"fixed 128": 128, "ramp": "0:256,3:8192"},
                          [1, 8, 64], num_examples=60000, epochs=25)

Data parallelism, synchronous: each of ``n`` devices computes the gradient of
``B / n`` examples of the global batch ``B``, then one all-reduce averages
the gradients. The time of one step is

    t(B, n) = m * t_c(B / (n m)) + t_ar(n)
    t_c(b)  = a + c b                     (compute, fitted to the profile)
    t_ar(n) = 2 (n - 1) / n * P / W + 2 (n - 1) * alpha      (t_ar(1) = 0)

with ``m`` micro-batches (gradient accumulation) when a device's share is
above `max_device_batch`, ``P`` the gradient's bytes (the trainable
weights'), ``W`` the interconnect's bus bandwidth and ``alpha`` its latency
per message. The all-reduce is the bandwidth-optimal ring (Patarasuk &
Yuan, "Bandwidth optimal all-reduce algorithms for clusters of
workstations", J. Parallel Distrib. Comput. 69(2), 2009): each device sends
and receives ``2 (n - 1) / n`` of the gradient, in ``2 (n - 1)`` messages.
``W`` is what NCCL's tests call the bus bandwidth (nccl-tests,
doc/PERFORMANCE.md: ``busbw = algbw * 2 (n - 1) / n`` for all-reduce), so a
measured ``busbw`` goes in as it is.

What it leaves out, each on the pessimistic side unless noted:

* No overlap of compute and communication: frameworks start reducing the
  last layers' gradients while the first layers' are computed (PyTorch DDP's
  buckets, Horovod's tensor fusion), so a real step may be shorter.
* One flat ring at one bandwidth: a cluster of nodes has fast links inside
  a node and slower ones between; give the slowest link a ring crosses
  (tree and torus all-reduces also pay less latency than ``2 (n - 1)``
  messages at large ``n``).
* The steps are those of a fixed number of epochs at every batch, not the
  steps to a quality target: a larger batch may need more epochs to reach
  the same accuracy (`keras_legw.StepsModel` predicts how many).
* The compute line is fitted over the profiled per-device batches; outside
  them it is an extrapolation, flagged on each plan row.
* Devices are independent: each computes its share as fast as the profiled
  device did alone. Logical devices that share a host's cores and memory
  bus (two replicas on one CPU) are slower than that (optimistic).
* ``P`` counts every trainable weight's gradient as dense; an embedding's
  gradient reduced as the rows used (TensorFlow's sparse gradients) moves
  less (pessimistic). One all-reduce's latency a step: a reduction of many
  tensors that is not fused pays more (optimistic).
* The profile times one `train_on_batch` call a step, so its intercept
  holds the per-call overhead that a loop of many steps per compiled call
  pays less often (pessimistic at small batches).
"""

import csv
import dataclasses
import math
import numbers
import platform
import time
from collections.abc import Mapping

import keras
import numpy as np

from keras_legw._validation import (check_non_negative, check_positive,
                                    check_positive_integer, csv_cell,
                                    read_csv_rows)
from keras_legw.batch_schedules import (BatchRamp, NoiseBatchSchedule,
                                        parse_batch_ramp)
from keras_legw.scaling import whole_steps

__all__ = ["StepProfile", "Interconnect", "INTERCONNECTS", "StepTimeModel",
           "PlanRow", "profile_step_times", "plan_schedules",
           "adaptive_stages", "read_noise_curve"]

PROFILE_COLUMNS = ("batch_size", "seconds_per_step", "param_bytes",
                   "backend", "device")


@dataclasses.dataclass(frozen=True)
class StepProfile:
    """Measured seconds of one training step at several per-device batches.

    Made by `profile_step_times`, saved and read back with `to_csv` and
    `read_csv` (columns batch_size, seconds_per_step, param_bytes, backend,
    device; one row per batch).

    Args:
        batch_sizes (tuple[int]): the per-device batches timed.
        seconds (tuple[float]): the seconds of one step at each, > 0.
        param_bytes (int): the bytes of the trainable weights, i.e. of the
            gradient that data parallelism all-reduces each step; >= 0.
        backend (str): the Keras backend that ran the steps.
        device (str): the device that ran them, in words.

    Raises:
        ValueError: for unmatched or empty lists, a batch that is not a
            positive integer, seconds that are not positive numbers.
    """

    batch_sizes: tuple
    seconds: tuple
    param_bytes: int
    backend: str = "unknown"
    device: str = "unknown"

    def __post_init__(self):
        batches, seconds = tuple(self.batch_sizes), tuple(self.seconds)
        if len(batches) != len(seconds) or not batches:
            raise ValueError(
                "Arguments `batch_sizes` and `seconds` must be two non-empty "
                f"lists of the same length. Received: {len(batches)} and "
                f"{len(seconds)} values")
        for batch in batches:
            check_positive_integer("batch_sizes", batch)
        for value in seconds:
            check_positive("seconds", value)
        check_positive_integer("param_bytes", self.param_bytes, minimum=0)
        object.__setattr__(self, "batch_sizes", tuple(map(int, batches)))
        object.__setattr__(self, "seconds", tuple(map(float, seconds)))
        object.__setattr__(self, "param_bytes", int(self.param_bytes))

    def to_csv(self, path):
        """Writes the profile to `path`, one row per batch."""
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(PROFILE_COLUMNS)
            for batch, seconds in zip(self.batch_sizes, self.seconds):
                writer.writerow([batch, repr(seconds), self.param_bytes,
                                 self.backend, self.device])

    @classmethod
    def read_csv(cls, path):
        """The profile saved at `path` by `to_csv` (or written by hand:
        backend and device may be left out).

        Raises:
            OSError: when the file cannot be read.
            ValueError: naming the file, and the line where a cell is
                missing or not a number, for a file without the columns or
                a row, or with rows of different param_bytes.
        """
        rows = read_csv_rows(path, PROFILE_COLUMNS[:3])
        cells = [(csv_cell(path, line, row, "batch_size", int),
                  csv_cell(path, line, row, "seconds_per_step", float),
                  csv_cell(path, line, row, "param_bytes", int))
                 for line, row in rows]
        if len({c[2] for c in cells}) > 1:
            raise ValueError(
                f"{path}: param_bytes must be the same on every row (one "
                "model). Received: "
                f"{sorted({c[2] for c in cells})}")
        first = rows[0][1]
        try:
            return cls([c[0] for c in cells], [c[1] for c in cells],
                       cells[0][2], first.get("backend") or "unknown",
                       first.get("device") or "unknown")
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


def profile_step_times(model, x, y, batch_sizes, repeats=5,
                       steps_per_repeat=3):
    """Times a compiled model's training step at each per-device batch.

    At each batch ``b`` it runs ``model.train_on_batch`` on the first ``b``
    rows of `x` and `y`: once to warm up (tracing and compilation are not
    timed), then `repeats` times `steps_per_repeat` steps; the seconds per
    step are the median over the repeats of each repeat's mean. Any backend:
    ``train_on_batch`` returns its logs as NumPy values, so each call ends
    when the device has finished the step.

    The model is left as it was given: its weights (trainable or not), its
    optimizer's variables (its step count and moments; an optimizer not yet
    built is built, at its initial state) and its metrics are restored
    afterwards, even when a step raises.

    Args:
        model (keras.Model): a compiled model (``model.compile(optimizer,
            loss)``).
        x: the inputs, an array (or a structure of arrays) with at least
            ``max(batch_sizes)`` rows.
        y: the targets, likewise.
        batch_sizes (list[int]): the per-device batches to time; at least
            two different ones.
        repeats (int): timed repeats per batch; the median is taken.
        steps_per_repeat (int): steps per timed repeat.

    Returns:
        StepProfile: the seconds per step, the gradient's bytes, the backend
            and the device.

    Raises:
        ValueError: for fewer than two different batches, a batch that is
            not a positive integer or is above the rows given, an
            uncompiled model.
    """
    batches = _check_profile_batches(batch_sizes, _num_rows(x))
    check_positive_integer("repeats", repeats)
    check_positive_integer("steps_per_repeat", steps_per_repeat)
    if not getattr(model, "compiled", False):
        raise ValueError("Argument `model` must be compiled: call "
                         "model.compile(optimizer, loss) first.")
    model.test_on_batch(_first_rows(x, batches[0]),
                        _first_rows(y, batches[0]))  # builds, trains nothing
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    state = _state_variables(model)
    saved = [np.array(keras.ops.convert_to_numpy(v)) for v in state]
    try:
        seconds = [_seconds_per_step(model, x, y, b, repeats,
                                     steps_per_repeat) for b in batches]
    finally:
        for variable, value in zip(state, saved):
            variable.assign(value)
    param_bytes = sum(np.asarray(keras.ops.convert_to_numpy(v)).nbytes
                      for v in model.trainable_variables)
    return StepProfile(batches, seconds, param_bytes,
                       keras.backend.backend(), _device_name())


def _num_rows(x):
    return len(keras.tree.flatten(x)[0])


def _first_rows(data, rows):
    return keras.tree.map_structure(
        lambda a: keras.ops.convert_to_tensor(a[:rows]), data)


def _check_profile_batches(batch_sizes, num_rows):
    batches = list(batch_sizes)
    for batch in batches:
        check_positive_integer("batch_sizes", batch)
    if len(set(batches)) < 2:
        raise ValueError(
            "Argument `batch_sizes` must hold at least two different "
            "batches, to fit the step time a + c b. Received: "
            f"batch_sizes={batches}")
    if max(batches) > num_rows:
        raise ValueError(
            f"Argument `batch_sizes` must be at most the {num_rows} rows of "
            f"x and y given. Received: batch_sizes={batches}")
    return batches


def _state_variables(model):
    """The model's, its optimizer's and its metrics' variables, once each."""
    found = {}
    for v in [*model.variables, *model.optimizer.variables,
              *getattr(model, "metrics_variables", [])]:
        found.setdefault(id(v), v)
    return list(found.values())


def _seconds_per_step(model, x, y, batch, repeats, steps):
    xb, yb = _first_rows(x, batch), _first_rows(y, batch)
    model.train_on_batch(xb, yb)  # warm-up: traces and compiles this shape
    means = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(xb, yb)
        means.append((time.perf_counter() - start) / steps)
    return float(np.median(means))


def _device_name():
    """The first accelerator of the backend, else the CPU, in words."""
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            return f"{device.platform}:{device.device_kind}"
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"cuda:{torch.cuda.get_device_name(0)}"
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return f"gpu:{details.get('device_name', 'unknown')}"
    except Exception:  # noqa: BLE001 - naming the device is best effort
        pass
    return f"cpu:{platform.processor() or platform.machine() or 'unknown'}"


@dataclasses.dataclass(frozen=True)
class Interconnect:
    """The link the gradient all-reduce runs over.

    Named presets, in ``keras_legw.cluster.INTERCONNECTS`` (and
    ``plan --cluster --interconnect NAME``); every latency is assumed, and
    the bandwidths are line rates or vendors' figures, not measurements:

        nvlink4          450 GB/s  3 us   H100 SXM NVLink 4: 900 GB/s both
                                          ways together (H100 datasheet)
        pcie4             25 GB/s  5 us   PCIe 4.0 x16: 31.5 GB/s each way,
                                          about 80% of it assumed reachable
        ethernet-100g   12.5 GB/s 10 us   100 Gb/s line rate
        infiniband-ndr    50 GB/s  2 us   400 Gb/s line rate
        tpu-v4-ici       270 GB/s  1 us   Cloud TPU v4 page: 1.1 PB/s
                                          all-reduce bandwidth per 4096-chip
                                          pod, taken as a ring's (assumed)

    Measure your own with nccl-tests' ``all_reduce_perf`` (its ``busbw``
    column, and its time at small sizes for the latency).

    Args:
        bandwidth_gb_per_s (float): the bus bandwidth per device in GB/s
            (1e9 bytes/s), as NCCL's tests report it (``busbw``); > 0.
        latency_us (float): the latency of one message in microseconds;
            >= 0.

    Raises:
        ValueError: for a bandwidth that is not positive or a negative
            latency.
    """

    bandwidth_gb_per_s: float
    latency_us: float = 0.0

    def __post_init__(self):
        check_positive("bandwidth_gb_per_s", self.bandwidth_gb_per_s)
        check_non_negative("latency_us", self.latency_us)


# Bus bandwidth per device (GB/s) and latency per message (us). The latencies
# are all assumed (typical orders of magnitude, not measured here); measure
# yours with nccl-tests' all_reduce_perf and pass them instead.
INTERCONNECTS = {
    # NVIDIA H100 SXM: NVLink 4, 900 GB/s per GPU in both directions together
    # (H100 datasheet), 450 GB/s each way; latency 3 us assumed.
    "nvlink4": Interconnect(450.0, 3.0),
    # PCIe 4.0 x16: 31.5 GB/s each way (16 GT/s x 16 lanes, 128b/130b); 25
    # GB/s assumed reachable (about 80%); latency 5 us assumed.
    "pcie4": Interconnect(25.0, 5.0),
    # 100 Gb/s Ethernet (RoCE): 12.5 GB/s line rate; latency 10 us assumed.
    "ethernet-100g": Interconnect(12.5, 10.0),
    # InfiniBand NDR: 400 Gb/s per port = 50 GB/s; latency 2 us assumed.
    "infiniband-ndr": Interconnect(50.0, 2.0),
    # TPU v4: Google Cloud's TPU v4 page gives an all-reduce bandwidth of
    # 1.1 PB/s per 4096-chip pod, about 270 GB/s per chip, taken here as the
    # ring's bus bandwidth (assumed: XLA reduces over the 3D torus, not one
    # ring); latency 1 us assumed.
    "tpu-v4-ici": Interconnect(270.0, 1.0),
}


class StepTimeModel:
    """The seconds of one data-parallel training step on ``n`` devices.

        t(B, n)  = m * t_c(B / (n m)) + t_ar(n)
        t_c(b)   = a + c b
        t_ar(n)  = 2 (n - 1) / n * P / W + 2 (n - 1) * alpha,   t_ar(1) = 0
        m        = ceil((B / n) / max_device_batch)   (1 without a maximum)

    ``t_c`` is the least-squares line through the profile's (batch, seconds)
    points; ``t_ar`` the ring all-reduce of the ``P`` gradient bytes
    (Patarasuk & Yuan 2009; NCCL's bus bandwidth ``W``, latency ``alpha``:
    see the module docstring). Compute and communication do not overlap (an
    assumption, pessimistic); ``m`` micro-batches accumulate one gradient,
    reduced once per step.

    The fit: least squares in relative error, ``sum ((a + c b - t) / t)^2``
    (as `StepsModel.fit` weights its points); a negative intercept ``a``
    (times that grow faster than the batch) is clipped to 0 and the slope
    refitted through the origin, ``c = sum(b / t) / sum((b / t)^2)``; a
    slope ``c <= 0`` (times that do not grow with the batch: the device is
    not busy yet, or the timing is noise) is refused, since it would make
    any batch free.

    Args:
        profile (StepProfile): measured step times, at two or more
            different per-device batches.
        interconnect (Interconnect): the all-reduce's link.
        max_device_batch (int | None): the largest batch that fits on one
            device; a larger share runs as micro-batches. None: every share
            fits.

    Raises:
        ValueError: for a profile of fewer than two different batches, a
            fitted slope that is not positive, or bad arguments.
    """

    def __init__(self, profile, interconnect, max_device_batch=None):
        if not isinstance(profile, StepProfile):
            raise ValueError("Argument `profile` must be a StepProfile. "
                             f"Received: profile={profile!r}")
        if not isinstance(interconnect, Interconnect):
            raise ValueError("Argument `interconnect` must be an "
                             "Interconnect. Received: "
                             f"interconnect={interconnect!r}")
        if max_device_batch is not None:
            check_positive_integer("max_device_batch", max_device_batch)
        self.profile, self.interconnect = profile, interconnect
        self.max_device_batch = max_device_batch
        self.intercept_seconds, self.seconds_per_example = _fit_line(
            profile.batch_sizes, profile.seconds)

    @property
    def profiled_range(self):
        """(smallest, largest) profiled per-device batch."""
        return min(self.profile.batch_sizes), max(self.profile.batch_sizes)

    def compute_seconds(self, device_batch):
        """``t_c(b) = a + c b``: one forward and backward pass of `b`
        examples on one device (`b` may be fractional: an even share)."""
        check_positive("device_batch", device_batch)
        return self.intercept_seconds + self.seconds_per_example * float(
            device_batch)

    def extrapolated(self, device_batch):
        """Whether `device_batch` lies outside the profiled batches."""
        low, high = self.profiled_range
        return not low <= device_batch <= high

    def allreduce_seconds(self, devices):
        """``t_ar(n) = 2 (n - 1) / n * P / W + 2 (n - 1) * alpha``; 0 for
        one device."""
        check_positive_integer("devices", devices)
        if devices == 1:
            return 0.0
        n, link = devices, self.interconnect
        return (2.0 * (n - 1) / n * self.profile.param_bytes
                / (link.bandwidth_gb_per_s * 1e9)
                + 2.0 * (n - 1) * link.latency_us * 1e-6)

    def micro_batches(self, global_batch, devices):
        """``(m, B / (n m))``: the micro-batches each device runs per step
        and the examples in each.

        Raises:
            ValueError: unless `global_batch` splits evenly over `devices`
                (both positive integers).
        """
        check_positive_integer("global_batch", global_batch)
        check_positive_integer("devices", devices)
        if global_batch % devices:
            raise ValueError(
                "Argument `global_batch` must split evenly over `devices`: "
                f"{global_batch} examples over {devices} devices leave "
                f"{global_batch % devices}. Received: global_batch="
                f"{global_batch}, devices={devices}")
        share = global_batch // devices
        m = 1 if self.max_device_batch is None else math.ceil(
            share / self.max_device_batch)
        return m, share / m

    def step_seconds(self, global_batch, devices):
        """``t(B, n)``: one optimizer step of `global_batch` examples on
        `devices` devices, compute then all-reduce."""
        m, device_batch = self.micro_batches(global_batch, devices)
        return (m * self.compute_seconds(device_batch)
                + self.allreduce_seconds(devices))

    def __repr__(self):
        return (f"StepTimeModel(a={self.intercept_seconds:.4g} s, c="
                f"{self.seconds_per_example:.4g} s/example, "
                f"{self.interconnect})")


def _fit_line(batch_sizes, seconds):
    """(a, c) of ``t = a + c b`` with ``a >= 0``, least squares in relative
    error (each point weighted by ``1 / t``, so a profile spanning 32x in
    batch does not let its largest batches decide the small ones)."""
    b = np.asarray(batch_sizes, dtype=np.float64)
    t = np.asarray(seconds, dtype=np.float64)
    if len(np.unique(b)) < 2:
        raise ValueError(
            "Argument `profile` must time at least two different batches to "
            "fit the step time a + c b. Received: batch_sizes="
            f"{list(batch_sizes)}")
    design = np.stack([np.ones_like(b), b], axis=1) / t[:, None]
    (a, c), *_ = np.linalg.lstsq(design, np.ones_like(t), rcond=None)
    if c <= 0:
        raise ValueError(
            "The profiled step times must grow with the batch to fit t = a +"
            f" c b with c > 0 (fit: c={c:.4g} s per example): profile "
            "larger batches, where the device is busy, or more repeats. "
            f"Received: batch_sizes={list(batch_sizes)}, "
            f"seconds={list(seconds)}")
    if a < 0:
        a, c = 0.0, float(np.sum(b / t) / np.sum((b / t) ** 2))
    return float(a), float(c)


@dataclasses.dataclass(frozen=True)
class PlanRow:
    """One schedule on one device count, as `plan_schedules` predicts it.

    ``steps``: optimizer steps; ``wall_seconds``: their seconds;
    ``device_hours``: ``wall_seconds * devices / 3600``; ``speedup``: the
    first schedule's wall-clock on one device over this one's;
    ``extrapolated``: whether a per-device batch lies outside the profiled
    ones. When the schedule's batches do not split over `devices`,
    ``reason`` says so and the times are None.
    """

    schedule: str
    devices: int
    steps: int
    wall_seconds: float = None
    device_hours: float = None
    speedup: float = None
    extrapolated: bool = False
    reason: str = None

    @property
    def possible(self):
        return self.reason is None


def epoch_stages(schedule, epochs):
    """``[(start_epoch, end_epoch, global_batch)]``: the runs of epochs at
    one batch that `schedule` (a ``BatchRamp`` or anything with
    ``batch_size_for_epoch``) trains over `epochs` epochs; the last may end
    within an epoch."""
    check_positive("epochs", epochs)
    stages = []
    for epoch in range(math.ceil(epochs)):
        batch = schedule.batch_size_for_epoch(epoch)
        if stages and stages[-1][2] == batch:
            stages[-1][1] = min(epoch + 1.0, epochs)
        else:
            stages.append([float(epoch), min(epoch + 1.0, epochs), batch])
    return [tuple(stage) for stage in stages]


def _as_schedule(name, stages):
    """A `BatchRamp` from a batch, a ramp's text or (epoch, batch) pairs."""
    if isinstance(stages, numbers.Integral) and not isinstance(stages, bool):
        stages = ((0, stages),)
    try:
        return BatchRamp(stages)
    except ValueError as error:
        raise ValueError(f"Schedule {name!r}: {error}") from None


def schedule_steps(stages, num_examples):
    """Optimizer steps of `epoch_stages`: ``ceil((end - start) N / B)`` per
    stage, summed."""
    return sum(whole_steps(end - start, num_examples, batch)
               for start, end, batch in stages)


def plan_schedules(step_model, schedules, device_counts, num_examples,
                   epochs):
    """The steps, wall-clock and device-hours of each schedule on each
    device count.

    Each schedule's stages (``(start_epoch, global_batch)`` pairs, applied
    at whole epochs as `keras_legw.BatchRamp` applies them) train for
    `epochs` epochs of `num_examples` examples; a stage from epoch ``e0`` to
    ``e1`` at batch ``B`` takes ``ceil((e1 - e0) N / B)`` steps of
    ``step_model.step_seconds(B, n)`` seconds each.

    Args:
        step_model (StepTimeModel): the seconds of one step.
        schedules: ``{name: stages}`` (or ``(name, stages)`` pairs), where
            stages is a global batch (a fixed schedule), a ramp's text
            ``"0:256,1:1024"`` (`keras_legw.parse_batch_ramp`) or
            ``((epoch, batch), ...)``. The first is the reference of the
            speedups.
        device_counts (list[int]): the numbers of devices to plan for.
        num_examples (int): ``N``, the training examples per epoch.
        epochs (float): the epochs every schedule trains for.

    Returns:
        list[PlanRow]: one per device count and schedule, device count
            first. A schedule whose batches do not split over a device
            count gets a row with the reason instead of times.

    Raises:
        ValueError: for no schedule, a bad schedule (named), a device count
            that is not a positive integer, bad `num_examples` or `epochs`.
    """
    check_positive_integer("num_examples", num_examples)
    check_positive("epochs", epochs)
    items = list(schedules.items() if isinstance(schedules, Mapping)
                 else schedules)
    if not items:
        raise ValueError("Argument `schedules` must name at least one "
                         f"schedule. Received: schedules={schedules!r}")
    stages = [(str(name), epoch_stages(_as_schedule(name, s), epochs))
              for name, s in items]
    devices = list(device_counts)
    for n in devices:
        check_positive_integer("device_counts", n)
    reference = _wall_seconds(step_model, stages[0][1], 1, num_examples)
    return [_plan_row(step_model, name, stage_list, n, num_examples,
                      reference)
            for n in devices for name, stage_list in stages]


def _wall_seconds(step_model, stages, devices, num_examples):
    return sum(whole_steps(end - start, num_examples, batch)
               * step_model.step_seconds(batch, devices)
               for start, end, batch in stages)


def _plan_row(step_model, name, stages, devices, num_examples, reference):
    steps = schedule_steps(stages, num_examples)
    for _, _, batch in stages:
        if batch % devices:
            return PlanRow(name, devices, steps, reason=(
                f"batch {batch} does not split over {devices} devices"))
    wall = _wall_seconds(step_model, stages, devices, num_examples)
    extrapolated = any(step_model.extrapolated(
        step_model.micro_batches(batch, devices)[1]) for _, _, batch in stages)
    return PlanRow(name, devices, steps, wall, wall * devices / 3600.0,
                   reference / wall, extrapolated)


def adaptive_stages(noise_scale_by_epoch, base_batch, max_batch, epochs,
                    **rule):
    """The stages `keras_legw.NoiseBatchSchedule` would pick, told a
    measured noise-scale curve.

    After epoch ``e`` (0-based) the schedule observes
    ``noise_scale_by_epoch[e]`` as ``observe(1.0, B_noise)`` (``|G|^2 = 1``,
    ``tr(Sigma) = B_noise``, no standard errors); its own rule picks each
    next batch. A NaN epoch is one without a measurement (the batch holds);
    after the curve ends the batch holds too.

    The curve is one measured along some run (typically at the base batch),
    not along the adaptive run itself, whose noise scale may differ: a
    preview of the rule, not a replay.

    Args:
        noise_scale_by_epoch (list[float]): ``B_noise`` measured in each
            epoch, in examples.
        base_batch (int): the start batch.
        max_batch (int): the largest batch allowed.
        epochs (float): the epochs to plan.
        **rule: `NoiseBatchSchedule`'s other arguments (its defaults
            otherwise: c = 4, window 3, z = 2, two doublings a decision).

    Returns:
        tuple: ``((start_epoch, global_batch), ...)``, a stage each time the
            batch changes; the first at epoch 0.
    """
    check_positive("epochs", epochs)
    schedule = NoiseBatchSchedule(base_batch, max_batch, **rule)
    for noise_scale in list(noise_scale_by_epoch)[:math.ceil(epochs) - 1]:
        schedule.observe(1.0, float(noise_scale))
    return tuple((start, batch)
                 for start, _, batch in epoch_stages(schedule, epochs))


def read_noise_curve(path):
    """``B_noise`` by 0-based epoch from a CSV with columns epoch and
    noise_scale (docs/results/mnist_lstm_noise_scale.csv's form).

    A row at epoch ``x`` (epochs completed when measured, e.g. 1.001) is
    the measurement of epoch ``round(x) - 1``; an epoch without a row, or
    with "nan", is NaN. A `batch_size` column, when present, must hold one
    batch (one run's curve).

    Raises:
        OSError: when the file cannot be read.
        ValueError: naming the file (and line) for missing columns, no row,
            a cell that is not a number, or several runs' curves.
    """
    rows = read_csv_rows(path, ("epoch", "noise_scale"))
    batches = {row.get("batch_size") for _, row in rows}
    if len(batches) > 1:
        raise ValueError(
            f"{path} must hold one run's curve; it has the batch sizes "
            f"{', '.join(sorted(batches, key=str))}")
    by_epoch = {}
    for line, row in rows:
        epoch = csv_cell(path, line, row, "epoch", float)
        if not math.isfinite(epoch) or epoch < 0:
            raise ValueError(f"{path}, line {line}: epoch must be a number "
                             f">= 0. Received: {row['epoch']!r}")
        by_epoch[max(round(epoch), 1) - 1] = csv_cell(path, line, row,
                                                      "noise_scale", float)
    return [by_epoch.get(e, math.nan) for e in range(max(by_epoch) + 1)]
