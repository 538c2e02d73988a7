"""Two local worker processes of a zoo application under
MultiWorkerMirroredStrategy (TF_CONFIG), for the test modules of more than
one application."""

import json
import os
import socket
import subprocess
import sys


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_workers(args):
    """`python *args` as workers 0 and 1 of one localhost cluster (their
    TF_CONFIG): the two Popen handles."""
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    return [subprocess.Popen(
        [sys.executable, *args],
        env=dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": i}})),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]


def wait_for_both(workers, timeout=400):
    """Waits for both workers; asserts each exited 0 (else its stderr). A
    worker still running when the other failed is killed, not left behind
    (it would wait for its peer)."""
    try:
        for index, worker in enumerate(workers):
            _, err = worker.communicate(timeout=timeout)
            assert worker.returncode == 0, f"worker {index}: {err[-3000:]}"
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
