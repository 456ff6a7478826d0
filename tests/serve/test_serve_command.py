"""`hybridformer serve` as a process: starts, answers, exits 0 on SIGTERM; bad flags stop with one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_starts_answers_and_exits_cleanly_on_sigterm():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hybridformer", "serve", "--model", "tiny", "--port", str(port), "--max-running", "2"],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        r = httpx.post(url + "/v1/chat/completions", timeout=30,
                       json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 3
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "tiny (chat)" in out
    finally:
        if proc.poll() is None:
            proc.kill()


def test_bad_flags_stop_with_one_line():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "hybridformer", "serve", *args], env=_env(),
                              capture_output=True, text=True, timeout=60)

    r = run("--model", "tiny", "--max-batch-size", "0")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "max_batch_size" in r.stderr
    r = run("--model", "/no/such/folder")
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "/no/such/folder" in r.stderr
