"""`sweep_runner.run_in_child`: a run's results come back from its own
process, and that process never outlives the sweep that started it."""

import ast
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _fake_models(tmp_path):
    """A `models` package whose `sleeper.run` writes its pid, then returns
    `seconds` after sleeping them, or, on SIGTERM, writes "preempted" and
    exits 143 as the zoo's trainer does after its checkpoint; the children
    import it from their cwd."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    (tmp_path / "models" / "sleeper.py").write_text(textwrap.dedent("""
        import os, signal, sys, time

        def preempted(*_):
            with open("preempted", "w") as f:
                f.write("preempted")
            sys.exit(143)

        def run(pid_file, seconds):
            signal.signal(signal.SIGTERM, preempted)
            with open(pid_file, "w") as f:
                f.write(str(os.getpid()))
            time.sleep(seconds)
            return {"slept": seconds}
    """))


def _sweep(tmp_path, seconds):
    """A process that runs `sleeper` through `run_in_child`, as a sweep
    does, and prints its results."""
    code = ("from bench import sweep_runner; print(sweep_runner.run_in_child("
            f"'sleeper', dict(pid_file='child.pid', seconds={seconds})))")
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=tmp_path, text=True,
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=REPO))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has exited
        return f.read().split(")")[-1].split()[0] != "Z"


def _child_pid(tmp_path):
    for _ in range(300):
        if (tmp_path / "child.pid").exists():
            text = (tmp_path / "child.pid").read_text()
            if text:
                return int(text)
        time.sleep(0.1)
    raise AssertionError("the child never started")


def test_the_childs_results_come_back_with_its_peak_memory(tmp_path):
    _fake_models(tmp_path)
    out, _ = _sweep(tmp_path, 0).communicate(timeout=60)
    results = ast.literal_eval(out)
    assert results["slept"] == 0 and 0 < results["peak_rss_gib"] < 1


@pytest.mark.skipif(not os.path.exists("/proc"), reason="reads /proc")
def test_a_killed_sweep_takes_its_training_child_with_it(tmp_path):
    """Killed without a chance to clean up (SIGKILL), the sweep must not
    leave its child training on, unrecorded, where a rerun of the sweep
    would resume the same run directory beside it; the child stops as on a
    preemption (SIGTERM), so its trainer checkpoints first."""
    _fake_models(tmp_path)
    sweep = _sweep(tmp_path, 120)
    child = _child_pid(tmp_path)
    assert _alive(child)
    sweep.send_signal(signal.SIGKILL)
    sweep.wait(timeout=10)
    for _ in range(100):
        if not _alive(child):
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the child outlived its sweep")
    assert (tmp_path / "preempted").read_text() == "preempted"
