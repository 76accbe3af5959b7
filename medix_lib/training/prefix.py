"""A group's prompt computed once. GRPO samples ``num_generations`` completions per prompt, and TRL's transformers
path runs every prompt once per completion, in the rollout's prefill and again in the update's forward and backward.
On a CPU the prompt is most of both: the output contract's system prompt, the question and, for a picture, 49 image
tokens (~200 tokens) against at most 40 completion tokens (measured by ``python -m medix_lib bench``, section
``grpo_step``). Here each distinct (prompt, picture) runs once, its key/value cache is copied to every completion of
its group, and the completions continue from that cache: the same tokens at the same positions under the same mask,
so the same numbers up to float rounding, at a fraction of the prompt's cost.

Both functions answer ``None`` (the caller takes TRL's own path) where the sharing does not apply: no prompt repeats,
several pictures per prompt or pictures not one per row, positions that depend on the pictures (Qwen-VL's multimodal
RoPE), or a head with logit scaling.
"""

from __future__ import annotations

import hashlib


def distinct_rows(input_ids, attention_mask, pixel_values=None):
    """(first, inverse): the index of each distinct row's first occurrence, and for every row the position of its
    distinct row in ``first`` (so ``rows[first][inverse] == rows``). A row is its tokens under its mask plus its
    picture's pixels: the same question about two pictures is two rows.

    >>> import torch
    >>> ids = torch.tensor([[0, 5, 6], [0, 5, 6], [7, 8, 9], [7, 8, 9]])
    >>> first, inverse = distinct_rows(ids, torch.ones_like(ids))
    >>> first.tolist(), inverse.tolist()
    ([0, 2], [0, 0, 1, 1])
    """
    import torch

    seen: dict[tuple, int] = {}
    first, inverse = [], []
    for i in range(input_ids.size(0)):
        picture = None if pixel_values is None else pixel_values[i].detach().cpu().numpy().tobytes()
        key = (tuple(input_ids[i][attention_mask[i].bool()].tolist()),
               None if picture is None else hashlib.sha1(picture).digest())
        if key not in seen:
            seen[key] = len(first)
            first.append(i)
        inverse.append(seen[key])
    return torch.tensor(first, device=input_ids.device), torch.tensor(inverse, device=input_ids.device)


def _shareable(input_ids, pixel_values, extra) -> bool:
    return not extra and input_ids.size(1) >= 2 and (pixel_values is None or pixel_values.size(0) == input_ids.size(0))


def plain_positions(model) -> bool:
    """Whether ``model`` places tokens by their index alone. Qwen-VL's multimodal RoPE derives positions from the
    whole sequence's pictures (``get_rope_index``, ``rope_deltas``), which a prompt run apart from its completions
    would get wrong: such models take TRL's own path.

    >>> plain_positions(_tiny())
    True
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return not any(hasattr(module, "get_rope_index") or hasattr(module, "rope_deltas")
                   for module in (inner, inner.base_model))


def _tiny():
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=8, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1))


def positions(attention_mask):
    """Position ids of a left-padded batch, as ``generate`` makes them (padding at 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _cache(output):
    return output.cache if hasattr(output, "cache") else output.past_key_values  # transformers >= 5.18 / before


def _cache_kwarg(output) -> str:
    return "cache" if hasattr(output, "cache") else "past_key_values"


def generate(model, original_generate, input_ids=None, attention_mask=None, pixel_values=None, generation_config=None,
             **extra):
    """``model.generate`` with each distinct prompt prefilled once: the prompts but their last token run as a batch of
    distinct rows, their cache is copied to every row, and ``original_generate`` continues from it (it feeds the last
    prompt token and samples on; pictures are in the cache already). Other model inputs (tensors) are not shared."""
    import torch

    inputs = {k: v for k, v in extra.items() if isinstance(v, torch.Tensor)}
    if (input_ids is None or attention_mask is None or not _shareable(input_ids, pixel_values, inputs)
            or not plain_positions(model)):
        return None
    first, inverse = distinct_rows(input_ids, attention_mask, pixel_values)
    if len(first) == input_ids.size(0):
        return None
    pos = positions(attention_mask)
    prefill = {"input_ids": input_ids[first, :-1], "attention_mask": attention_mask[first, :-1],
               "position_ids": pos[first, :-1], "use_cache": True,
               "logits_to_keep": 1}  # only the cache is used: no vocabulary-wide logits over the whole prompt
    if pixel_values is not None:
        prefill["pixel_values"] = pixel_values[first]
    with torch.no_grad():
        out = model(**prefill)
    cache = _cache(out)
    cache.batch_select_indices(inverse)
    return original_generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=generation_config,
                             **extra, **{_cache_kwarg(out): cache})


