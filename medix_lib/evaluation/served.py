"""Candidates answered by a server: any OpenAI-compatible chat endpoint (vLLM, SGLang, ``transformers serve``, a
hosted API) generates the answers that the evaluation stores and judges.

The paper's ~18K answers of up to 2,048 tokens are out of reach of ``generate`` on one GPU at batch 32; the release
serves its candidates with vLLM. Here the same client as the HTTP judge (:mod:`medix_lib.serving`: bounded
concurrency, timeouts, retries with backoff) sends each prompt as the protocol builds it, pictures as data URLs. An
answer that fails after its retries is counted and left out of the store, so it is never scored and a later run
asks for it again.
"""

from __future__ import annotations

import base64
import io

from medix_lib.serving import ChatClient, run_sync

# answers in flight (a vLLM server batches them), seconds per answer of up to 2,048 tokens, retries and their backoff
SERVED = {"concurrency": 32, "timeout": 600.0, "max_retries": 3, "backoff": 1.0}


def data_url(image) -> str:
    """A PIL image as a ``data:image/png;base64,...`` URL, the form OpenAI-compatible servers take in a message.

    >>> from PIL import Image
    >>> data_url(Image.new("RGB", (2, 2)))[:30]
    'data:image/png;base64,iVBORw0K'
    """
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def with_images(messages: list[dict], images) -> list[dict]:
    """The protocol's messages with the k-th ``{"type": "image"}`` part carrying ``images[k]`` (or the one image
    ``images``) as a data URL.

    >>> from PIL import Image
    >>> msgs = with_images([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]}],
    ...                    Image.new("RGB", (2, 2)))
    >>> [p["type"] for p in msgs[0]["content"]]
    ['image_url', 'text']
    """
    queue = list(images) if isinstance(images, list | tuple) else [images]

    def part(p: dict) -> dict:
        if p.get("type") != "image":
            return p
        if not queue:
            raise ValueError("with_images: the messages have more image parts than the pictures given")
        return {"type": "image_url", "image_url": {"url": data_url(queue.pop(0))}}

    return [{**m, "content": [part(p) for p in m["content"]]} if isinstance(m["content"], list) else m
            for m in messages]


class ServedPolicy(ChatClient):
    """The policy ``model`` as served at ``base_url``: answers at temperature 0, ``None`` for a prompt that failed
    after its retries (``last_errors`` says why). Image rows are sent with their picture; a text-only server's
    refusal is such a failure, counted in the run's summary."""

    is_vision = True  # the server decides what it can read; the protocol sends pictures where rows have them

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str | None = "OPENAI_API_KEY",
                 **settings):
        unknown = set(settings) - set(SERVED)
        if unknown:
            raise ValueError(f"unknown served-candidate settings {sorted(unknown)}; valid: {', '.join(SERVED)}")
        s = {**SERVED, **settings}
        super().__init__("candidate", base_url, ("MEDIX_CANDIDATE_BASE_URL",), api_key_env, s["timeout"],
                         s["concurrency"], s["max_retries"], s["backoff"])
        self.model_name = model
        self.last_errors: list[str] = []
        served = self.served_models()
        if served and model not in served:
            raise ValueError(f"the candidate server at {self.base_url} serves {served}, not {model!r}: start it with "
                             f"that model (vllm serve {model} ...) or pass --model with one it serves")

    def answer(self, prompts: list[list[dict]], max_new_tokens: int, seed: int = 0,
               progress: bool = False) -> list[str | None]:
        """One answer per prompt (messages with pictures already in them, :func:`with_images`)."""

        async def one(client, messages):
            body = {"model": self.model_name, "messages": messages, "temperature": 0.0, "max_tokens": max_new_tokens,
                    "seed": seed}
            data, error, _ = await self.post(client, lambda: body)
            if data is None:
                return None, error
            try:
                return data["choices"][0]["message"]["content"] or "", None
            except (KeyError, IndexError, TypeError):
                return None, f"malformed reply: {str(data)[:200]}"

        results = run_sync(lambda: self.map(prompts, one, progress, "answers"))
        self.last_errors = [error for _, error in results if error]
        return [text for text, _ in results]
