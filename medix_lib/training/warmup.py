"""The format warm-up (cold start): supervised steps on references written in the output contract, stopped when the
policy writes the whole contract on held-out prompts (format reward >= ``warmup_target_format``), not after a fixed
number of steps.

A small base model almost never writes ``<answer>`` tags unprompted, so every completion of a group scores the same
and GRPO's group-relative advantage is zero. The warm-up makes the layout reachable; what the warm-up does not teach
is left for RL: image rows are warmed up with a modality tag drawn at random (``warmup_image_tags: random``) and
without the questions that ask for the modality, so before RL the tag carries no information about the picture.
"""

from __future__ import annotations

import random

from medix_lib import data
from medix_lib.contract import MODALITIES
from medix_lib.rewards import FormatReward

REASONING = "Reasoning briefly."  # short: every token of it is paid for in every rollout
MODALITY_QUESTION_FAMILIES = ("syn-image_modality-", "syn-image_modality_yes_no-")


def asks_modality(row_id: str) -> bool:
    return row_id.startswith(MODALITY_QUESTION_FAMILIES)


def targets(rows, contract, image_tags: str, seed: int) -> list[str]:
    """The completion each warm-up row is trained to write."""
    rng = random.Random(seed)
    out = []
    for modality, answer, image in zip(rows["modality"], rows["answer"], rows["image"]):
        tag = rng.choice(MODALITIES) if image is not None and image_tags == "random" else modality
        out.append(contract.format_reference(tag, REASONING, answer))
    return out


def _batch_inputs(processing_class, prompts: list[str], completions: list[str], images: list[list], device):
    """Tokenised prompt + completion with the loss on completion tokens only; each row's pictures where it has any."""
    tokenizer = getattr(processing_class, "tokenizer", processing_class)
    tokenizer.padding_side = "right"
    texts = [p + c + tokenizer.eos_token for p, c in zip(prompts, completions)]
    if images[0]:
        enc = processing_class(text=texts, images=images, return_tensors="pt", padding=True)
        lengths = [len(processing_class(text=[p], images=[pics])["input_ids"][0]) for p, pics in zip(prompts, images)]
    else:
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    labels = enc["input_ids"].clone()
    for i, n in enumerate(lengths):
        labels[i, :n] = -100
    labels[enc["attention_mask"] == 0] = -100
    return {**{k: v.to(device) for k, v in enc.items()}, "labels": labels.to(device)}


def format_rate(model, processing_class, rows, contract, max_new_tokens: int, is_vision: bool) -> float:
    """Mean format reward of greedy completions on ``rows`` (held-out prompts)."""
    from medix_lib import policy

    prompts = data.to_grpo(rows, contract)["prompt"]
    texts = policy.generate(policy.Policy(model, processing_class, is_vision), prompts,
                            images=data.row_pictures(rows) if is_vision else None, max_new_tokens=max_new_tokens,
                            progress=False)
    return sum(FormatReward(contract)([t[0] for t in texts])) / max(1, len(texts))


def warm_up(model, processing_class, rows, check_rows, cfg, is_vision: bool, progress: bool = True) -> dict:
    """Train on ``rows`` in batches of one kind until the format rate on ``check_rows`` reaches the target (checked
    every ``warmup_check_every`` steps) or ``warmup_max_steps`` is spent. Returns losses and the format-rate curve."""
    import torch
    from medix_lib.progress import bar as progress_bar

    from medix_lib import data

    contract = cfg.contract()
    rows = rows.filter(lambda r: not asks_modality(r["id"]), desc="warm-up rows (no modality questions)")
    curve = [(0, format_rate(model, processing_class, check_rows, contract, cfg.max_completion_length, is_vision))]
    losses: list[float] = []
    if len(rows) == 0 or cfg.warmup_max_steps == 0 or curve[-1][1] >= cfg.warmup_target_format:
        reached = curve[-1][1] >= cfg.warmup_target_format
        return {"losses": losses, "format_curve": curve, "steps": 0, "reached": reached}
    prompts = [processing_class.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
               for p in data.to_grpo(rows, contract)["prompt"]]
    completions = targets(rows, contract, cfg.warmup_image_tags, cfg.seed)
    images = data.row_pictures(rows) if is_vision else [[] for _ in range(len(rows))]
    kinds = {kind: [i for i, pics in enumerate(images) if bool(pics) == kind] for kind in (True, False)}
    kinds = {k: v for k, v in kinds.items() if v}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.warmup_learning_rate,
                                  weight_decay=cfg.weight_decay)
    rng = random.Random(cfg.seed)
    model.train()
    bar = progress_bar(range(1, cfg.warmup_max_steps + 1), desc="format warm-up", progress=progress)
    for step in bar:
        pool = kinds[rng.choice(sorted(kinds))]
        batch = [rng.choice(pool) for _ in range(cfg.warmup_batch_size)]
        inputs = _batch_inputs(processing_class, [prompts[i] for i in batch], [completions[i] for i in batch],
                               [images[i] for i in batch], model.device)
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", format=f"{curve[-1][1]:.2f}")
        if step % cfg.warmup_check_every == 0:
            model.eval()
            curve.append((step, format_rate(model, processing_class, check_rows, contract, cfg.max_completion_length,
                                            is_vision)))
            model.train()
            if curve[-1][1] >= cfg.warmup_target_format:
                break
    model.eval()
    return {"losses": losses, "format_curve": curve, "steps": len(losses),
            "reached": curve[-1][1] >= cfg.warmup_target_format}
