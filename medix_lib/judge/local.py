"""The local judge backend: a causal LM scored by one forward pass per prompt, P(YES) from the next-token logits.
Its forward (:func:`encode_prompt`, :func:`prefix_cache`, :func:`next_token_logits`) also trains the verifier, so the
trained model is scored exactly as it was trained."""

from __future__ import annotations

import inspect
from pathlib import Path

from medix_lib import models
from medix_lib.judge.letters import LETTERS, LetterScore, letter_score, letter_token_ids
from medix_lib.judge.protocol import DATA_OPEN, Score

def _cache_argument(model) -> str:
    # transformers 5.24 renamed past_key_values to cache; the GPU environment pins an older 5.x
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def encode_prompt(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """A judge prompt's token ids as (constant prefix, item part), split where the last message's first quoted field
    opens.

    Everything before that point is the template's own text (chat markup, system prompt, instruction), the same for
    every item, so it is run once per call (:func:`prefix_cache`). The two parts are tokenised separately, so where
    the split falls never depends on the item or on the other items of a call: a pair's P(YES) is then the same
    alone or in any batch. The trained verifier is trained on exactly these ids. Chat templates that know
    ``enable_thinking`` (Qwen3) are asked for the non-thinking prompt: the verdict token follows the generation
    prompt directly. A prompt without a quoted field is one item part.
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    content = messages[-1]["content"]
    if not isinstance(content, str):
        content = "".join(part.get("text") or "" for part in content)
    head = content[:content.find(DATA_OPEN) + len(DATA_OPEN)] if DATA_OPEN in content else None
    cut = text.find(head) + len(head) if head and head in text else 0
    ids = tokenizer([text[:cut] or " ", text[cut:]], add_special_tokens=False)["input_ids"]
    return ids[0] if cut else [], ids[1]


def prefix_cache(model, prefix: list[int]):
    """The key/value cache of ``prefix`` (batch of one), or None when the prefix is empty."""
    import torch

    if not prefix:
        return None
    out = model(input_ids=torch.tensor([prefix], device=model.device), use_cache=True, logits_to_keep=1)
    return getattr(out, _cache_argument(model))


def next_token_logits(model, tails: list[list[int]], prefix_len: int = 0, cache=None, pad_id: int = 0,
                      width: int | None = None, rows: int | None = None, vocab: list[int] | None = None):
    """Next-token logits, shape (len(tails), vocab size), after ``prefix + tail`` for each tail; with ``vocab``,
    only those tokens' logits, in that order (a judge reads a handful of tokens: Gemma's 262k-row head is a twentieth
    of its forward).

    ``cache`` holds the ``prefix_len`` shared tokens for a batch of one (:func:`prefix_cache`) and is consumed: it is
    broadcast to the batch and extended in place. Tails are right-padded to ``width`` tokens (default: the longest)
    and the batch is filled up to ``rows`` rows (default: as many as tails) with copies of the first tail, so real
    tokens keep their positions after the prefix and never attend to pads, and a caller can fix the shape of every
    matrix product. The vocabulary projection runs only at each row's last real token (it costs a fifth of a 135M
    model's forward per position). Used both to judge (no grad) and to train the verifier, so the trained model is
    scored exactly as it was trained.
    """
    import torch

    device = model.device
    n = len(tails)
    width = width or max(len(t) for t in tails)
    padded = tails + [tails[0]] * ((rows or n) - n)
    ids = torch.tensor([t + [pad_id] * (width - len(t)) for t in padded], device=device)
    mask = torch.tensor([[1] * (prefix_len + len(t)) + [0] * (width - len(t)) for t in padded], device=device)
    kwargs = {}
    if cache is not None:
        cache.batch_repeat_interleave(len(padded))
        kwargs = {_cache_argument(model): cache, "use_cache": True}
    hidden = model.get_decoder()(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state
    last = torch.tensor([len(t) - 1 for t in padded], device=device)
    head, states = model.get_output_embeddings(), hidden[torch.arange(len(padded), device=device), last][:n]
    if vocab is None:
        return head(states)
    rows_of = torch.tensor(vocab, device=device)
    bias = head.bias[rows_of] if getattr(head, "bias", None) is not None else None
    return torch.nn.functional.linear(states, head.weight[rows_of], bias)


def yes_no_token_ids(tokenizer) -> tuple[list[int], list[int]]:
    """The token ids pooled into P(YES) and P(NO): the judge's scoring rule (the verifier trains on the same)."""
    # Single-token spellings only: SmolLM2 splits "YES" into "Y"+"ES", and "Y" would also count "You", "Yellow".
    def ids(words):
        single = {tokenizer.encode(w, add_special_tokens=False)[0] for w in words
                  if len(tokenizer.encode(w, add_special_tokens=False)) == 1}
        return sorted(single or {tokenizer.encode(w, add_special_tokens=False)[0] for w in words})
    yes, no = ids(["YES", "Yes", "yes", " YES", " Yes", " yes"]), ids(["NO", "No", "no", " NO", " No", " no"])
    if set(yes) & set(no):
        raise ValueError(f"judge tokenizer maps YES and NO to a shared first token {set(yes) & set(no)}")
    return yes, no


