"""The policy model: loading (text LM or vision-language model) and batched sampling of completions.

Notebook 02 samples base-model completions to score, 04 generates answers to judge; both go through ``generate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medix_lib import models


@dataclass
class Policy:
    model: object
    processing_class: object  # a tokenizer for text LMs, a processor for VLMs
    is_vision: bool

    @property
    def tokenizer(self):
        return getattr(self.processing_class, "tokenizer", self.processing_class)


def is_vision(name: str) -> bool:
    """Whether ``name`` is a vision-language model (read from its config; no weights are loaded)."""
    from transformers import AutoConfig

    return hasattr(AutoConfig.from_pretrained(models.resolve_path(name)), "vision_config")


def load(name: str, adapter_dir: str | None = None, min_pixels: int = 0, max_pixels: int = 0) -> Policy:
    """Load ``name`` (alias, hub id or path) for inference, with an optional PEFT adapter on top; a
    dynamic-resolution vision-language policy with bounds on a picture's pixels (:func:`models.limit_image_pixels`;
    0: its processor's own)."""
    import torch
    from transformers import AutoConfig

    path = models.resolve_path(name)
    is_vision = hasattr(AutoConfig.from_pretrained(path), "vision_config")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if is_vision:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype).to(device)
        processing_class = models.limit_image_pixels(AutoProcessor.from_pretrained(path), min_pixels, max_pixels)
    else:
        from transformers import AutoModelForCausalLM

        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
        processing_class = models.load_tokenizer(name)
    if adapter_dir:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    return Policy(model.eval(), processing_class, is_vision)


def export(name: str, adapter_dir: str, output: str) -> Path:
    """Merge the LoRA adapter ``adapter_dir`` into ``name`` (text LM or vision-language model) and write a standalone
    model folder at ``output``: weights, config, tokenizer or processor, and a model card (the adapter's own, which
    says how it was trained, under a header naming the base and the merge). Loads with ``from_pretrained`` alone, no
    PEFT, so ``vllm serve OUTPUT`` can serve it; in fp32 on CPU, in the policy's bf16 on a GPU. Returns the folder."""
    out = Path(output)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: export into a new folder")
    policy = load(name, adapter_dir)
    policy.model.save_pretrained(str(out))
    policy.processing_class.save_pretrained(str(out))
    card = Path(adapter_dir) / "README.md"
    header = (f"# {Path(adapter_dir).name}, merged\n\n`{name}` with the LoRA adapter `{adapter_dir}` merged into its "
              f"weights by `python -m medix_lib export`: a standalone model (`from_pretrained` alone, no PEFT).\n\n")
    (out / "README.md").write_text(header + (card.read_text() if card.is_file() else ""))
    return out


def generate(policy: Policy, prompts: list[list[dict]], images: list | None = None, n: int = 1,
             max_new_tokens: int = 128, temperature: float = 0.0, batch_size: int = 8, seed: int = 0,
             progress: bool = True) -> list[list[str]]:
    """``n`` completions per conversational prompt (greedy when temperature is 0), in the prompts' order. ``images``:
    per prompt an image, a list of images (as many as the prompt's image parts) or None (a vision-language policy);
    rows with and without an image may be mixed."""
    import torch
    from medix_lib.progress import bar as progress_bar

    torch.manual_seed(seed)
    tokenizer = policy.tokenizer
    tokenizer.padding_side = "left"
    texts = [policy.processing_class.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
             for p in prompts]
    # Never emit special tokens such as image placeholders: tiny models otherwise do, and decoding drops them.
    suppress = [i for i in tokenizer.all_special_ids if i != tokenizer.eos_token_id]
    images = ([[] if x is None else list(x) if isinstance(x, list | tuple) else [x] for x in images]
              if images is not None and policy.is_vision else [[] for _ in texts])
    # Processors refuse a batch where some rows have an image and others None (TypeError in Qwen2-VL, LLaVA and
    # friends), so each batch holds rows of one kind: image rows first, then text rows, each in their own order.
    image_rows = [i for i, pics in enumerate(images) if pics]
    text_rows = [i for i, pics in enumerate(images) if not pics]
    batches = [rows[s:s + batch_size] for rows in (image_rows, text_rows) for s in range(0, len(rows), batch_size)]
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    outputs: list[list[str]] = [[] for _ in texts]
    for rows in progress_bar(batches, desc="generate", progress=progress):
        chunk = [texts[i] for i in rows]
        if images[rows[0]]:
            enc = policy.processing_class(text=chunk, images=[images[i] for i in rows], return_tensors="pt",
                                          padding=True)
        else:
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(policy.model.device)
        with torch.inference_mode():
            out = policy.model.generate(**enc, max_new_tokens=max_new_tokens, num_return_sequences=n,
                                        suppress_tokens=suppress or None, pad_token_id=tokenizer.pad_token_id,
                                        **sampling)
        decoded = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for k, i in enumerate(rows):
            outputs[i] = decoded[k * n:(k + 1) * n]
    return outputs
