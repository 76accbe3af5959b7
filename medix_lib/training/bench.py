"""What a GRPO step of the offline VLM costs, TRL's default path against this project's (``shared_prefix``), on the
same synthetic rows, settings and seed in one process: seconds of generation and of update apart, new tokens/s, the
ratio ``speedup``, and how far the runs ended apart (rewards per completion, adapter weights), which is the
correctness half of the comparison: the faster path must train the same policy.

Every way starts from one short format warm-up's adapter: from the untrained adapter no completion is well formed,
every reward is 0, advantages vanish, nothing is trained, and equal adapters would prove nothing
(``adapter_moved`` says how far each way's training moved it)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

# name -> settings: TRL's default path on a CPU (fp32, every completion runs its prompt); this project's defaults
# (the same numbers, which is what the comparison of adapters checks); and its bf16 option (autocast in the update)
WAYS = {"trl": {"shared_prefix": False, "bf16": False}, "medix": {"shared_prefix": True, "bf16": None},
        "medix_bf16": {"shared_prefix": True, "bf16": True}}


def _rows(seed: int, n: int):
    from medix_lib.data.synthesis import synthesize

    return synthesize(seed, n_text=n, n_image=n, image_size=224, test_fraction=0.2)[0]["train"]


def _warmed_up(cfg, rows, steps: int) -> dict:
    """The trainable weights after ``steps`` warm-up steps (stopping early only at a perfect format)."""
    from medix_lib import policy
    from medix_lib.training import loading, warmup

    model, processing_class, _ = loading.load(cfg)
    warm_cfg = replace(cfg, warmup_max_steps=steps, warmup_check_every=steps, warmup_target_format=1.0)
    warmup.warm_up(model, processing_class, rows, rows.select(range(4)), warm_cfg,
                   policy.is_vision(cfg.policy_model), progress=False)
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def _one_way(cfg, rows, folder: Path, start: dict, reward_funcs: list | None) -> dict:
    from transformers import PrinterCallback

    from medix_lib import rewards
    from medix_lib.training import grpo, loading, rows as rows_lib, run as run_lib

    import torch

    model, processing_class, device = loading.load(cfg)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in start:
                param.copy_(start[name])
    args = run_lib.grpo_args(cfg, folder, device, progress=False)
    if reward_funcs is not None:
        args.reward_weights = [1.0] * len(reward_funcs)
    dataset = rows_lib.grpo_dataset(rows, cfg, cfg.contract(), cfg.max_steps + 1,
                                    args.generation_batch_size // cfg.num_generations)
    trainer = grpo.trainer_class()(model=model, reward_funcs=reward_funcs or rewards.build(cfg)[0], args=args,
                                   train_dataset=dataset,
                                   processing_class=processing_class, rewards_path=folder / "rewards.jsonl",
                                   shared_prefix=cfg.shared_prefix)
    trainer.remove_callback(PrinterCallback)
    began = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - began
    steps = [h for h in trainer.state.log_history if "time/generation" in h]
    adapter = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    rewards_logged = [json.loads(line) for line in (folder / "rewards.jsonl").read_text().splitlines()]
    completions = len(rewards_logged) // max(1, len(steps))
    per_step = [{"step": h["step"], "kind": next(r["kind"] for r in rewards_logged if r["step"] == h["step"] - 1),
                 "generation_s": h["time/generation"], "update_s": h["time/update"], "reward_s": h["time/reward"],
                 "new_tokens": h["completions/mean_length"] * completions} for h in steps]
    moved = max(float((adapter[k] - start[k]).abs().max()) for k in adapter)
    return {"seconds": seconds, "steps": per_step, "prefix_shared": trainer.prefix_shared, "bf16": args.bf16,
            "adapter_moved": moved,
            "completions_per_step": completions, "rewards": [r["composite"] for r in rewards_logged],
            "adapter": adapter}


def _timed(steps: list[dict]) -> dict:
    """Totals over the steps after the first (the first pays for one-time kernel set-up in either way)."""
    timed = steps[1:] or steps
    gen, upd, rew = (sum(s[k] for s in timed) for k in ("generation_s", "update_s", "reward_s"))
    tokens = sum(s["new_tokens"] for s in timed)
    return {"steps_timed": len(timed), "generation_s": gen, "update_s": upd, "reward_s": rew,
            "step_s": (gen + upd + rew) / len(timed), "new_tokens_per_s": tokens / gen if gen else None}


def grpo_step(variant: str = "cpu_long", steps: int = 4, overrides: dict | None = None, seed: int = 0,
              warmup_steps: int = 15, reward_funcs: list | None = None) -> dict:
    """``steps`` GRPO steps each way with ``params/03_train_grpo/<variant>.yaml`` (plus ``overrides``), from the
    adapter of ``warmup_steps`` format warm-up steps; ``reward_funcs`` in place of the run's rewards (weights 1)."""
    from medix_lib import params

    load_before = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = params.load("03", variant, Path(tmp) / "03", {"max_steps": steps, "checkpoint_every": 0,
                                                             "warmup_max_steps": 0, **(overrides or {})})
        rows = _rows(seed, 8)
        start = _warmed_up(cfg, rows, warmup_steps)
        runs = {way: _one_way(replace(cfg, **settings), rows, Path(tmp) / way, start, reward_funcs)
                for way, settings in WAYS.items()}
    totals = {way: _timed(run["steps"]) for way, run in runs.items()}
    trl, same, half = runs["trl"], runs["medix"], runs["medix_bf16"]
    return {"variant": variant, "completions_per_step": trl["completions_per_step"],
            "max_completion_length": cfg.max_completion_length, "lora_last_layers": cfg.lora_last_layers,
            "warmup_steps": warmup_steps,
            **{way: {**totals[way], "per_step": run["steps"], "prefix_shared": run["prefix_shared"],
                     "bf16": run["bf16"], "adapter_moved": run["adapter_moved"]} for way, run in runs.items()},
            "speedup": totals["trl"]["step_s"] / totals["medix"]["step_s"],
            "generation_speedup": totals["trl"]["generation_s"] / totals["medix"]["generation_s"],
            "update_speedup": totals["trl"]["update_s"] / totals["medix"]["update_s"],
            "speedup_bf16": totals["trl"]["step_s"] / totals["medix_bf16"]["step_s"],
            "completions": len(trl["rewards"]), **_apart(trl, same, start), "bf16": _apart(trl, half, start),
            "load_before": load_before, "load_after": round(os.getloadavg()[0], 2)}


def _apart(a: dict, b: dict, start: dict) -> dict:
    """How far two runs ended apart: largest reward difference per completion, completions paid the same, the
    largest difference of an adapter weight, and the norm of the adapters' difference relative to the norm of what
    the first run's training moved (Adam turns rounding-level gradient differences on near-zero entries into
    differences as large as a step, so the largest entry says less than the norm)."""
    import math

    moved = math.sqrt(sum(float((a["adapter"][k] - start[k]).pow(2).sum()) for k in start))
    apart = math.sqrt(sum(float((a["adapter"][k] - b["adapter"][k]).pow(2).sum()) for k in start))
    return {"max_reward_difference": max((abs(x - y) for x, y in zip(a["rewards"], b["rewards"])), default=None),
            "identical_rewards": sum(x == y for x, y in zip(a["rewards"], b["rewards"])),
            "max_adapter_difference": max(float((a["adapter"][k] - b["adapter"][k]).abs().max()) for k in start),
            "relative_adapter_difference": apart / moved if moved else None}