class TransformersJudge:
    """Local causal LM scored by one forward pass per prompt: P(YES) from the next-token YES/NO logits (a letter
    verifier's P(A) over the A/B/C logits, :mod:`~medix_lib.judge.letters`; a rubric's expected grade).

    Any causal LM alias, hub id or local path works (the trained verifier included). The template's constant prefix
    (chat template, system prompt, instruction: most of a judge prompt) is run once per call and its KV cache reused
    by every batch (:func:`encode_prompt`). Item parts are grouped by length into buckets ``width_step`` tokens wide
    and run in batches of a fixed number of rows per bucket, padded with dummy rows. So the shape of every matrix
    product an item goes through depends on its own length alone, never on the other items of the call: CPU and GPU
    kernels (bf16 ones especially) pick their blocking and reduction order by shape, and a pair's P(YES) moved by
    0.03 with its batch mates before this. It costs the dummy rows of partly filled batches.
    """

    name = "transformers"

    # Rows per batch and bucket width, measured on 2 CPU cores (fp32, 20-layer verifier): 27-29 pairs/s on 256
    # distinct pairs at 8 rows x 16 tokens as at 16 x 8, and 15-17 pairs/s instead of 9.5-11 on GRPO-sized calls of 20
    # pairs, where dummy rows of part-filled batches dominate.
    BATCH_SIZE = 8
    WIDTH_STEP = 16  # item parts are padded to a multiple of this many tokens

    def __init__(self, model: str, batch_size: int = BATCH_SIZE, device: str = "auto", max_batch_tokens: int = 8192,
                 width_step: int = WIDTH_STEP, dtype: str = "auto"):
        self.model_name = models.check_model_name(model, "causal_lm")
        if batch_size < 1 or width_step < 1 or max_batch_tokens < width_step:
            raise ValueError(f"judge needs batch_size >= 1, width_step >= 1 and max_batch_tokens >= width_step; got "
                             f"{batch_size}, {width_step}, {max_batch_tokens}")
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype  # "auto": bf16 on GPUs and on CPUs with native bf16, else fp32 (models.inference_dtype)
        self.max_batch_tokens = max_batch_tokens
        self.width_step = width_step
        self._prefix_kv: dict[tuple[int, ...], object] = {}  # the template prefix's KV cache, kept across calls
        # An ensemble verifier runs each member as a judge of its own and averages their YES-NO margins
        self._members = [TransformersJudge(m, batch_size, device, max_batch_tokens, width_step, dtype)
                         for m in models.ensemble_members(self.model_name)]

    def identity(self) -> str:
        """What the cache key must change with: the model name and, for local weights, their size and mtime (a
        retrained verifier saved to the same path must not reuse its predecessor's verdicts)."""
        if self._members:
            return "|".join([self.model_name] + [m.identity() for m in self._members])
        path = Path(models.resolve_path(self.model_name))
        stamps = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                  for p in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))] if path.is_dir() else []
        return "|".join([self.model_name, *stamps])

    def _batches(self, lengths: list[int]) -> list[tuple[int, int, list[int]]]:
        """(width, rows, item indices) per batch: items bucketed by padded width, a fixed row count per width.

        >>> TransformersJudge("smollm2-135m-instruct", batch_size=2, width_step=8)._batches([9, 3, 12, 5, 30])
        [(8, 2, [1, 3]), (16, 2, [0, 2]), (32, 2, [4])]
        """
        buckets: dict[int, list[int]] = {}
        for i, n in enumerate(lengths):
            buckets.setdefault(-(-max(1, n) // self.width_step) * self.width_step, []).append(i)
        batches = []
        for width, items in sorted(buckets.items()):
            rows = max(1, min(self.batch_size, self.max_batch_tokens // width))
            batches += [(width, rows, items[i:i + rows]) for i in range(0, len(items), rows)]
        return batches

    def _run(self, prompts: list[list[dict]], progress: bool, rubric: bool = False, abc: bool = False,
             margins: bool = False) -> list[float | LetterScore | Exception]:
        """Per prompt: P(YES) (``margins``: the YES-NO log-odds it is the sigmoid of), the rubric's grade or a
        letter score; an exception for the items of a failed batch."""
        if self._members:
            return self._ensemble(prompts, progress, rubric or abc, margins)
        import copy

        import torch
        from medix_lib.progress import bar as progress_bar

        tokenizer = models.load_tokenizer(self.model_name)
        model = models.load_causal_lm(self.model_name, self.device, self.dtype)
        yes_ids, no_ids = yes_no_token_ids(tokenizer)
        digit_ids = [tokenizer.encode(str(d), add_special_tokens=False)[0] for d in range(6)] if rubric else None
        letter_ids = letter_token_ids(tokenizer) if abc else None
        # the head runs over the tokens read below only: their logits are the columns, in this order
        groups_read = [[i] for i in digit_ids] if rubric else letter_ids if abc else [yes_ids, no_ids]
        vocab = [t for ids in groups_read for t in ids]
        starts = [sum(map(len, groups_read[:k])) for k in range(len(groups_read) + 1)]
        columns = [list(range(a, b)) for a, b in zip(starts, starts[1:])]
        encoded = [encode_prompt(tokenizer, p) for p in prompts]
        results: list[float | LetterScore | Exception] = [0.0] * len(prompts)
        groups: dict[tuple[int, ...], list[int]] = {}  # one group per distinct prefix: one, for a single template
        for i, (prefix, _) in enumerate(encoded):
            groups.setdefault(tuple(prefix), []).append(i)
        for prefix, members in groups.items():
            if prefix not in self._prefix_kv:
                with torch.inference_mode():
                    self._prefix_kv[prefix] = prefix_cache(model, list(prefix))
            prefix_kv = self._prefix_kv[prefix]
            tails = [encoded[i][1] for i in members]
            for width, rows, batch in progress_bar(self._batches([len(t) for t in tails]), desc="judge",
                                                  progress=progress, leave=False):
                try:
                    with torch.inference_mode():
                        # the forward appends to the cache it is given, so every batch gets its own copy
                        logits = next_token_logits(model, [tails[i] for i in batch], len(prefix),
                                                   copy.deepcopy(prefix_kv), tokenizer.pad_token_id or 0,
                                                   width, rows, vocab).float()
                    if rubric:  # the expected grade under the next-token distribution over the digits 0-5, / 5
                        grades = torch.softmax(logits, -1) @ torch.arange(6.0, device=logits.device)
                        values = (grades / 5).tolist()
                    elif abc:  # P(A) over the three letters' mass: C (invalid) counts against YES, as B does
                        masses = torch.stack([torch.logsumexp(logits[:, c], -1) for c in columns], -1)
                        values = [letter_score(dict(zip(LETTERS, p))) for p in torch.softmax(masses, -1).tolist()]
                    else:
                        yes, no = columns
                        margin = torch.logsumexp(logits[:, yes], -1) - torch.logsumexp(logits[:, no], -1)
                        values = (margin if margins else torch.sigmoid(margin)).tolist()
                    for i, p in zip(batch, values):
                        results[members[i]] = p
                except Exception as err:  # one bad batch (e.g. out of memory) fails its items, not the whole call
                    for i in batch:
                        results[members[i]] = err
        return results

    def _ensemble(self, prompts: list[list[dict]], progress: bool, graded: bool,
                  margins: bool) -> list[float | Exception]:
        """The members' mean YES-NO margin (P(YES) = its sigmoid): the mean log-odds, so a member that is sure
        weighs more than one that is not, and one member equals the single model."""
        import math

        if graded:
            raise ValueError(f"judge model {self.model_name!r} is an ensemble of YES/NO verifiers: it has no rubric "
                             f"or letter verdicts; use it with a YES/NO template")
        per_member = [m._run(prompts, progress, margins=True) for m in self._members]
        results: list[float | Exception] = []
        for values in zip(*per_member):
            err = next((v for v in values if isinstance(v, Exception)), None)
            mean = None if err else sum(values) / len(values)
            results.append(err if err else mean if margins else 1 / (1 + math.exp(-mean)))
        return results

    def p_yes(self, prompts: list[list[dict]], progress: bool = False) -> list[float]:
        """P(YES) per prompt, in order; raises on the first failed batch."""
        return self._raise_first(self._run(prompts, progress))

    def log_odds(self, prompts: list[list[dict]], progress: bool = False) -> list[float]:
        """The YES-NO margin per prompt (P(YES) is its sigmoid), in order; raises on the first failed batch."""
        return self._raise_first(self._run(prompts, progress, margins=True))

    @staticmethod
    def _raise_first(results: list) -> list[float]:
        for r in results:
            if isinstance(r, Exception):
                raise r
        return results

    def score(self, prompts: list[list[dict]], progress: bool = False, rubric: bool = False,
              abc: bool = False) -> list[Score]:
        """One score per prompt: P(YES); with ``rubric`` the expected grade / 5; with ``abc`` a
        :class:`~medix_lib.judge.letters.LetterScore` (P(A), the likeliest letter)."""
        return [Score(error=f"{type(r).__name__}: {r}") if isinstance(r, Exception)
                else r if abc else Score(score=r) if rubric else Score(p_yes=r)
                for r in self._run(prompts, progress, rubric, abc)]
