"""Preemption: SIGTERM (a cloud's notice) or SIGINT (Ctrl-C) stops training
at the next step boundary with a checkpoint, on every worker at once.

While the trainer's loop runs, `StopRequests` turns the first SIGTERM or
SIGINT into a request; a second one acts as it would without us (the process
ends at once). After each call of the compiled loop the workers agree, with
one small all-reduce, whether any of them was asked to stop, so all stop at
the same step. The trainer then saves a checkpoint there and raises
`Preempted`; the scripts exit with its `exit_status`, 128 + the signal
(143 for SIGTERM, 130 for SIGINT), as a shell reports a process killed by
it. Rerunning the same command resumes from that step.

Why not `tf.distribute.experimental.PreemptionCheckpointHandler`: it counts
calls of a one-step function (the trainer runs `steps_per_loop` steps per
call), adds its own counter to the checkpoint and restores by itself (which
would bypass the damaged-checkpoint fallback), exits the process from inside
the loop before the run's history is written, and outside a cluster it
watches SIGTERM only. One all-reduce per loop call does the agreement it
needs, on every strategy.
"""

import signal
import threading

import tensorflow as tf

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """Training stopped on a signal; a checkpoint was saved at `step`.

    Attributes:
        signal_number: the signal (SIGTERM or SIGINT; for a worker that was
            not signalled itself, the one a peer got).
        step: the step the checkpoint holds.
        checkpoint: its path.
        exit_status: 128 + signal_number, what the scripts exit with.
    """

    def __init__(self, signal_number, step, checkpoint):
        self.signal_number = signal_number
        self.step = step
        self.checkpoint = checkpoint
        self.exit_status = 128 + signal_number
        super().__init__(
            f"Stopped by {signal.Signals(signal_number).name} at step {step}; "
            f"checkpoint {checkpoint} saved. Rerun the same command to resume "
            "from it.")


class StopRequests:
    """Catches the first SIGTERM or SIGINT while active (a context manager)
    and keeps its number in `signal_number` (0 while none came). Outside the
    main thread, where Python cannot install handlers, it catches nothing."""

    def __init__(self):
        self.signal_number = 0
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._request)
        return self

    def __exit__(self, *exc_info):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def _request(self, number, frame):
        if self.signal_number:  # asked twice: stop now, as without us
            self.__exit__()
            signal.raise_signal(number)
            return
        self.signal_number = number


def make_agreement(strategy):
    """Returns agree(signal_number) -> the signal to stop on (0: go on), the
    same on every worker: SIGTERM if any worker got one, else SIGINT if any
    did. It is a collective: every worker must call it at the same point."""

    @tf.function
    def counts(flags):
        per_replica = strategy.run(tf.identity, args=(flags,))
        return strategy.reduce("SUM", per_replica, axis=None)

    def agree(signal_number):
        flags = tf.constant([float(signal_number == signal.SIGTERM),
                             float(signal_number == signal.SIGINT)])
        terms, interrupts = counts(flags).numpy()
        if terms:
            return int(signal.SIGTERM)
        return int(signal.SIGINT) if interrupts else 0

    return agree
