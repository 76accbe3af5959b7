"""The gpu profile's memory plan: will each notebook's models fit the card, before any of them loads?

Parameter counts are read from each model's config, instantiated on the meta device (no weight is read or
allocated); bytes follow from how the notebooks load each model: the policy in bf16 (02, 04) or through Unsloth with
4-bit base weights plus LoRA weights, gradients and optimizer states (03), local judges in bf16, the embedder in fp32
(sentence-transformers' default). On top come per-phase allowances that do not coexist (a notebook generates, then
scores, then updates): a KV cache and one layer's activations for generation, checkpointed activations for a GRPO
update, the judge's and the embedder's forward passes. Then each notebook kernel's CUDA context and a margin for
fragmentation. The plan is printed before anything loads and compared with the free memory the pipeline sees; a judge
served over HTTP by vLLM on the same card is already out of that free memory when its server was started first, and
:func:`server_utilization` says which ``--gpu-memory-utilization`` its share needs.

The allowances are estimates (sizes from docs/gpu.md, not measurements); scripts/gpu_check.sh prints the measured
peak of a tiny run next to them.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

from medix_lib import config, models

GIB = 2**30
BF16, FP32 = 2, 4
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # bitsandbytes 4-bit: 4 bits + an 8-bit absmax per 64, fp32 per 256 blocks
OPTIMIZER_STATE_BYTES = {"adamw_8bit": 2, "adamw_torch": 8}  # per trainable parameter: Adam's two moments
CUDA_CONTEXT = 1.0 * GIB  # each notebook runs in its own kernel: its CUDA context and cuBLAS/cuDNN workspaces
MARGIN = 0.10  # allocator fragmentation and whatever the estimate leaves out
TRAIN_PROMPT_TOKENS = 256  # a question with the output contract's system prompt (notebooks 02, 03)
EVAL_PROMPT_TOKENS = 512  # a benchmark question with its choices (notebook 04)
TRAIN_IMAGE_PX = 448  # notebook 01 letterboxes images to image_size (gpu presets: 384)
EVAL_IMAGE_PX = 1024  # benchmark pictures are rarely larger; the gpu presets cap them there (image_max_pixels)
EMBED_TOKENS = 128  # an extracted answer or a reference (the guards refuse answers over 32 words)
WARMUP_TARGET_TOKENS = 128  # a warm-up target: a short reasoning block and the answer
# LoRA targets as medix_lib.training.loading chooses them (tests/test_memory.py keeps them equal): Unsloth adapts
# attention and MLP of every language layer, the plain PEFT path the attention of the top lora_last_layers.
UNSLOTH_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PLAIN_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
VISION_TOWERS = ("visual", "vision_tower", "vision_model")  # attribute names of a VLM's vision encoder


class MemoryPlanError(config.ParamsError):
    """The planned models cannot fit the GPU; the message names them, the numbers and what to change."""


@dataclass(frozen=True)
class Arch:
    """What the plan needs from a model's config (counted on the meta device, without weights)."""

    name: str
    params: int  # every parameter, tied ones once
    quantizable: int  # weights of the decoder layers' linear layers: what bitsandbytes stores in 4 bits
    vision: int  # parameters of the vision tower (0 for a text model)
    layers: int
    hidden: int
    intermediate: int
    kv_bytes_per_token: int  # bf16 keys and values, all layers
    vocab: int
    linears: tuple[tuple[int, str, int], ...]  # (layer, module name, in + out features) of the decoder's linears
    vision_hidden: int = 0
    vision_intermediate: int = 0
    patch_px: int = 0  # pixels per side of one image token (patch x merge); 0 with a fixed token count
    patches_per_token: int = 1
    fixed_image_tokens: int = 0

    def lora_params(self, rank: int, targets: tuple[str, ...], last_layers: int = 0) -> int:
        """LoRA parameters of rank ``rank`` on ``targets`` (of the top ``last_layers`` layers; 0: all)."""
        first = self.layers - last_layers if 0 < last_layers < self.layers else 0
        return rank * sum(dims for layer, module, dims in self.linears if module in targets and layer >= first)

    def image_tokens(self, px: int) -> int:
        """Tokens one ``px`` x ``px`` image becomes (0 for a text model)."""
        if self.patch_px:
            return math.ceil(px / self.patch_px) ** 2
        return self.fixed_image_tokens

    def forward_bytes(self, tokens: int, dtype_bytes: int = BF16) -> int:
        """One decoder layer's transient tensors for ``tokens`` tokens: queries, keys, values and the attention
        output (about 4 hidden widths), the MLP's gate, up and activation (3 intermediate widths)."""
        return tokens * (4 * self.hidden + 3 * self.intermediate) * dtype_bytes

    def vision_forward_bytes(self, images: int, px: int) -> int:
        """The vision tower's transient tensors for ``images`` images of ``px`` pixels (one block at a time)."""
        patches = images * self.image_tokens(px) * self.patches_per_token
        return patches * (4 * self.vision_hidden + 3 * self.vision_intermediate) * BF16


