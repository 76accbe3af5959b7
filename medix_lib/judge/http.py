"""The HTTP judge backend: any OpenAI-compatible chat server (vLLM, SGLang, ``transformers serve``, OpenAI)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import math
import os
import random
from typing import Callable

from medix_lib.judge.protocol import JudgeConfigError, Score, parse_grade, parse_reply

def run_sync(factory: Callable[[], "asyncio.Future"]):
    """Run a coroutine to completion from sync code, also where an event loop is already running (Jupyter, an
    async trainer): there it runs on a fresh loop in a worker thread instead of failing or blocking the loop.

    >>> async def two(): return 2
    >>> run_sync(two)
    2
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="medix-judge") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


@functools.lru_cache(maxsize=1)
def tls_context():
    """The certificate store, loaded once per process: each HTTP client would otherwise load it anew (~50 ms of CPU
    on 2 cores, http:// included), and a call opens one client per 8 connections: half of a 256-item call's time."""
    import httpx

    return httpx.create_ssl_context()


CONSTRAIN_MODES = {
    "none": {},
    "guided_choice": {"guided_choice": ["YES", "NO"]},  # vLLM < 0.11
    "structured_outputs": {"structured_outputs": {"choice": ["YES", "NO"]}},  # vLLM >= 0.11
    "regex": {"regex": "(YES|NO)"},  # SGLang
}


