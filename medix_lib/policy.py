"""The policy model: loading (text LM or vision-language model) and batched sampling of completions.

Notebook 02 samples base-model completions to score, 04 generates answers to judge; both go through ``generate``.
"""

from __future__ import annotations

from dataclasses import dataclass

from medix_lib import models


@dataclass
class Policy:
    model: object
    processing_class: object  # a tokenizer for text LMs, a processor for VLMs
    is_vision: bool

    @property
    def tokenizer(self):
        return getattr(self.processing_class, "tokenizer", self.processing_class)


def load(name: str, adapter_dir: str | None = None) -> Policy:
    """Load ``name`` (alias, hub id or path) for inference, with an optional PEFT adapter on top."""
    import torch
    from transformers import AutoConfig

    path = models.resolve_path(name)
    is_vision = hasattr(AutoConfig.from_pretrained(path), "vision_config")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if is_vision:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype).to(device)
        processing_class = AutoProcessor.from_pretrained(path)
    else:
        from transformers import AutoModelForCausalLM

        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
        processing_class = models.load_tokenizer(name)
    if adapter_dir:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    return Policy(model.eval(), processing_class, is_vision)


def generate(policy: Policy, prompts: list[list[dict]], images: list | None = None, n: int = 1,
             max_new_tokens: int = 128, temperature: float = 0.0, batch_size: int = 8, seed: int = 0,
             progress: bool = True) -> list[list[str]]:
    """``n`` completions per conversational prompt (greedy when temperature is 0)."""
    import torch
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    tokenizer = policy.tokenizer
    tokenizer.padding_side = "left"
    texts = [policy.processing_class.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
             for p in prompts]
    # Never emit special tokens such as image placeholders: tiny models otherwise do, and decoding drops them.
    suppress = [i for i in tokenizer.all_special_ids if i != tokenizer.eos_token_id]
    outputs: list[list[str]] = []
    for start in tqdm(range(0, len(texts), batch_size), desc="generate", disable=not progress):
        chunk = texts[start:start + batch_size]
        if policy.is_vision and images is not None:
            chunk_images = [[img] if img is not None else None for img in images[start:start + batch_size]]
            enc = policy.processing_class(text=chunk, images=chunk_images, return_tensors="pt", padding=True)
        else:
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(policy.model.device)
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        with torch.inference_mode():
            out = policy.model.generate(**enc, max_new_tokens=max_new_tokens, num_return_sequences=n,
                                        suppress_tokens=suppress or None, pad_token_id=tokenizer.pad_token_id,
                                        **sampling)
        decoded = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        outputs.extend(decoded[i:i + n] for i in range(0, len(decoded), n))
    return outputs
