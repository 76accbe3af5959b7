"""What the VLM costs on this machine: parameters, generation speed, a GRPO-like training step, peak memory."""

from __future__ import annotations

import resource
import time
from pathlib import Path

from medix_lib.vlm.model import IMAGE_SIZE, IMAGE_TOKENS, freeze_tower, load, vision_tower


def _prompt(processor, image: bool) -> str:
    from medix_lib.contract import OutputContract

    question = "Which body region is shown in this image?"
    user = [{"type": "image"}, {"type": "text", "text": question}] if image else question
    system = OutputContract().system_prompt()
    messages = [{"role": "system", "content": [{"type": "text", "text": system}] if image else system},
                {"role": "user", "content": user}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _images(n: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((IMAGE_SIZE, IMAGE_SIZE, 3)) * 255).astype(np.uint8)) for _ in range(n)]


def generation_speed(model, processor, batch: int, new_tokens: int = 32) -> tuple[float, float]:
    """(tokens/s end to end, tokens/s decoding) for ``batch`` image prompts (the contract's system prompt, ~210
    tokens with the image), exactly ``new_tokens`` each, greedy, after a warm-up call; decoding speed leaves out the
    prompt's prefill (timed as a one-token generation)."""
    import torch

    processor.tokenizer.padding_side = "left"
    enc = processor(text=[_prompt(processor, True)] * batch, images=_images(batch), return_tensors="pt", padding=True)

    def timed(n: int) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                           suppress_tokens=[model.config.image_token_id], pad_token_id=processor.tokenizer.pad_token_id)
        return time.perf_counter() - start

    timed(2)
    prefill, total = timed(1), timed(new_tokens)
    return batch * new_tokens / total, batch * (new_tokens - 1) / max(1e-9, total - prefill)


def grpo_step_seconds(model, processor, generations: int = 4, completion_tokens: int = 64, steps: int = 3,
                      lora_r: int = 16) -> tuple[float, int]:
    """Seconds of one forward+backward+update of a GRPO-like policy-gradient loss over ``generations`` image
    completions, with LoRA on every LM linear layer and the projector trainable (tower frozen, in eval mode);
    returns (seconds per step, trainable parameters)."""
    import torch
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=lora_r, lora_alpha=2 * lora_r, modules_to_save=["multi_modal_projector"],
                      target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)")
    peft = freeze_tower(get_peft_model(model, lora))
    trainable = [p for p in peft.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    processor.tokenizer.padding_side = "left"
    enc = processor(text=[_prompt(processor, True)] * generations, images=_images(generations), return_tensors="pt",
                    padding=True)
    completion = torch.randint(100, 40000, (generations, completion_tokens), generator=torch.Generator().manual_seed(0))
    ids = torch.cat([enc["input_ids"], completion], 1)
    mask = torch.cat([enc["attention_mask"], torch.ones_like(completion)], 1)
    advantages = torch.linspace(-1, 1, generations)
    times = []
    for step in range(steps + 1):  # the first step warms up allocator and kernels
        start = time.perf_counter()
        peft.train()
        logits = peft(input_ids=ids, attention_mask=mask, pixel_values=enc["pixel_values"],
                      logits_to_keep=completion_tokens + 1).logits[:, :-1]
        logp = torch.log_softmax(logits.float(), -1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)
        loss = -(advantages[:, None] * logp).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:
            times.append(time.perf_counter() - start)
        assert not vision_tower(peft).training
    return sum(times) / len(times), sum(p.numel() for p in trainable)


def measure(path: str | Path, generate: bool = True) -> dict:
    """The numbers of a checkpoint (2 threads): parameters, image tokens, tokens/s at batch 1 and 8, GRPO-like step
    seconds and the process's peak resident memory (process-wide: run it in a fresh process, with ``generate=False``
    for the training step's own peak)."""
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model, processor = load(path)
    inner = model.model
    out = {"parameters": sum(p.numel() for p in model.parameters()),
           "vision_tower": sum(p.numel() for p in inner.vision_tower.parameters()),
           "projector": sum(p.numel() for p in inner.multi_modal_projector.parameters()),
           "language_model": sum(p.numel() for p in inner.language_model.parameters()),
           "image_tokens": IMAGE_TOKENS,
           "prompt_tokens_with_image": len(processor(text=[_prompt(processor, True)], images=_images(1))
                                           ["input_ids"][0])}
    if generate:
        for batch in (1, 8):
            total, decode = generation_speed(model, processor, batch)
            out[f"generate_tokens_per_s_batch{batch}"] = round(total, 1)
            out[f"decode_tokens_per_s_batch{batch}"] = round(decode, 1)
        out["peak_rss_gb_inference"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    seconds, trainable = grpo_step_seconds(model, processor)
    out.update({"grpo_step_s_4x64_lora16_projector": round(seconds, 2), "grpo_trainable_parameters": trainable,
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)})
    return out
