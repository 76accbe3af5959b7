"""The HTTP judge backend: any OpenAI-compatible chat server (vLLM, SGLang, ``transformers serve``, OpenAI)."""

from __future__ import annotations

import dataclasses
import json
import math

from medix_lib import models
from medix_lib.judge.letters import LETTERS, letter_score, masses_from_logprobs, parse_letter
from medix_lib.judge.protocol import JudgeConfigError, Score, parse_grade, parse_reply
from medix_lib.serving import ChatClient, run_sync, tls_context  # noqa: F401  (judge.run_sync)


def constraint(mode: str, choices: tuple[str, ...] = ("YES", "NO")) -> dict:
    """The request fields that make the server decode only one of ``choices`` (a letter verifier's are A, B, C).

    >>> constraint("regex", ("A", "B", "C"))
    {'regex': '(A|B|C)'}
    """
    return {"none": {},
            "guided_choice": {"guided_choice": list(choices)},  # vLLM < 0.11
            "structured_outputs": {"structured_outputs": {"choice": list(choices)}},  # vLLM >= 0.11
            "regex": {"regex": f"({'|'.join(choices)})"}}[mode]  # SGLang


CONSTRAIN_MODES = {mode: constraint(mode) for mode in ("none", "guided_choice", "structured_outputs", "regex")}


class OpenAIJudge(ChatClient):
    """Any OpenAI-compatible chat server (vLLM, SGLang, ``transformers serve``, OpenAI), through
    :class:`medix_lib.serving.ChatClient` (bounded concurrency, timeouts, retries with backoff). Temperature 0,
    ``max_tokens`` tokens.

    P(YES) comes from the first token's ``top_logprobs`` when the server returns them; otherwise the reply is parsed
    strictly (``parse_reply``). ``constrain`` asks the server to decode only YES or NO (``CONSTRAIN_MODES``). A letter
    template (kind "abc", CompassVerifier's) is read as its letter (:mod:`~medix_lib.judge.letters`): P(A) from the
    logprobs, the letter from the reply. A hub alias of the model registry (``compassverifier-3b``) is asked for by
    its hub id, the name ``vllm serve <hub id>`` serves it under.
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
        super().__init__("judge", base_url, ("MEDIX_JUDGE_BASE_URL", "OPENAI_BASE_URL"), api_key_env, timeout,
                         concurrency, max_retries, backoff)
        self.model_name = models.hub_id(model)
        self.max_tokens, self.logprobs, self.constrain = max_tokens, logprobs, constrain
        self.thinking, self.temperature, self.seed = thinking, temperature, seed
        self._template_kwargs = True  # dropped for servers that refuse it (OpenAI's own API)
        self._served_checked = False
        self.extra_body = dict(extra_body or {})

    def identity(self) -> str:
        """The model, and for sampled judges the temperature and seed: each round's verdicts are cached apart."""
        return self.model_name if not self.temperature else f"{self.model_name}@t{self.temperature:g}/s{self.seed}"

    def _body(self, messages: list[dict], rubric: bool = False, abc: bool = False) -> dict:
        choices = {} if rubric else constraint(self.constrain, LETTERS) if abc else CONSTRAIN_MODES[self.constrain]
        body = {"model": self.model_name, "messages": messages, "temperature": self.temperature,
                "max_tokens": self.max_tokens, **choices, **self.extra_body}
        if self._template_kwargs:
            body["chat_template_kwargs"] = {"enable_thinking": self.thinking}
        if self.seed is not None:
            body["seed"] = self.seed
        if self.logprobs and not rubric:
            body.update(logprobs=True, top_logprobs=5)
        return body

    @staticmethod
    def _first_alternatives(choice: dict) -> list[dict] | None:
        """The first content token's alternatives (``top_logprobs``, else the token itself), if the server sent
        log-probabilities."""
        content = (choice.get("logprobs") or {}).get("content") or []
        first = next((t for t in content if str(t.get("token", "")).strip()), None)
        return None if first is None else first.get("top_logprobs") or [first]

    @classmethod
    def _p_yes_from_logprobs(cls, choice: dict) -> float | None:
        """P(YES) renormalised over YES/NO among the first content token's alternatives, if the server sent them."""
        alternatives = cls._first_alternatives(choice)
        if alternatives is None:
            return None
        mass = {"yes": 0.0, "no": 0.0}
        for alt in alternatives:
            word = str(alt.get("token", "")).strip().strip("*\"'`").lower()
            if word in mass and alt.get("logprob") is not None:
                mass[word] += math.exp(alt["logprob"])
        total = mass["yes"] + mass["no"]
        return mass["yes"] / total if total > 0 else None

    def _interpret(self, data: dict, rubric: bool = False, abc: bool = False) -> Score:
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            return Score(error=f"malformed reply: {json.dumps(data)[:200]}")
        if rubric:
            grade = parse_grade(text)
            return Score(error=f"unparsable grade: {text[:200]!r}") if grade is None else Score(score=grade / 5)
        if abc:
            alternatives = self._first_alternatives(choice)
            score = letter_score(masses_from_logprobs(alternatives) if alternatives else None, parse_letter(text))
            return Score(error=f"unparsable reply: {text[:200]!r}") if score is None else score
        p = self._p_yes_from_logprobs(choice)
        label = parse_reply(text)
        if p is None and label is None:
            return Score(error=f"unparsable reply: {text[:200]!r}")
        return Score(p_yes=p, label=label)

    def adapt(self, response) -> bool:
        if self._template_kwargs and "chat_template_kwargs" in response.text:
            self._template_kwargs = False  # a server without chat templates: nothing to switch off there
            return True
        if self.logprobs and "logprob" in response.text.lower():
            self.logprobs = False  # this server refuses logprobs: parse replies instead, from now on
            return True
        return False

    async def _score_one(self, client, messages: list[dict], rubric: bool = False, abc: bool = False) -> Score:
        data, error, attempts = await self.post(client, lambda: self._body(messages, rubric, abc))
        if data is None:
            return Score(error=error, attempts=attempts)
        return dataclasses.replace(self._interpret(data, rubric, abc), attempts=attempts)  # a LetterScore stays one

    async def _score_all(self, prompts: list[list[dict]], progress: bool, rubric: bool, abc: bool) -> list[Score]:
        return await self.map(prompts, lambda client, messages: self._score_one(client, messages, rubric, abc),
                              progress, "judge")

    def check_served(self) -> None:
        """Stop at once when the server answers ``/models`` without this judge's model: every verdict would be a 404
        error and the run would end with nothing judged. A server without ``/models`` (or none at all) is left to the
        per-request errors."""
        if self._served_checked:
            return
        served = self.served_models()
        self._served_checked = True
        if served and self.model_name not in served:
            raise JudgeConfigError(f"the judge server at {self.base_url} serves {served}, not {self.model_name!r}: "
                                   f"start it with that model (vllm serve {self.model_name} ...) or set judge_model "
                                   f"to one it serves")

    def score(self, prompts: list[list[dict]], progress: bool = False, rubric: bool = False,
              abc: bool = False) -> list[Score]:
        self.check_served()
        return run_sync(lambda: self._score_all(prompts, progress, rubric, abc))