class OpenAIJudge:
    """Any OpenAI-compatible chat server (vLLM, SGLang, ``transformers serve``, OpenAI): async, at most
    ``concurrency`` requests in flight, ``timeout`` seconds per request, ``max_retries`` retries with exponential
    backoff and jitter on timeouts, dropped connections, 408/409/429 and 5xx. Temperature 0, ``max_tokens`` tokens.

    P(YES) comes from the first token's ``top_logprobs`` when the server returns them; otherwise the reply is parsed
    strictly (``parse_reply``). ``constrain`` asks the server to decode only YES or NO (``CONSTRAIN_MODES``).
    The API key is read from the environment variable ``api_key_env`` at request time, never stored or logged.
    Requests carry ``chat_template_kwargs: {"enable_thinking": false}`` (``thinking=False``): Qwen3 judges otherwise
    open with a reasoning block where the verdict is expected (vLLM, SGLang and ``transformers serve`` read it).
    ``temperature`` above 0 with a ``seed`` makes independent samples of one judge (rounds of a majority vote).
    """

    name = "openai"

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 30.0, concurrency: int = 16, max_retries: int = 3, backoff: float = 0.5,
                 max_tokens: int = 4, logprobs: bool = True, constrain: str = "none", extra_body: dict | None = None,
                 thinking: bool = False, temperature: float = 0.0, seed: int | None = None):
        if constrain not in CONSTRAIN_MODES:
            raise ValueError(f"unknown constrain mode {constrain!r}; valid: {', '.join(CONSTRAIN_MODES)}")
        self.base_url = (base_url or os.environ.get("MEDIX_JUDGE_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
                         or "http://127.0.0.1:8000/v1").rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"judge base_url {self.base_url!r} must start with http:// or https://")
        if timeout <= 0 or concurrency < 1 or max_retries < 0:
            raise ValueError(f"judge needs timeout > 0, concurrency >= 1, max_retries >= 0; got {timeout}, "
                             f"{concurrency}, {max_retries}")
        self.model_name, self.api_key_env = model, api_key_env
        self.timeout, self.concurrency, self.max_retries, self.backoff = timeout, concurrency, max_retries, backoff
        self.max_tokens, self.logprobs, self.constrain = max_tokens, logprobs, constrain
        self.thinking, self.temperature, self.seed = thinking, temperature, seed
        self._template_kwargs = True  # dropped for servers that refuse it (OpenAI's own API)
        self._served_checked = False
        self.extra_body = dict(extra_body or {})

    def identity(self) -> str:
        """The model, and for sampled judges the temperature and seed: each round's verdicts are cached apart."""
        return self.model_name if not self.temperature else f"{self.model_name}@t{self.temperature:g}/s{self.seed}"

    def _body(self, messages: list[dict], rubric: bool = False) -> dict:
        body = {"model": self.model_name, "messages": messages, "temperature": self.temperature,
                "max_tokens": self.max_tokens, **({} if rubric else CONSTRAIN_MODES[self.constrain]),
                **self.extra_body}
        if self._template_kwargs:
            body["chat_template_kwargs"] = {"enable_thinking": self.thinking}
        if self.seed is not None:
            body["seed"] = self.seed
        if self.logprobs and not rubric:
            body.update(logprobs=True, top_logprobs=5)
        return body

    @staticmethod
    def _p_yes_from_logprobs(choice: dict) -> float | None:
        """P(YES) renormalised over YES/NO among the first content token's alternatives, if the server sent them."""
        content = (choice.get("logprobs") or {}).get("content") or []
        first = next((t for t in content if str(t.get("token", "")).strip()), None)
        if first is None:
            return None
        mass = {"yes": 0.0, "no": 0.0}
        for alt in first.get("top_logprobs") or [first]:
            word = str(alt.get("token", "")).strip().strip("*\"'`").lower()
            if word in mass and alt.get("logprob") is not None:
                mass[word] += math.exp(alt["logprob"])
        total = mass["yes"] + mass["no"]
        return mass["yes"] / total if total > 0 else None

    def _interpret(self, data: dict, rubric: bool = False) -> Score:
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            return Score(error=f"malformed reply: {json.dumps(data)[:200]}")
        if rubric:
            grade = parse_grade(text)
            return Score(error=f"unparsable grade: {text[:200]!r}") if grade is None else Score(score=grade / 5)
        p = self._p_yes_from_logprobs(choice)
        label = parse_reply(text)
        if p is None and label is None:
            return Score(error=f"unparsable reply: {text[:200]!r}")
        return Score(p_yes=p, label=label)

    async def _score_one(self, client, messages: list[dict], rubric: bool = False) -> Score:
        import httpx

        error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(min(30.0, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random()))
            try:
                response = await asyncio.wait_for(client.post("/chat/completions", json=self._body(messages, rubric)),
                                                  self.timeout)
            except (asyncio.TimeoutError, httpx.TimeoutException):
                error = f"timeout after {self.timeout:g}s"
                continue
            except httpx.HTTPError as err:  # refused, reset, dropped mid-reply, protocol garbage
                error = f"connection error: {type(err).__name__}: {err}"
                continue
            if response.status_code == 400 and self._template_kwargs and "chat_template_kwargs" in response.text:
                self._template_kwargs = False  # a server without chat templates: nothing to switch off there
                error = f"HTTP 400 with chat_template_kwargs: {response.text[:200]}"
                continue
            if response.status_code == 400 and self.logprobs and "logprob" in response.text.lower():
                self.logprobs = False  # this server refuses logprobs: parse replies instead, from now on
                error = f"HTTP 400 with logprobs: {response.text[:200]}"
                continue
            if response.status_code in (408, 409, 429) or response.status_code >= 500:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            if response.status_code != 200:
                return Score(error=f"HTTP {response.status_code}: {response.text[:200]}", attempts=attempt + 1)
            try:
                data = response.json()
            except ValueError:
                error = f"reply is not JSON: {response.text[:200]!r}"
                continue
            score = self._interpret(data, rubric)
            return Score(score.p_yes, score.label, score.error, attempts=attempt + 1, score=score.score)
        return Score(error=f"{error} (after {self.max_retries + 1} attempts)", attempts=self.max_retries + 1)

    async def _score_all(self, prompts: list[list[dict]], progress: bool, rubric: bool) -> list[Score]:
        import httpx
        from medix_lib.progress import bar as progress_bar

        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        workers = min(self.concurrency, len(prompts))
        # httpcore's pool scans every queued request against every connection on each change, which makes one
        # client with 64 connections slower than one with 8; so shards of at most 8 workers share a client.
        n_clients = math.ceil(workers / 8)
        clients = [httpx.AsyncClient(base_url=self.base_url + "/", headers=headers, timeout=self.timeout,
                                     limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
                                     verify=tls_context())
                   for _ in range(n_clients)]
        queue: asyncio.Queue = asyncio.Queue()
        for i, messages in enumerate(prompts):
            queue.put_nowait((i, messages))
        results: list[Score] = [Score()] * len(prompts)
        bar = progress_bar(total=len(prompts), desc="judge", progress=progress, leave=False)

        async def worker(client) -> None:
            while not queue.empty():
                i, messages = queue.get_nowait()
                results[i] = await self._score_one(client, messages, rubric)
                bar.update()

        try:
            await asyncio.gather(*(worker(clients[w % n_clients]) for w in range(workers)))
        finally:
            bar.close()
            for client in clients:
                await client.aclose()
        return results

    def check_served(self) -> None:
        """Stop at once when the server answers ``/models`` without this judge's model: every verdict would be a 404
        error and the run would end with nothing judged. A server without ``/models`` (or none at all) is left to the
        per-request errors."""
        import httpx

        if self._served_checked:
            return
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        try:
            reply = httpx.get(self.base_url + "/models", timeout=min(self.timeout, 10.0), verify=tls_context(),
                              headers={"Authorization": f"Bearer {key}"} if key else {})
            served = [m.get("id") for m in reply.json().get("data", [])] if reply.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            served = None
        self._served_checked = True
        if served and self.model_name not in served:
            raise JudgeConfigError(f"the judge server at {self.base_url} serves {served}, not {self.model_name!r}: "
                                   f"start it with that model (vllm serve {self.model_name} ...) or set judge_model "
                                   f"to one it serves")

    def score(self, prompts: list[list[dict]], progress: bool = False, rubric: bool = False) -> list[Score]:
        self.check_served()
        return run_sync(lambda: self._score_all(prompts, progress, rubric))
