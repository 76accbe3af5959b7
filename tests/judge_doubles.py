"""Test doubles at the judge's and the served candidate's true boundaries: OpenAI-compatible loopback servers (a
judge that injects faults, a candidate that answers as its questions say), and a backend that counts what it is
asked."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from medix_lib import judge as J
from medix_lib.judge import Judge


class StubServer:
    """OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1:0 whose behaviour is chosen by a marker in the
    predicted answer: SLOW (sleeps past the client timeout), E500 (always 500), FLAKY (500 twice, then fine),
    GARBAGE (a sentence, not a verdict), NOTJSON, DROP (closes the connection without a reply), LOGPROBS (sends
    top_logprobs). Otherwise it answers YES when the prediction says "heart attack", else NO."""

    def __init__(self, latency: float = 0.0):
        self.latency = latency
        self.requests: list[dict] = []  # every request body received
        self.headers: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self.healed = False  # flips E500 to healthy, to test that failures are retried on a rerun
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.requests.append(body)
                    stub.headers.append(dict(self.headers))
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                    seen = sum(r["messages"] == body["messages"] for r in stub.requests)
                try:
                    stub.handle(self, body, seen)
                finally:
                    with stub.lock:
                        stub.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def handle(self, handler, body: dict, seen: int):
        self.respond(handler, body["messages"][-1]["content"].split("Predicted answer")[-1], seen)

    def respond(self, handler, prediction: str, seen: int):
        time.sleep(self.latency)
        if "DROP" in prediction:
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if "SLOW" in prediction:
            time.sleep(2.0)
        if ("E500" in prediction and not self.healed) or ("FLAKY" in prediction and seen <= 2):
            return self.send(handler, 500, b'{"error": "overloaded"}')
        if "NOTJSON" in prediction:
            return self.send(handler, 200, b"<html>gateway says hi</html>")
        text = ("Well, that depends on the context." if "GARBAGE" in prediction
                else "YES" if "heart attack" in prediction.lower() else "NO")
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        if "LOGPROBS" in prediction:
            top = [{"token": t, "logprob": lp} for t, lp in (("YES", -0.2), ("NO", -1.8), ("Maybe", -4))]
            choice["logprobs"] = {"content": [{"token": "YES", "logprob": -0.2, "top_logprobs": top}]}
        self.send(handler, 200, json.dumps({"id": "x", "object": "chat.completion", "choices": [choice]}).encode())

    @staticmethod
    def send(handler, status: int, payload: bytes):
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class CandidateServer(StubServer):
    """A served candidate: answers each prompt with what its question asks for after "say:" (up to "]"), always
    HTTP 500 when the question says FAIL; records every request (pictures arrive as data URLs)."""

    def handle(self, handler, body: dict, seen: int):
        content = body["messages"][-1]["content"]
        text = content if isinstance(content, str) else " ".join(p.get("text") or "" for p in content)
        if "FAIL" in text:
            return self.send(handler, 500, b'{"error": "overloaded"}')
        answer = text.split("say:", 1)[1].split("]", 1)[0].strip() if "say:" in text else "I do not know."
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}
        self.send(handler, 200, json.dumps({"id": "c", "object": "chat.completion", "choices": [choice]}).encode())


class LetterServer(StubServer):
    """A served letter verifier, as CompassVerifier replies: A when the candidate's answer says "heart attack", C
    when it says TRUNC (a cut-off answer), else B. Markers in the answer choose the reply's shape: BOXED (its CoT
    prompt's "... Final Judgment: \\boxed{B} - INCORRECT"), WORD (CORRECT, INCORRECT or INVALID), LOGPROBS (the
    letter with top_logprobs), GARBAGE (a sentence)."""

    WORDS = {"A": "CORRECT", "B": "INCORRECT", "C": "INVALID"}

    def handle(self, handler, body: dict, seen: int):
        answer = body["messages"][-1]["content"].split("<Candidate's Answer Begin>")[-1]
        letter = "A" if "heart attack" in answer else "C" if "TRUNC" in answer else "B"
        text = ("Well, that depends on the context." if "GARBAGE" in answer
                else f"Analysis step by step: ...\nFinal Judgment: \\boxed{{{letter}}} - {self.WORDS[letter]}"
                if "BOXED" in answer else self.WORDS[letter] if "WORD" in answer else letter)
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        if "LOGPROBS" in answer:
            top = [{"token": t, "logprob": lp} for t, lp in ((letter, -0.1), ("B", -3.0), ("C", -2.5), ("D", -6))]
            choice["logprobs"] = {"content": [{"token": letter, "logprob": -0.1, "top_logprobs": top}]}
        self.send(handler, 200, json.dumps({"id": "v", "object": "chat.completion", "choices": [choice]}).encode())


def http_judge(url: str, **kwargs) -> Judge:
    # 1.5 s: a healthy reply must never time out on a busy CI machine; SLOW sleeps 2 s, past it
    options = {"timeout": 1.5, "max_retries": 2, "concurrency": 8, **kwargs}
    backend_options = {"backoff": 0.01, **options.pop("backend_options", {})}
    return Judge(backend="openai", model="stub-judge", base_url=url, backend_options=backend_options, **options)


class CountingBackend:
    """Answers P(YES) = 0.9 for predictions containing 'attack', else 0.1, and records every prompt it is given."""

    name = "counting"
    calls: list[list] = []

    def __init__(self, model: str):
        self.model = model

    def identity(self) -> str:
        return self.model

    def score(self, prompts, progress=False):
        CountingBackend.calls.append(prompts)
        return [J.Score(p_yes=0.9 if "attack" in p[-1]["content"].split("Predicted")[-1] else 0.1) for p in prompts]
