"""Evaluation: the task's sums over the whole evaluation set, on every
replica, added up across replicas and batches, then turned into metrics."""

import tensorflow as tf


class Evaluator:
    """`evaluator()` -> the task's metrics on its evaluation set; stateful
    models start from `task.zero_state(strategy, training=False)` and
    carry it."""

    def __init__(self, task, strategy, model):
        self._task, self._strategy, self._model = task, strategy, model
        self._data = strategy.distribute_datasets_from_function(
            task.eval_dataset)
        # Evaluation batches may differ in shape (sentences cut to their
        # longest): one trace with unknown dimensions serves them all.
        self._step = tf.function(self._eval_step, reduce_retracing=True)

    def _replica_eval(self, batch, state):
        if self._task.initial_state is not None:
            return self._task.eval_sums(self._model, batch, state)
        return self._task.eval_sums(self._model, batch), state

    def _eval_step(self, batch, state):
        sums, state = self._strategy.run(self._replica_eval,
                                         args=(batch, state))
        return ({k: self._strategy.reduce("SUM", v, axis=None)
                 for k, v in sums.items()}, state)

    def __call__(self):
        totals = {}
        state = self._task.zero_state(self._strategy, training=False)
        for batch in self._data:
            sums, state = self._step(batch, state)
            for key, value in sums.items():
                totals[key] = totals.get(key, 0.0) + float(value)
        return self._task.eval_metrics(totals)
