"""Group-relative RL (GRPO / DAPO / Dr.GRPO / GSPO) of the policy on the composite reward, with TRL.

Two paths, one trainer:
- GPU: Unsloth loads the policy in 4 bit and adds LoRA (``use_unsloth``); it must be imported before trl /
  transformers / peft, and it caps trl at 1.15, so it lives in its own environment (requirements/gpu.txt).
- CPU: plain transformers + PEFT LoRA + TRL >= 1.16 (trl 1.15 cannot run GRPO on CPU), fp32.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from medix_lib import models, rewards
from medix_lib.params import TrainParams

def prepare_dataset(cfg: TrainParams, split: str = "train"):
    """The GRPO training rows: conversational prompt plus the reward columns (answer, modality, question).

    Returns ``(rl_rows, warmup_rows)``: the first ``max_train_rows`` shuffled rows for RL, the rest for the format
    warm-up, so the warm-up never shows the policy the references it is later rewarded on.
    """
    from datasets import load_from_disk

    from medix_lib import data

    ds = load_from_disk(str(cfg.upstream(cfg.dataset_dir)))[split]
    if cfg.text_only:
        ds = ds.filter(lambda row: row["image"] is None)
    ds = data.to_grpo(ds.shuffle(seed=cfg.seed), cfg.contract())
    n_rl = min(cfg.max_train_rows, len(ds))
    return ds.select(range(n_rl)), ds.select(range(n_rl, len(ds))) if n_rl < len(ds) else ds.select([])


WARMUP_REASONING = "Recall the relevant medical knowledge, then answer briefly."


def format_warmup(model, tokenizer, rows, cfg: TrainParams, progress: bool = True) -> list[float]:
    """Cold-start SFT on references written in the output contract (loss on the completion tokens only).

    A small base model almost never emits ``<answer>`` tags unprompted, so every completion in a group scores the same
    and GRPO's group-relative advantage is zero: nothing to learn from. A few supervised steps on the format (the
    R1-style cold start) put the contract within reach; RL then sharpens the answers. Text rows only.
    """
    import torch
    from tqdm.auto import tqdm

    rows = rows.filter(lambda r: r.get("image") is None) if "image" in rows.column_names else rows
    if len(rows) == 0 or cfg.warmup_steps == 0:
        return []
    contract = cfg.contract()
    tokenizer.padding_side = "right"
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.warmup_learning_rate,
                                  weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    model.train()
    losses = []
    bar = tqdm(range(cfg.warmup_steps), desc="format warm-up", disable=not progress)
    for _ in bar:
        batch = rows.select(torch.randint(len(rows), (cfg.per_device_train_batch_size,), generator=generator).tolist())
        prompts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in batch["prompt"]]
        targets = [contract.format_reference(m, WARMUP_REASONING, a) + tokenizer.eos_token
                   for m, a in zip(batch["modality"], batch["answer"])]
        enc = tokenizer([p + t for p, t in zip(prompts, targets)], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(model.device)
        labels = enc["input_ids"].clone()
        for i, prompt in enumerate(prompts):
            labels[i, :len(tokenizer(prompt, add_special_tokens=False)["input_ids"])] = -100
        labels[enc["attention_mask"] == 0] = -100
        loss = model(**enc, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


def _load_unsloth(cfg: TrainParams):
    import unsloth  # noqa: F401  (patches trl/transformers/peft, so it must be imported before them)
    from transformers import AutoConfig
    from unsloth import FastLanguageModel, FastVisionModel

    path = models.resolve_path(cfg.policy_model)
    lora = dict(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0, bias="none", random_state=cfg.seed,
                use_gradient_checkpointing="unsloth")
    if hasattr(AutoConfig.from_pretrained(path), "vision_config"):
        model, processing_class = FastVisionModel.from_pretrained(
            path, load_in_4bit=cfg.load_in_4bit, max_seq_length=4096, use_gradient_checkpointing="unsloth")
        # The vision tower stays frozen: RL signal is about the answer, and it keeps 4-bit LoRA within one GPU.
        model = FastVisionModel.get_peft_model(
            model, finetune_vision_layers=False, finetune_language_layers=True, finetune_attention_modules=True,
            finetune_mlp_modules=True, **lora)
    else:
        model, processing_class = FastLanguageModel.from_pretrained(
            path, load_in_4bit=cfg.load_in_4bit, max_seq_length=4096)
        model = FastLanguageModel.get_peft_model(
            model, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            **lora)
    return model, processing_class


def _load_plain(cfg: TrainParams, use_gpu: bool):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if use_gpu else torch.float32  # bf16 on CPU is 10-50x slower
    model = AutoModelForCausalLM.from_pretrained(models.resolve_path(cfg.policy_model), dtype=dtype)
    if use_gpu:
        model = model.to("cuda")
    n_layers = model.config.num_hidden_layers
    # Adapting only the top layers stops backpropagation there: on CPU that halves the cost of every step.
    layers = list(range(n_layers - cfg.lora_last_layers, n_layers)) if 0 < cfg.lora_last_layers < n_layers else None
    peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], layers_to_transform=layers)
    torch.manual_seed(cfg.seed)  # LoRA init
    return get_peft_model(model, peft_config), models.load_tokenizer(cfg.policy_model)


def train(cfg: TrainParams, dataset, warmup_rows=None, progress: bool = True) -> dict:
    """Format warm-up (optional), then GRPO; saves ``<output_dir>/sft_model`` and ``<output_dir>/model`` adapters.

    The policy is one LoRA adapter throughout: the warm-up trains it, GRPO continues it, and TRL's KL reference is a
    frozen copy of the adapter as GRPO starts (so the KL anchors to the warmed-up policy, not the raw base).
    """
    import torch

    use_gpu = torch.cuda.is_available()
    if cfg.use_unsloth and use_gpu:
        model, processing_class = _load_unsloth(cfg)
    else:
        model, processing_class = _load_plain(cfg, use_gpu)
    out = Path(cfg.output_dir)
    warmup_losses, warmup_seconds = [], 0.0
    if cfg.warmup_steps and warmup_rows is not None:
        start = time.perf_counter()
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        warmup_losses = format_warmup(model, tokenizer, warmup_rows, cfg, progress)
        warmup_seconds = time.perf_counter() - start
        model.save_pretrained(str(out / "sft_model"))
    from trl import GRPOConfig, GRPOTrainer

    reward_funcs, reward_weights = rewards.build(cfg)
    args = GRPOConfig(
        output_dir=str(out / "checkpoints"),
        use_cpu=not use_gpu,
        bf16=use_gpu,  # bf16 on CPU is 10-50x slower
        gradient_checkpointing=use_gpu,  # TRL turns it on by default; on CPU it only trades speed for memory we have
        seed=cfg.seed,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="constant",
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim="adamw_8bit" if (use_gpu and cfg.use_unsloth) else "adamw_torch",
        max_steps=cfg.max_steps,
        num_generations=cfg.num_generations,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        loss_type=cfg.loss_type,
        importance_sampling_level=cfg.importance_sampling_level,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        epsilon_high=cfg.epsilon_high,
        reward_weights=reward_weights,
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=not progress,
        dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=args, train_dataset=dataset,
                          processing_class=processing_class)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    model_dir = out / "model"
    trainer.save_model(str(model_dir))
    history = trainer.state.log_history
    (out / "log_history.json").write_text(json.dumps(history, indent=1))
    return {"seconds": seconds, "steps": trainer.state.global_step, "model_dir": str(model_dir),
            "history": history, "train_rows": len(dataset), "device": "cuda" if use_gpu else "cpu",
            "unsloth": bool(cfg.use_unsloth and use_gpu), "warmup_losses": warmup_losses,
            "warmup_seconds": warmup_seconds,
            "sft_model_dir": str(out / "sft_model") if warmup_losses else None}
