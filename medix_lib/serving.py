"""Talking to an OpenAI-compatible chat server (vLLM, SGLang, ``transformers serve``, a hosted API): the one client
the HTTP judge and served candidates share.

Async, at most ``concurrency`` requests in flight, ``timeout`` seconds per request, ``max_retries`` retries with
exponential backoff and jitter on timeouts, dropped connections, 408/409/429 and 5xx; an API key read from the
environment variable ``api_key_env`` at request time, never stored or logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import math
import os
import random
from typing import Awaitable, Callable


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
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="medix-http") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


@functools.lru_cache(maxsize=1)
def tls_context():
    """The certificate store, loaded once per process: each HTTP client would otherwise load it anew (~50 ms of CPU
    on 2 cores, http:// included), and a call opens one client per 8 connections: half of a 256-item call's time."""
    import httpx

    return httpx.create_ssl_context()


class ChatClient:
    """The connection settings and request loop of one server. ``what`` names the server in errors ("judge",
    "candidate"); ``base_url`` falls back to the environment variables ``url_envs``, then to a local vLLM's."""

    def __init__(self, what: str, base_url: str | None, url_envs: tuple[str, ...], api_key_env: str | None,
                 timeout: float, concurrency: int, max_retries: int, backoff: float):
        self.base_url = (base_url or next((os.environ[e] for e in url_envs if os.environ.get(e)), None)
                         or "http://127.0.0.1:8000/v1").rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"{what} base_url {self.base_url!r} must start with http:// or https://")
        if timeout <= 0 or concurrency < 1 or max_retries < 0:
            raise ValueError(f"{what} needs timeout > 0, concurrency >= 1, max_retries >= 0; got {timeout}, "
                             f"{concurrency}, {max_retries}")
        self.what, self.api_key_env = what, api_key_env
        self.timeout, self.concurrency, self.max_retries, self.backoff = timeout, concurrency, max_retries, backoff

    def _headers(self) -> dict:
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    def adapt(self, response) -> bool:
        """A 400 reply the client can fix by asking differently: change the settings and return True to retry."""
        return False

    async def post(self, client, body: Callable[[], dict]) -> tuple[dict | None, str | None, int]:
        """POST ``body()`` (built afresh per attempt, after :meth:`adapt`) to ``/chat/completions``: the reply's
        JSON, or None and the last error, and the attempts made."""
        import httpx

        error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(min(30.0, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random()))
            try:
                response = await asyncio.wait_for(client.post("/chat/completions", json=body()), self.timeout)
            except (asyncio.TimeoutError, httpx.TimeoutException):
                error = f"timeout after {self.timeout:g}s"
                continue
            except httpx.HTTPError as err:  # refused, reset, dropped mid-reply, protocol garbage
                error = f"connection error: {type(err).__name__}: {err}"
                continue
            if response.status_code == 400 and self.adapt(response):
                error = f"HTTP 400: {response.text[:200]}"
                continue
            if response.status_code in (408, 409, 429) or response.status_code >= 500:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            if response.status_code != 200:
                return None, f"HTTP {response.status_code}: {response.text[:200]}", attempt + 1
            try:
                return response.json(), None, attempt + 1
            except ValueError:
                error = f"reply is not JSON: {response.text[:200]!r}"
        return None, f"{error} (after {self.max_retries + 1} attempts)", self.max_retries + 1

    async def map(self, items: list, one: Callable[[object, object], Awaitable], progress: bool, desc: str) -> list:
        """``await one(client, item)`` for every item, ``concurrency`` at a time, results in the items' order."""
        import httpx

        from medix_lib.progress import bar as progress_bar

        workers = min(self.concurrency, len(items))
        # httpcore's pool scans every queued request against every connection on each change, which makes one
        # client with 64 connections slower than one with 8; so shards of at most 8 workers share a client.
        n_clients = max(1, math.ceil(workers / 8))
        clients = [httpx.AsyncClient(base_url=self.base_url + "/", headers=self._headers(), timeout=self.timeout,
                                     limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
                                     verify=tls_context())
                   for _ in range(n_clients)]
        queue: asyncio.Queue = asyncio.Queue()
        for i, item in enumerate(items):
            queue.put_nowait((i, item))
        results: list = [None] * len(items)
        bar = progress_bar(total=len(items), desc=desc, progress=progress, leave=False)

        async def worker(client) -> None:
            while not queue.empty():
                i, item = queue.get_nowait()
                results[i] = await one(client, item)
                bar.update()

        try:
            await asyncio.gather(*(worker(clients[w % n_clients]) for w in range(workers)))
        finally:
            bar.close()
            for client in clients:
                await client.aclose()
        return results

    def served_models(self) -> list[str] | None:
        """What the server's ``/models`` lists, or None where it answers no such list (or nothing at all)."""
        import httpx

        try:
            reply = httpx.get(self.base_url + "/models", timeout=min(self.timeout, 10.0), verify=tls_context(),
                              headers=self._headers())
            return [m.get("id") for m in reply.json().get("data", [])] if reply.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
