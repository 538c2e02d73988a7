"""What every sweep in bench/ shares: one run per child process, one CSV row
per finished run, appended at once, and runs already in the CSV skipped (so
rerunning a sweep's command continues it)."""

import argparse
import csv
import json
import os
import queue
import subprocess
import sys
import threading


class ChildFailed(RuntimeError):
    """A child run ended with `returncode` (the zoo's exit statuses:
    `models.common.flags.ERROR_STATUSES`)."""

    def __init__(self, message, returncode):
        super().__init__(message)
        self.returncode = returncode


def run_in_child(module, kwargs):
    """`models.<module>.run(**kwargs)` in a fresh Python process (a fresh
    TensorFlow); returns its results dict, with the process's peak resident
    memory added as `peak_rss_gib` (Linux's ru_maxrss, KiB).

    The child stops when this process ends, however it ends (a killed sweep
    must not leave its run training unrecorded, nor beside the rerun that
    resumes it from the same directory): it holds the read end of a pipe
    whose only write end is here, and when the read sees it close it sends
    itself SIGTERM, which the zoo's trainer takes as a preemption (a
    checkpoint at the next step boundary, then exit), so the rerun resumes
    from there."""
    parent_gone, parent_alive = os.pipe()
    code = (f"import json, os, resource, signal, sys, threading; "
            f"threading.Thread(target=lambda: (os.read({parent_gone}, 1), "
            "os.kill(os.getpid(), signal.SIGTERM)), daemon=True).start(); "
            f"from models import {module}\n"
            "try:\n"
            f"    r = {module}.run(**json.loads(sys.argv[1]))\n"
            "except Exception as error:\n"  # the zoo's exit status for it
            "    from models.common.flags import exit_for\n"
            "    exit_for(error)\n"
            "r['peak_rss_gib'] = resource.getrusage(resource.RUSAGE_SELF)"
            ".ru_maxrss / 2 ** 20; print('RESULTS' + json.dumps(r))")
    try:
        out = subprocess.run(
            [sys.executable, "-c", code, json.dumps(kwargs)],
            capture_output=True, text=True, pass_fds=(parent_gone,))
    finally:
        os.close(parent_gone)
        os.close(parent_alive)
    if out.returncode:
        raise ChildFailed(f"{module}.run({kwargs}) failed with status "
                          f"{out.returncode}:\n{out.stderr[-3000:]}",
                          out.returncode)
    line = next(l for l in out.stdout.splitlines() if l.startswith("RESULTS"))
    return json.loads(line[len("RESULTS"):])


def read_rows(csv_path):
    """The CSV's rows as dicts ([] if it does not exist yet)."""
    if not os.path.exists(csv_path):
        return []
    with open(csv_path) as f:
        return list(csv.DictReader(f))


def curve(rows, column):
    """(steps, values) of curve rows: their `step` as ints and `column` as
    floats, in the rows' order (what the studies' figures plot)."""
    return ([int(r["step"]) for r in rows], [float(r[column]) for r in rows])


_APPEND_LOCK = threading.Lock()


def append_row(csv_path, columns, row):
    """Appends one row (safe to call from several of `run_all`'s threads).
    A new file gets `columns` as its header; an existing file keeps its own
    header, the row's missing columns left empty. A key the header lacks is
    a ValueError (add the column to the file first), not a dropped value."""
    os.makedirs(os.path.dirname(csv_path) or ".", exist_ok=True)
    with _APPEND_LOCK, open(csv_path, "a+", newline="") as f:
        new = f.tell() == 0
        if not new:
            f.seek(0)
            columns = next(csv.reader(f))
        unknown = sorted(set(row) - set(columns))
        if unknown:
            raise ValueError(f"{csv_path} has no column {', '.join(unknown)}. "
                             f"Its columns: {', '.join(columns)}.")
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        if new:
            writer.writeheader()
        writer.writerow(row)


def sweep_parser(doc, *, epochs, csv_path, runs_dir, plans=()):
    """The parser of the arguments every sweep takes: --epochs (the equal
    budget), --seed, --csv, --runs_dir, --data_dir, --workers, and --plan
    (one of `plans`, the first by default) where a sweep has several."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    if plans:
        parser.add_argument("--plan", choices=plans, default=plans[0])
    parser.add_argument("--epochs", type=float, default=epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", default=csv_path)
    parser.add_argument("--runs_dir", default=runs_dir)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--workers", type=int, default=1,
                        help="runs trained at the same time (one process each)")
    return parser


def sweep_arguments(doc, *, add_arguments=None, **kwargs):
    """`sweep_parser(doc, **kwargs)`'s arguments, --batch_sizes and those
    `add_arguments(parser)` adds, parsed."""
    parser = sweep_parser(doc, **kwargs)
    if add_arguments:
        add_arguments(parser)
    parser.add_argument("--batch_sizes", type=lambda text: [
                            int(b) for b in text.split(",")], default=None,
                        help="train only the plan's runs at these batch sizes "
                             "(comma-separated); default: all")
    return parser.parse_args()


def run_all(jobs, workers):
    """Calls each of `jobs` (argument-less functions, in order) on `workers`
    threads, each job starting when a thread is free. A job that raises is
    reported and does not stop the others; raises at the end if any did."""
    todo, failures = queue.Queue(), []
    for job in jobs:
        todo.put(job)

    def work():
        while True:
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            try:
                job()
            except Exception as error:  # reported, and raised again below
                print(f"FAILED: {error}", file=sys.stderr, flush=True)
                failures.append(error)

    threads = [threading.Thread(target=work) for _ in range(max(1, workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} of the sweep's runs failed; "
                           "see the messages above")


# What an AutoWarmup run adds to a sweep CSV: its test cadence (empty: at
# each epoch end) and `autowu_fields`.
AUTOWU_COLUMNS = ("check_every_epochs", "warmup_steps", "peak_learning_rate")


def autowu_fields(results):
    """An AutoWarmup run's switch: the step its warmup ended at and the peak
    rate its decay started from (empty if the run ended before either)."""
    step, peak = results.get("warmup_steps"), results.get("peak_learning_rate")
    return dict(warmup_steps="" if step is None else step,
                peak_learning_rate="" if peak is None else f"{peak:.6g}")


def record_run(csv_path, name, labels, metrics, results, extra=None):
    """Appends a sequence-model run's row: `labels` (schedule, batch_size,
    seed, epochs), the `metrics` of `results` to 2 decimals, steps,
    wall_seconds (training seconds), tokens_per_second (empty when a
    resumed run had no steps left to time), the `extra` columns (a dict)
    and, for `schedule=autowu`, `autowu_fields`; prints a one-line
    summary."""
    rate = results["tokens_per_second"]
    row = dict(labels, **{m: round(results[m], 2) for m in metrics},
               steps=results["steps"],
               wall_seconds=round(results["train_seconds"], 1),
               tokens_per_second=round(rate) if rate else "")
    row.update(extra or {})
    if labels["schedule"] == "autowu":
        row.update(autowu_fields(results))
    append_row(csv_path, list(row), row)
    print(f"{name}: " + ", ".join(f"{m} {results[m]:.2f}" for m in metrics)
          + f", {results['steps']} steps, {results['train_seconds']:.0f} s",
          flush=True)