class SharedPrefixGeneration:
    """Within the ``with`` block, ``model.generate`` prefills each distinct prompt once (see :func:`generate`);
    outside it, or where sharing does not apply, it is the model's own."""

    def __init__(self, model):
        self.model = model
        self.shared = 0  # generate calls that shared their prompts

    def __enter__(self):
        original = self.model.generate

        def shared(*args, **kwargs):
            out = None if args else generate(self.model, original, **kwargs)
            self.shared += out is not None
            return original(*args, **kwargs) if out is None else out

        self.model.generate = shared
        return self

    def __exit__(self, *exc):
        del self.model.generate  # the class's method again


def backbone_and_head(model):
    """The transformers model's backbone (text or vision-language) and its LM head, through a PEFT wrapper; ``None``
    where the head scales or caps its logits (the log-probabilities below would then differ from TRL's)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not plain_positions(inner):
        return None
    text = inner.config.get_text_config()
    if any(getattr(text, k, None) not in (None, 1.0) for k in ("final_logit_softcapping", "logit_scale",
                                                                "output_multiplier", "lm_head_multiplier",
                                                                "logits_scaling")):
        return None
    return inner.base_model, inner.get_output_embeddings()


def logps_and_entropies(model, input_ids, attention_mask, logits_to_keep: int, temperature: float,
                        compute_entropy: bool = False, pixel_values=None, **extra):
    """Per-token log-probabilities (and entropies) of the last ``logits_to_keep`` tokens, as TRL's
    ``_get_per_token_logps_and_entropies`` computes them, with each distinct prompt run once: the prompts with their
    cache (gradients flow through it into the prompt's adapted layers), the cache copied to every row, then the
    completions. ``None`` where sharing does not apply."""
    import torch

    parts = backbone_and_head(model)
    n_prompt = input_ids.size(1) - logits_to_keep
    if parts is None or n_prompt < 1 or not _shareable(input_ids, pixel_values, extra):
        return None
    first, inverse = distinct_rows(input_ids[:, :n_prompt], attention_mask[:, :n_prompt], pixel_values)
    if len(first) == input_ids.size(0):
        return None
    backbone, head = parts
    # No position ids, as in TRL's forward: the model counts from 0 over the padding too (RoPE sees only distances)
    prompt = {"input_ids": input_ids[first, :n_prompt], "attention_mask": attention_mask[first, :n_prompt],
              "use_cache": True}
    if pixel_values is not None:
        prompt["pixel_values"] = pixel_values[first]
    out = backbone(**prompt)
    hidden = [out.last_hidden_state[inverse, -1:]]  # the last prompt token predicts the first completion token
    if logits_to_keep > 1:
        cache = _cache(out)
        cache.batch_select_indices(inverse)
        rest = backbone(input_ids=input_ids[:, n_prompt:-1], attention_mask=attention_mask[:, :-1], use_cache=True,
                        **{_cache_kwarg(out): cache})
        hidden.append(rest.last_hidden_state)
    logits = head(torch.cat(hidden, dim=1)).float() / temperature
    logp = logits.log_softmax(-1)
    token_logps = logp.gather(-1, input_ids[:, n_prompt:].unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1) if compute_entropy else None
    return token_logps, entropy
