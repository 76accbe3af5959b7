"""The rows a training run uses: RL prompts, format warm-up rows and held-out format-check prompts, drawn from the
data stage's training split; and the order that keeps every GRPO generation batch of one kind (image or text)."""

from __future__ import annotations

import random

from medix_lib import data

MODALITY_QUESTION = "image_modality"  # the question family whose answer names the modality (data/images.py)


def training_rows(cfg, has_vision: bool):
    """(rl, warmup, check) from notebook 01's training split, after ``max_answer_words`` keeps answer-sized references.

    ``check`` are held-out prompts for the warm-up's stopping rule (never trained on). Image rows are used only when
    the policy sees images. The split is by row; rows are shuffled with the seed first.
    """
    from datasets import load_from_disk

    ds = load_from_disk(str(cfg.upstream(cfg.dataset_dir)))["train"]
    if not has_vision:
        ds = ds.filter(lambda row: row["image"] is None, desc="text rows (text-only policy)")
    if cfg.max_answer_words:
        ds = ds.filter(lambda row: len(row["answer"].split()) <= cfg.max_answer_words, desc="answer-sized references")
    ds = ds.shuffle(seed=cfg.seed)
    n_check = min(cfg.warmup_check_prompts, len(ds) // 4)
    n_rl = min(cfg.max_train_rows, len(ds) - n_check)

    def part(start: int, stop: int):  # datasets refuses an empty range that starts at the end
        return ds.select(range(start, stop)) if stop > start else ds.select(range(0))

    return part(0, n_rl), part(n_rl + n_check, len(ds)), part(n_rl, n_rl + n_check)


def homogeneous_order(with_image: list[bool], prompts_per_batch: int, n_batches: int, seed: int,
                      modality: list[str] | None = None) -> list[int]:
    """Row indices for ``n_batches`` generation batches of ``prompts_per_batch`` prompts, each batch all image rows or
    all text rows, the batches in a seeded random order; rows are reused round robin when a kind runs out.

    Processors refuse a batch where some rows have an image and others None; TRL's trainer hands them exactly that.
    Feeding it batches of one kind by construction (with its own shuffling off) avoids the case altogether.

    With ``modality`` (per row), image rows are drawn evenly across modalities. Otherwise the modality reward pays
    most for the training split's commonest tag whatever the picture, and a policy that cannot yet tell pictures
    apart learns to write that tag everywhere (measured: <MRI_SCAN> on 34 of 45 held-out images, cpu_long at 6d1ff97).
    Balance removes that incentive, not a missing signal: where unseen pictures resemble no training picture of their
    modality (``vlm.modality_probe``) the tag still settles on one value (<GRAPHICS>, 39 of 45, at 8fef1ff).

    >>> kind = [True, False, True, False, False]
    >>> order = homogeneous_order(kind, 2, 4, seed=0)
    >>> len(order), all(len({kind[i] for i in order[b:b + 2]}) == 1 for b in range(0, 8, 2))
    (8, True)
    >>> mods = ["MRI"] * 6 + ["CT"] * 2
    >>> sorted(mods[i] for i in homogeneous_order([True] * 8, 2, 4, seed=0, modality=mods))
    ['CT', 'CT', 'CT', 'CT', 'MRI', 'MRI', 'MRI', 'MRI']
    """
    rng = random.Random(seed)
    kinds = {kind: [i for i, has in enumerate(with_image) if has == kind] for kind in (True, False)}
    kinds = {k: v for k, v in kinds.items() if v}
    total = sum(len(v) for v in kinds.values())
    # batches of each kind in proportion to its rows, at least one for a kind that has rows
    share = {k: max(1, round(n_batches * len(v) / total)) for k, v in kinds.items()}
    while sum(share.values()) > n_batches:
        share[max(share, key=share.get)] -= 1
    while sum(share.values()) < n_batches:
        share[max(kinds, key=lambda k: len(kinds[k]))] += 1
    batches = []
    for kind, rows in kinds.items():
        need = share[kind] * prompts_per_batch
        stream = _round_robin(rows, [modality[i] for i in rows] if kind and modality else [0] * len(rows), need, rng)
        batches += [stream[i:i + prompts_per_batch] for i in range(0, need, prompts_per_batch)]
    rng.shuffle(batches)
    return [i for batch in batches for i in batch]


def _round_robin(rows: list[int], groups: list, need: int, rng: random.Random) -> list[int]:
    """``need`` rows taken from each group in turn (groups in a seeded order), each group's rows shuffled and cycled."""
    pools: dict = {}
    for row, group in zip(rows, groups):
        pools.setdefault(group, []).append(row)
    order = sorted(pools, key=str)
    rng.shuffle(order)
    for pool in pools.values():
        rng.shuffle(pool)
    drawn = []
    for k in range(need):
        pool = pools[order[k % len(order)]]
        drawn.append(pool[(k // len(order)) % len(pool)])
    return drawn


def grpo_dataset(rows, cfg, contract, n_batches: int, prompts_per_batch: int):
    """The RL rows in conversational form (``data.to_grpo``), ordered into homogeneous generation batches, image rows
    balanced across modalities."""
    prompts = data.to_grpo(rows, contract)
    order = homogeneous_order(data.has_image(rows), prompts_per_batch, n_batches, cfg.seed, list(rows["modality"]))
    return prompts.select(order)
