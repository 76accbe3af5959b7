"""Loading the policy for training: Unsloth (4-bit + LoRA) on a CUDA GPU, plain transformers + PEFT LoRA elsewhere;
text LMs and vision-language models alike.

Unsloth patches trl, transformers and peft when it is imported, so it must come first; it lives in the GPU
environment only (it caps trl at 1.15, which cannot run GRPO on CPU), and is imported only when CUDA is there.
"""

from __future__ import annotations

import importlib.util

from medix_lib import models

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def unsloth_available() -> bool:
    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None


if unsloth_available():
    import unsloth  # noqa: F401  (patches trl/transformers/peft, so before they are imported anywhere else)


def load_unsloth(cfg):
    from transformers import AutoConfig
    from unsloth import FastLanguageModel, FastVisionModel

    path = models.resolve_path(cfg.policy_model)
    lora = dict(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0, bias="none", random_state=cfg.seed,
                use_gradient_checkpointing="unsloth")
    if hasattr(AutoConfig.from_pretrained(path), "vision_config"):
        model, processing_class = FastVisionModel.from_pretrained(
            path, load_in_4bit=cfg.load_in_4bit, max_seq_length=4096, use_gradient_checkpointing="unsloth")
        # The vision tower stays frozen: the RL signal is about the answer, and it keeps 4-bit LoRA on one GPU.
        model = FastVisionModel.get_peft_model(
            model, finetune_vision_layers=False, finetune_language_layers=True, finetune_attention_modules=True,
            finetune_mlp_modules=True, **lora)
    else:
        model, processing_class = FastLanguageModel.from_pretrained(
            path, load_in_4bit=cfg.load_in_4bit, max_seq_length=4096)
        model = FastLanguageModel.get_peft_model(
            model, target_modules=[*LORA_TARGETS, "gate_proj", "up_proj", "down_proj"], **lora)
    return model, processing_class


def load_plain(cfg, use_gpu: bool):
    """PEFT LoRA on the top ``lora_last_layers`` layers of the language model (backpropagation stops there: on CPU
    that halves a step); a vision-language model also trains its projector and keeps its tower frozen in eval mode."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

    path = models.resolve_path(cfg.policy_model)
    config = AutoConfig.from_pretrained(path)
    vision = hasattr(config, "vision_config")
    dtype = torch.bfloat16 if use_gpu else torch.float32  # bf16 on CPU is 10-50x slower
    loader = AutoModelForImageTextToText if vision else AutoModelForCausalLM
    model = loader.from_pretrained(path, dtype=dtype)
    if use_gpu:
        model = model.to("cuda")
    n_layers = (config.text_config if vision else config).num_hidden_layers
    layers = list(range(n_layers - cfg.lora_last_layers, n_layers)) if 0 < cfg.lora_last_layers < n_layers else None
    peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                             target_modules=LORA_TARGETS, layers_to_transform=layers,
                             layers_pattern="layers" if layers else None,  # peft refuses a pattern without layers
                             modules_to_save=["multi_modal_projector"] if vision else None)
    torch.manual_seed(cfg.seed)  # LoRA init
    model = get_peft_model(model, peft_config)
    if vision:
        from medix_lib import vlm

        vlm.freeze_tower(model)
        return model, AutoProcessor.from_pretrained(path)
    return model, models.load_tokenizer(cfg.policy_model)


def use_bf16(cfg, device: str) -> bool:
    """Whether training runs under bf16 autocast: ``cfg.bf16`` when set, else on a GPU only. On a CPU that multiplies
    bf16 in hardware (AMX) it shortened a cpu_long step's update by a fifth (``bench``, ``grpo_step.speedup_bf16``),
    not enough to give up training the numbers TRL's fp32 path trains; emulated bf16 is slower than fp32."""
    return cfg.bf16 if cfg.bf16 is not None else device == "cuda"


def load(cfg):
    """(model with its adapter, processing class, device) for ``cfg``."""
    import torch

    use_gpu = torch.cuda.is_available()
    if cfg.use_unsloth and unsloth_available():
        model, processing_class = load_unsloth(cfg)
    else:
        model, processing_class = load_plain(cfg, use_gpu)
    return model, cfg.limit_pixels(processing_class), "cuda" if use_gpu else "cpu"
