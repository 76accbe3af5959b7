"""One training run: load the policy, warm it up on the format until it writes the contract, then GRPO with
checkpoints; a run killed mid-training resumes from its last checkpoint (``resume: true``, or ``python -m medix_lib
run --only 03 --resume``) and ends where an uninterrupted run with the same seed ends."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from medix_lib import artifacts, rewards
from medix_lib import progress as progress_lib
from medix_lib.training import grpo, loading, rows as rows_lib, warmup


class ResumeError(ValueError):
    """A checkpoint on disk was written by another configuration."""


def config_hash(cfg) -> str:
    """What a checkpoint must match to be resumed: every parameter that shapes training (not run bookkeeping)."""
    skip = {"variant", "output_dir", "resume", "logging_steps", "checkpoint_every", "keep_checkpoints",
            "rollouts_every"}
    payload = {k: v for k, v in cfg.to_dict().items() if k not in skip}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def grpo_args(cfg, output: Path, device: str, progress: bool = True):
    from trl import GRPOConfig

    use_gpu = device == "cuda"
    return GRPOConfig(
        output_dir=str(output / "checkpoints"), use_cpu=not use_gpu, bf16=loading.use_bf16(cfg, device),
        gradient_checkpointing=use_gpu,  # TRL turns it on by default; on CPU it only trades speed for memory we have
        seed=cfg.seed, learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler_type,
        weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        optim="adamw_8bit" if (use_gpu and cfg.use_unsloth and loading.unsloth_available()) else "adamw_torch",
        max_steps=cfg.max_steps, num_generations=cfg.num_generations,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        steps_per_generation=cfg.steps_per_generation or None, num_iterations=cfg.num_iterations,
        max_completion_length=cfg.max_completion_length, temperature=cfg.temperature, loss_type=cfg.loss_type,
        importance_sampling_level=cfg.importance_sampling_level, beta=cfg.beta, epsilon=cfg.epsilon,
        epsilon_high=cfg.epsilon_high, reward_weights=rewards.build(cfg)[1], logging_steps=cfg.logging_steps,
        save_strategy="steps" if cfg.checkpoint_every else "no", save_steps=cfg.checkpoint_every or 500,
        save_total_limit=cfg.keep_checkpoints or None,
        save_only_model=False, report_to="none", disable_tqdm=not progress_lib.enabled(progress),
        dataloader_num_workers=0,
        shuffle_dataset=False,  # the dataset is ordered into batches of one kind; see rows.homogeneous_order
        use_vllm=cfg.use_vllm, **({"vllm_mode": cfg.vllm_mode} if cfg.use_vllm else {}),
    )


def _last_checkpoint(output: Path, expected: str) -> str | None:
    found = sorted((output / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if not found:
        return None
    written = (output / "checkpoints" / "config_hash.txt")
    if written.is_file() and written.read_text().strip() != expected:
        raise ResumeError(f"{output / 'checkpoints'} holds checkpoints of another configuration (hash "
                          f"{written.read_text().strip()}, this one {expected}); remove them or use another output "
                          f"folder")
    return str(found[-1])


def start_checkpoints(folder: Path, expected: str, keep: bool) -> None:
    """Stamp ``folder`` with this run's configuration hash. A fresh run (``keep`` false) first removes an earlier
    run's checkpoints: left beside the new hash they would pass for this run's, and a ``--resume`` after a crash
    before the new run overwrote them would continue the old run."""
    folder.mkdir(parents=True, exist_ok=True)
    if not keep:
        for stale in folder.glob("checkpoint-*"):
            shutil.rmtree(stale)
    (folder / "config_hash.txt").write_text(expected)


def train(cfg, progress: bool = True) -> dict:
    """Warm-up, then GRPO; writes ``sft_model/`` (the policy before RL), ``model/`` (after), each adapter with a model
    card, ``log_history.json`` and ``warmup.json`` under ``cfg.output_dir``. Returns what the notebook reports."""
    import torch

    from medix_lib import policy

    output = Path(cfg.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    expected = config_hash(cfg)
    checkpoint = _last_checkpoint(output, expected) if cfg.resume else None
    model, processing_class, device = loading.load(cfg)
    is_vision = policy.is_vision(cfg.policy_model)
    rl_rows, warm_rows, check_rows = rows_lib.training_rows(cfg, is_vision)
    if cfg.validation_every:
        from medix_lib.training import validation

        warm_rows, validation_rows = validation.held_out(warm_rows, cfg.validation_rows)

    warm = {"losses": [], "format_curve": [], "steps": 0, "reached": None, "seconds": 0.0}
    if checkpoint is None:
        start = time.perf_counter()
        warm = warmup.warm_up(model, processing_class, warm_rows, check_rows, cfg, is_vision, progress)
        warm["seconds"] = time.perf_counter() - start
        model.save_pretrained(str(output / "sft_model"))
        (output / "warmup.json").write_text(json.dumps(warm, indent=1))
    else:
        warm = json.loads((output / "warmup.json").read_text())

    args = grpo_args(cfg, output, device, progress)
    prompts_per_batch = args.generation_batch_size // cfg.num_generations
    n_batches = -(-cfg.max_steps * cfg.gradient_accumulation_steps // args.steps_per_generation) + 1
    dataset = rows_lib.grpo_dataset(rl_rows, cfg, cfg.contract(), n_batches, prompts_per_batch)
    reward_funcs, weights = rewards.build(cfg)
    rewards_path, rollouts_path = output / "completion_rewards.jsonl", output / "rollouts.jsonl"
    validation_path = output / "validation.jsonl"
    logs = (rewards_path, rollouts_path) + ((validation_path,) if cfg.validation_every else ())
    for path in logs:  # a resumed run redoes the steps after its checkpoint: logged again
        keep_steps_before(path, int(Path(checkpoint).name.split("-")[1]) if checkpoint else 0)
    trainer = grpo.trainer_class()(
        model=model, reward_funcs=reward_funcs, args=args, train_dataset=dataset, processing_class=processing_class,
        group_filter=tuple(cfg.group_filter) if cfg.group_filter else None, rewards_path=rewards_path,
        rollouts_path=rollouts_path, rollouts_every=cfg.rollouts_every,
        # measured and tested on the CPU path; on a GPU rollouts come from vLLM or Unsloth's patched generate
        shared_prefix=cfg.shared_prefix and device == "cpu",
        group_refill=cfg.group_refill)
    if not progress_lib.enabled(progress):  # no bar, and no dict printed per step in its place: the notebook tabulates
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    if cfg.validation_every:
        trainer.add_callback(validation.ValidationCallback(
            validation_rows, processing_class, is_vision, cfg, reward_funcs, weights, validation_path,
            output / "best_model"))
    start_checkpoints(output / "checkpoints", expected, keep=checkpoint is not None)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - start
    model_dir = output / "model"
    trainer.save_model(str(model_dir))
    history = trainer.state.log_history
    (output / "log_history.json").write_text(json.dumps(history, indent=1))
    result = {"seconds": seconds, "steps": trainer.state.global_step, "model_dir": str(model_dir),
              "sft_model_dir": str(output / "sft_model"), "history": history, "train_rows": len(rl_rows),
              "warmup_rows": len(warm_rows), "check_rows": len(check_rows), "device": device,
              "unsloth": bool(cfg.use_unsloth and loading.unsloth_available()), "warmup": warm,
              "resumed_from": Path(checkpoint).name if checkpoint else None, "torch_threads": torch.get_num_threads(),
              "completion_rewards": [json.loads(line) for line in rewards_path.read_text().splitlines()],
              "rollouts": [json.loads(line) for line in rollouts_path.read_text().splitlines()],
              "validation": [json.loads(line) for line in validation_path.read_text().splitlines()]
              if cfg.validation_every else [],
              "validation_rows": len(validation_rows) if cfg.validation_every else 0}
    write_card(cfg, output / "sft_model", result, stage="format warm-up")
    write_card(cfg, model_dir, result, stage="GRPO")
    best = output / "best_model" / "validation.json"
    if cfg.validation_every and best.is_file():
        record = json.loads(best.read_text())
        write_card(cfg, best.parent, result, stage=f"GRPO, best validation step {record['step']}", extra=[
            f"| validation | composite {record['composite']:.3f} at step {record['step']} on {record['n']} held-out "
            f"training rows (greedy), the best of steps {[v['step'] for v in result['validation']]} |"])
    return result


def keep_steps_before(path: Path, step: int) -> None:
    """Truncate a per-step JSONL log to the records of steps before ``step`` (all of them gone when 0)."""
    kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] < step] if path.is_file() else []
    path.write_text("".join(line + "\n" for line in kept))


def write_card(cfg, adapter_dir: Path, result: dict, stage: str, extra: list[str] = ()) -> None:
    """The adapter's README.md: what it is, what it was trained on and how, and what it scored (``extra``: more
    table rows)."""
    from medix_lib import data

    dataset_dir = cfg.upstream(cfg.dataset_dir)
    digest = hashlib.sha256()
    for path in sorted(dataset_dir.rglob("*.arrow")):
        digest.update(path.read_bytes())
    logged = [h for h in result["history"] if "reward" in h]
    judge = cfg.judge()
    lines = [
        f"# {cfg.policy_model} + LoRA ({stage})", "",
        f"Trained by medix notebook 03 (variant `{cfg.variant}`, profile `{cfg.profile}`).",
        "**Mechanics and method check at toy scale, not a medical model.**" if cfg.profile != "gpu" else "", "",
        "| | |", "|---|---|",
        f"| base model | `{cfg.policy_model}` |",
        f"| dataset | `{cfg.dataset_dir}` ({result['train_rows']} RL rows, {result['warmup_rows']} warm-up rows; "
        f"arrow sha256 {digest.hexdigest()[:16]}) |",
        f"| rows with image | {sum(data.has_image(_rows(dataset_dir)))} in the training split |",
        f"| rewards and weights | {dict(zip(cfg.rewards, rewards.build(cfg)[1]))} |",
        f"| algorithm | loss `{cfg.loss_type}`, importance sampling `{cfg.importance_sampling_level}`, "
        f"beta {cfg.beta}, epsilon {cfg.epsilon}/{cfg.epsilon_high}, group size {cfg.num_generations}, "
        f"temperature {cfg.temperature}, group filter {cfg.group_filter} |",
        f"| optimisation | lr {cfg.learning_rate} ({cfg.lr_scheduler_type}), LoRA r {cfg.lora_r} / alpha "
        f"{cfg.lora_alpha} on the top {cfg.lora_last_layers or 'all'} layers, batch "
        f"{cfg.per_device_train_batch_size} x {cfg.gradient_accumulation_steps}, steps_per_generation "
        f"{cfg.steps_per_generation or 'auto'}, "
        f"num_iterations {cfg.num_iterations} |",
        f"| steps | warm-up {result['warmup']['steps']}, GRPO {result['steps']} |",
        f"| judge | `{judge.model}` ({judge.backend}), prompt {judge.prompt_hash} |",
        f"| final metrics | reward {logged[-1]['reward']:.3f} at step {logged[-1]['step']} |" if logged else "",
        *extra, f"| code | {artifacts.git_commit()} |", ""]
    adapter_dir.mkdir(parents=True, exist_ok=True)
    (adapter_dir / "README.md").write_text("\n".join(lines))


def _rows(dataset_dir: Path):
    from datasets import load_from_disk

    return load_from_disk(str(dataset_dir))["train"]


def learning_effect(records: list[dict], key: str = "composite", fraction: float = 0.25, kind: str | None = None,
                    n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean ``key`` of the completions of the last ``fraction`` of steps minus that of the first, with a bootstrap
    95% interval (each quarter resampled on its own); ``kind`` restricts to image or text prompts."""
    from medix_lib.evaluation import bootstrap_difference

    rows = [r for r in records if kind is None or r["kind"] == kind]
    steps = sorted({r["step"] for r in rows})
    if len(steps) < 2:
        return bootstrap_difference([], [])
    cut = max(1, round(len(steps) * fraction))
    first, last = set(steps[:cut]), set(steps[-cut:])
    return {**bootstrap_difference([r[key] for r in rows if r["step"] in first and r[key] == r[key]],
                                   [r[key] for r in rows if r["step"] in last and r[key] == r[key]], n_boot, seed),
            "first_steps": [min(first), max(first)], "last_steps": [min(last), max(last)]}