def _build_on_meta(cfg, kind: str):
    from accelerate import init_empty_weights
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText

    with init_empty_weights():
        if hasattr(cfg, "vision_config"):
            model = AutoModelForImageTextToText.from_config(cfg)
        else:
            model = (AutoModel if kind == "embedder" else AutoModelForCausalLM).from_config(cfg)
    model.tie_weights()  # from_config leaves a tied head untied; from_pretrained ties it, so count it once
    return model


@lru_cache(maxsize=None)
def arch(name: str, kind: str = "causal_lm") -> Arch:
    """``name``'s sizes from its config (an offline alias, a local path or a hub id in the local cache).

    ``kind`` is "causal_lm" (a vision-language model when its config has a vision part) or "embedder"."""
    import torch
    from transformers import AutoConfig

    path = models.resolve_path(name)
    try:
        cfg = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise MemoryPlanError(f"memory plan: cannot read the config of {name!r} ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:200]}); download the model first (`hf download {name}`) "
                              f"or fix the name in the params") from None
    model = _build_on_meta(cfg, kind)
    tower = next((n for n, _ in model.named_modules() if n.split(".")[-1] in VISION_TOWERS), None)
    in_tower = (lambda n: tower is not None and (n == tower or n.startswith(tower + ".")))
    head = model.get_output_embeddings()  # None for an embedder
    linears, quantizable = [], 0
    for module_name, module in model.named_modules():
        layer = re.search(r"\.layers?\.(\d+)\.", f".{module_name}.")
        if isinstance(module, torch.nn.Linear) and module is not head and layer and not in_tower(module_name):
            quantizable += module.weight.numel()
            linears.append((int(layer.group(1)), module_name.split(".")[-1], module.in_features + module.out_features))
    text = cfg.get_text_config()
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    sizes = dict(
        name=name, params=sum(p.numel() for p in model.parameters()), quantizable=quantizable,
        vision=sum(p.numel() for n, p in model.named_parameters() if in_tower(n)), layers=text.num_hidden_layers,
        hidden=text.hidden_size, intermediate=text.intermediate_size, vocab=text.vocab_size,
        kv_bytes_per_token=2 * text.num_hidden_layers * kv_heads * head_dim * BF16, linears=tuple(linears))
    vision = getattr(cfg, "vision_config", None)
    if vision is not None:
        merge = getattr(vision, "spatial_merge_size", None)
        sizes.update(vision_hidden=vision.hidden_size, vision_intermediate=vision.intermediate_size)
        if merge:  # dynamic resolution (Qwen2-VL family): one token per merge x merge patches
            sizes.update(patch_px=vision.patch_size * merge, patches_per_token=merge * merge)
        else:  # a fixed grid (LLaVA family)
            sizes.update(fixed_image_tokens=(vision.image_size // vision.patch_size) ** 2)
    return Arch(**sizes)


@dataclass
class Line:
    what: str
    detail: str
    nbytes: float


@dataclass
class Plan:
    """One notebook's memory: what stays loaded, and per phase what comes and goes (the largest phase counts)."""

    stage: str
    variant: str
    resident: list[Line] = field(default_factory=list)
    phases: dict[str, list[Line]] = field(default_factory=dict)

    def peak_phase(self) -> str | None:
        return max(self.phases, key=lambda p: sum(line.nbytes for line in self.phases[p]), default=None)

    def models_bytes(self) -> float:
        return sum(line.nbytes for line in self.resident)

    def need(self) -> float:
        """Bytes this notebook needs on the card: resident models, the largest phase, its CUDA context, the margin."""
        if not self.resident:
            return 0.0
        peak = self.peak_phase()
        transient = sum(line.nbytes for line in self.phases[peak]) if peak else 0.0
        return (self.models_bytes() + transient + CUDA_CONTEXT) * (1 + MARGIN)

    def table(self, free: float | None = None, total: float | None = None, device: str = "") -> str:
        head = f"memory plan: {self.stage} [{self.variant}]"
        if total:
            head += f" on {device or 'the GPU'} ({free / GIB:.1f} GiB free of {total / GIB:.1f} GiB)"
        if not self.resident:
            return head + "\n  no model on the GPU (data preparation runs on the CPU)"
        rows = [(line.what, line.detail, line.nbytes) for line in self.resident]
        peak = self.peak_phase()
        for phase, lines in self.phases.items():
            mark = "  <- peak" if phase == peak else ""
            rows.append((f"while {phase}{mark}", "", sum(line.nbytes for line in lines)))
            rows += [(f"  {line.what}", line.detail, line.nbytes) for line in lines]
        rows.append(("CUDA context of the notebook kernel", "cuBLAS/cuDNN workspaces", CUDA_CONTEXT))
        base = self.need() / (1 + MARGIN)
        rows.append((f"margin {MARGIN:.0%}", "fragmentation, what the estimate leaves out", base * MARGIN))
        verdict = ""
        if free is not None:
            spare = free - self.need()
            verdict = (f"  fits, {spare / GIB:.1f} GiB spare" if spare >= 0
                       else f"  DOES NOT FIT: {-spare / GIB:.1f} GiB short")
        rows.append(("total (models + peak phase + context + margin)", "", self.need()))
        width = max(len(r[0]) for r in rows)
        detail_width = max(len(r[1]) for r in rows)
        lines = [head] + [f"  {what:<{width}}  {detail:<{detail_width}}  {nbytes / GIB:6.2f} GiB"
                          for what, detail, nbytes in rows]
        return "\n".join(lines) + verdict


def _count(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _weights(role: str, a: Arch, dtype_bytes: int, dtype: str) -> Line:
    return Line(f"{role} {a.name}", f"{_count(a.params)} params, {dtype}", a.params * dtype_bytes)


def _generation(a: Arch, sequences: int, prompt_tokens: int, new_tokens: int, images: int, px: int) -> list[Line]:
    """A batch of ``sequences`` being generated: its KV cache at full length, the prefill's transient tensors and
    the vision tower's for ``images`` images."""
    image_tokens = a.image_tokens(px) if images else 0
    length = prompt_tokens + image_tokens + new_tokens
    lines = [Line("KV cache", f"{sequences} sequences x {length} tokens", sequences * length * a.kv_bytes_per_token),
             Line("prefill activations", f"{sequences} x {prompt_tokens + image_tokens} prompt tokens, one layer",
                  a.forward_bytes(sequences * (prompt_tokens + image_tokens)) + sequences * a.vocab * FP32)]
    if images:
        lines.append(Line("vision tower activations", f"{images} images of {px} px ({image_tokens} tokens each)",
                          a.vision_forward_bytes(images, px)))
    return lines


def _judge_lines(cfg, names: list[str]) -> tuple[list[Line], list[Line]]:
    """(resident, judging-phase) lines of the judge(s): bf16 weights in-process, nothing for an HTTP judge."""
    if cfg.judge_backend != "transformers":
        return [Line(f"judge {n}", f"served over HTTP ({cfg.judge_backend} backend): its own process", 0)
                for n in names], []
    from medix_lib.judge import TransformersJudge

    batch_tokens = inspect.signature(TransformersJudge).parameters["max_batch_tokens"].default
    judges = [arch(n) for n in names]
    largest = max(judges, key=lambda a: a.params)
    return ([_weights("judge", a, BF16, "bf16") for a in judges],
            [Line("judge forward", f"{batch_tokens} tokens a batch (KV + one layer)",
                  batch_tokens * largest.kv_bytes_per_token + largest.forward_bytes(batch_tokens))])


def _embedder_lines(name: str) -> tuple[Line, Line]:
    from medix_lib.rewards import SemanticReward

    a = arch(name, "embedder")
    batch = inspect.signature(SemanticReward).parameters["batch_size"].default
    return (_weights("embedder", a, FP32, "fp32 (sentence-transformers default)"),
            Line("embedder forward", f"{batch} texts x {EMBED_TOKENS} tokens",
                 a.forward_bytes(batch * EMBED_TOKENS, FP32)))


def _used_rewards(cfg) -> set[str]:
    from medix_lib.rewards import COMPONENTS

    return set(COMPONENTS) if cfg.rewards == ["composite"] else set(cfg.rewards)


def _reward_models(cfg, plan: Plan, phase: str) -> None:
    used = _used_rewards(cfg)
    if "accuracy" in used:
        resident, judging = _judge_lines(cfg, [cfg.judge_model])
        plan.resident += resident
        plan.phases.setdefault(phase, []).extend(judging)
    if "semantic" in used:
        weights, forward = _embedder_lines(cfg.semantic_model)
        plan.resident.append(weights)
        plan.phases.setdefault(phase, []).append(forward)


def _picture_px(cfg, px: int) -> int:
    """The side of a ``px`` x ``px`` picture once a dynamic-resolution processor applies the stage's pixel bounds
    (``image_min_pixels`` / ``image_max_pixels``: it rescales to keep the area within them).

    >>> from types import SimpleNamespace
    >>> _picture_px(SimpleNamespace(image_min_pixels=0, image_max_pixels=256 * 28 * 28), 1024)  # 256 tokens' worth
    448
    """
    low, high = cfg.image_min_pixels, cfg.image_max_pixels
    if high and px * px > high:
        return math.isqrt(high)
    if low and px * px < low:
        return math.isqrt(low - 1) + 1
    return px


def _plan_02(cfg, plan: Plan) -> None:
    from medix_lib.policy import generate

    policy = arch(cfg.policy_model)
    plan.resident.append(_weights("policy", policy, BF16, "bf16"))
    sequences = inspect.signature(generate).parameters["batch_size"].default * cfg.completions_per_prompt
    images = sequences if policy.vision else 0  # a vision-language policy answers image rows too, in one-kind batches
    plan.phases["sampling completions"] = _generation(policy, sequences, TRAIN_PROMPT_TOKENS, cfg.max_new_tokens,
                                                      images, _picture_px(cfg, TRAIN_IMAGE_PX))
    _reward_models(cfg, plan, "scoring")
    if cfg.verifier_test_pairs:  # the verifier comparison also loads the zero-shot judge and MiniLM
        for name, kind in (("smollm2-135m-instruct", "causal_lm"), ("minilm-l6-v2", "embedder")):
            plan.resident.append(_weights("verifier comparison", arch(name, kind), FP32, "fp32"))


def _plan_03(cfg, plan: Plan, unsloth: bool, total: float | None) -> None:
    policy = arch(cfg.policy_model)
    if unsloth and cfg.load_in_4bit:
        rest = policy.params - policy.quantizable
        plan.resident.append(Line(f"policy {policy.name}", f"{_count(policy.quantizable)} 4-bit + {_count(rest)} bf16 "
                                  f"(embeddings, head, vision tower)", policy.quantizable * NF4_BYTES + rest * BF16))
    else:
        plan.resident.append(_weights("policy", policy, BF16, "bf16"))
    targets = UNSLOTH_TARGETS if unsloth else PLAIN_TARGETS
    lora = policy.lora_params(cfg.lora_r, targets, 0 if unsloth else cfg.lora_last_layers)
    optimizer = "adamw_8bit" if unsloth else "adamw_torch"
    plan.resident.append(Line(f"LoRA r={cfg.lora_r}: weights, grads, {optimizer}", f"{_count(lora)} params, fp32",
                              lora * (FP32 + FP32 + OPTIMIZER_STATE_BYTES[optimizer])))
    if cfg.use_vllm and cfg.vllm_mode == "colocate":
        from trl import GRPOConfig

        share = GRPOConfig.__dataclass_fields__["vllm_gpu_memory_utilization"].default
        plan.resident.append(Line("vLLM colocated rollouts", f"vllm_gpu_memory_utilization {share} of the card",
                                  share * (total or _total_memory())))
    steps_per_generation = cfg.steps_per_generation or cfg.gradient_accumulation_steps
    sequences = cfg.per_device_train_batch_size * steps_per_generation
    images = sequences if policy.vision else 0  # a generation batch is all image rows or all text rows
    px = _picture_px(cfg, TRAIN_IMAGE_PX)
    if not cfg.use_vllm:
        plan.phases["rollouts"] = _generation(policy, sequences, TRAIN_PROMPT_TOKENS, cfg.max_completion_length,
                                              images, px)
    micro = cfg.per_device_train_batch_size
    micro_images = micro if images else 0
    plan.phases["update"] = _update(policy, micro, cfg.max_completion_length, micro_images, px)
    if cfg.warmup_max_steps:
        warm = cfg.warmup_batch_size  # a warm-up batch is all image rows or all text rows, like a rollout batch
        plan.phases["format warm-up"] = _update(policy, warm, WARMUP_TARGET_TOKENS, warm if images else 0, px) + [
            Line("logits and their gradient", f"{warm} x {WARMUP_TARGET_TOKENS} target tokens, fp32",
                 warm * (TRAIN_PROMPT_TOKENS + WARMUP_TARGET_TOKENS) * policy.vocab * 3 * FP32)]
    _reward_models(cfg, plan, "rewards")


def _update(policy: Arch, micro: int, completion: int, images: int, px: int) -> list[Line]:
    """A GRPO micro-batch's backward with gradient checkpointing: each layer's input kept, one layer recomputed with
    its gradients; the log-probs go through TRL's chunked kernel, so no full logits."""
    tokens = micro * (TRAIN_PROMPT_TOKENS + policy.image_tokens(px) * bool(images) + completion)
    lines = [Line("checkpointed layer inputs", f"{micro} sequences, {tokens} tokens x {policy.layers} layers",
                  tokens * policy.hidden * BF16 * policy.layers),
             Line("one layer forward + backward", f"{tokens} tokens", 2 * policy.forward_bytes(tokens))]
    if images:
        lines.append(Line("vision tower forward (frozen)", f"{images} images", policy.vision_forward_bytes(
            images, px)))
    return lines


def _plan_04(cfg, plan: Plan) -> None:
    from medix_lib import benchmarks

    policy = arch(cfg.policy_model)
    plan.resident.append(_weights("policy", policy, BF16, "bf16 (one candidate at a time, adapter merged)"))
    images = cfg.batch_size if policy.vision and any(
        benchmarks.get_task(t).modality == "image" for t in cfg.tasks) else 0
    plan.phases["generation"] = _generation(policy, cfg.batch_size, EVAL_PROMPT_TOKENS, cfg.max_new_tokens, images,
                                            _picture_px(cfg, EVAL_IMAGE_PX))
    resident, judging = _judge_lines(cfg, [cfg.judge_model, *cfg.extra_judge_models])
    plan.resident += resident
    plan.phases["judging"] = judging


def plan_stage(cfg, unsloth: bool | None = None, total: float | None = None) -> Plan:
    """The memory plan of one stage's params. ``unsloth``: whether notebook 03 loads through Unsloth (None: when
    ``use_unsloth`` is on and Unsloth is installed, as :mod:`medix_lib.training.loading` decides on a GPU);
    ``total``: the card's bytes, for shares of it (None: this machine's GPU)."""
    from medix_lib import params

    plan = Plan(config.stage_name(_stage_of(cfg)), cfg.variant)
    if isinstance(cfg, params.RewardDesignParams):
        _plan_02(cfg, plan)
    elif isinstance(cfg, params.TrainParams):
        if unsloth is None:
            unsloth = importlib.util.find_spec("unsloth") is not None
        _plan_03(cfg, plan, unsloth and cfg.use_unsloth, total)
    elif isinstance(cfg, params.EvalParams):
        _plan_04(cfg, plan)
    return plan


def _stage_of(cfg) -> str:
    from medix_lib import params

    return next(stage for stage, cls in params.STAGE_PARAMS.items() if type(cfg) is cls)


def _total_memory() -> float:
    import torch

    return float(torch.cuda.mem_get_info(0)[1])


def check(runs, free: float | None = None, total: float | None = None, device: str | None = None,
          unsloth: bool | None = None) -> list[Plan]:
    """Print each run's plan and stop with one message when any of them cannot fit ``free`` bytes (default: what
    ``torch.cuda.mem_get_info`` reports for GPU 0 now). ``runs``: objects with ``params`` (pipeline.PlannedRun)."""
    if free is None:
        import torch

        free, total = (float(x) for x in torch.cuda.mem_get_info(0))
        device = torch.cuda.get_device_name(0)
    plans = [plan_stage(run.params, unsloth, total) for run in runs]
    for plan in plans:
        print(plan.table(free, total, device), flush=True)
    short = [p for p in plans if p.need() > free]
    if short:
        worst = max(short, key=Plan.need)
        needs = ", ".join(f"{p.stage} [{p.variant}] needs {p.need() / GIB:.1f} GiB" for p in short)
        models_text = "; ".join(f"{line.what} {line.nbytes / GIB:.1f} GiB" for line in worst.resident)
        raise MemoryPlanError(
            f"the planned models do not fit {device or 'this GPU'} ({free / GIB:.1f} GiB free of "
            f"{(total or free) / GIB:.1f} GiB): {needs}. Largest: {worst.stage} [{worst.variant}]: {models_text}, "
            f"plus {worst.peak_phase()} and the CUDA context. Use the preset for this card (--profile gpu24 or gpu80, "
            f"docs/gpu.md), serve the judge from another GPU (judge_backend: openai), smaller batches or models "
            f"(--set), or free the GPU (nvidia-smi shows what holds it)")
    return plans


def server_utilization(name: str, total: float, max_model_len: int, concurrency: int = 16,
                       overhead: float = 3.0 * GIB) -> float:
    """The smallest ``vllm serve --gpu-memory-utilization`` (a share of the card's ``total`` bytes, rounded up to
    0.05) whose share holds ``name``'s bf16 weights, a KV cache for ``concurrency`` requests of ``max_model_len``
    tokens (the HTTP judge sends at most 16 at once) and vLLM's own ``overhead`` (CUDA graphs, its profiling run's
    activations)."""
    a = arch(name)
    need = a.params * BF16 + concurrency * max_model_len * a.kv_bytes_per_token + overhead
    share = math.ceil(need / total / 0.05 - 1e-9) * 0.05
    if share > 0.95:  # vLLM cannot have the whole card: the driver and its own process keep some
        raise MemoryPlanError(f"serving {name} needs {need / GIB:.1f} GiB ({_count(a.params)} params in bf16, a KV "
                              f"cache for {concurrency} requests of {max_model_len} tokens, vLLM's overhead), more "
                              f"than this {total / GIB:.0f} GiB card can give; serve it on a bigger card, or lower "
                              f"--max-model-len")
    return share
