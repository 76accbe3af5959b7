"""Tiny random models for the GPU-environment tier, built from configs at test time (no hub): a Qwen2.5-VL policy with
Qwen's chat template, a Qwen3 judge whose chat template knows ``enable_thinking`` as Qwen3's does, a Qwen2 letter
verifier with Qwen2.5's chat template (CompassVerifier's architecture), and a BERT sentence embedder. Adapted from
shared/reference/gpu-env-on-cpu/build.py.

Without torchvision (which does not load beside the CPU torch wheel) transformers cannot build Qwen2.5-VL's video
processor, so ``AutoProcessor`` cannot load the policy's folder; :func:`vlm_processor` builds the processor from its
parts instead, and the tests route ``AutoProcessor.from_pretrained`` of that folder to it. The GPU environment has
torchvision (requirements/gpu.txt), where scripts/gpu_check.sh loads the real processor.
"""

from __future__ import annotations

from pathlib import Path

import torch

VLM_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Qwen3's own switch: with enable_thinking false the generation prompt ends in an empty reasoning block, so the next
# token is the verdict itself.
JUDGE_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}{%- else %}"
    "{%- for part in message['content'] %}{{- part['text'] }}{%- endfor %}{%- endif %}{{- '<|im_end|>\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\n\n</think>\n\n' }}{%- endif %}"
    "{%- endif %}")
EMPTY_THINK = "<think>\n\n</think>\n\n"
# Qwen2.5-Instruct's chat template without its tool branches: a conversation without a system message gets Qwen's
# default one, as CompassVerifier's usage (a lone user message) does.
QWEN25_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
QWEN25_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n" + QWEN25_SYSTEM + "<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
            "<|video_pad|>"]
CORPUS = ["What imaging modality was used to acquire this image? CT scan MRI radiograph ultrasound fundus answer "
          "thinking pneumonia myocardial infarction heart attack reference prediction equivalent YES NO"] * 50


def _bpe_tokenizer(template: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIALS,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=template)


def build_vlm(folder: Path) -> Path:
    """A ~0.1M-parameter Qwen2.5-VL with 56-112 px images (4-16 image tokens)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessor

    tokenizer = _bpe_tokenizer(VLM_TEMPLATE)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIALS}
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    special = dict(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    cfg = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, tie_word_embeddings=True,
                         **special),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           fullatt_block_indexes=[1], window_size=112, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"], **special)
    torch.manual_seed(0)  # the same random weights whatever ran before: answers (and what reaches the judge) too
    model = Qwen2_5_VLForConditionalGeneration(cfg)
    # A trained VLM never writes its vision placeholders; a random one does, and trl 1.15's rollouts do not suppress
    # them (a completion with an extra <|image_pad|> then fails the image-features check), so the config does.
    model.generation_config.suppress_tokens = [ids[t] for t in SPECIALS[3:]]
    # Greedy decoding of random weights repeats one token, here a newline: an empty answer the judge never sees
    # (rule "empty"). Banning whitespace-only tokens makes the tiny policy write words, so answers reach the judge.
    vocab = tokenizer.get_vocab().values()
    model.generation_config.bad_words_ids = [[i] for i in vocab if not tokenizer.decode([i]).strip()]
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(VLM_TEMPLATE)
    return folder


def vlm_processor(folder: Path):
    """Qwen2.5-VL's processor from its saved parts, without the video processor that needs torchvision."""
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor, Qwen2VLImageProcessor

    class ImageOnlyProcessor(Qwen2_5_VLProcessor):
        def check_argument_for_proper_class(self, argument_name, argument):  # video_processor=None is fine here
            return None

        @classmethod
        def get_attributes(cls):  # saved (a trainer saves its processing class) without the missing video processor
            return [name for name in super().get_attributes() if name != "video_processor"]

    return ImageOnlyProcessor(image_processor=Qwen2VLImageProcessor.from_pretrained(folder),
                              tokenizer=PreTrainedTokenizerFast.from_pretrained(folder), video_processor=None,
                              chat_template=(folder / "chat_template.jinja").read_text())


def build_judge(folder: Path) -> Path:
    """A tiny Qwen3 causal LM with YES/NO as single tokens and Qwen3's thinking switch in its chat template."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = _bpe_tokenizer(JUDGE_TEMPLATE)
    tokenizer.add_tokens(["<think>", "</think>", "YES", "NO", "Yes", "No", "yes", "no"])
    torch.manual_seed(0)
    Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=4096, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_letter_judge(folder: Path) -> Path:
    """A tiny random Qwen2 causal LM (CompassVerifier's architecture) with Qwen2.5's chat template; its head is not
    tied to its embeddings, so a test can set the letters' rows without changing what the model reads."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = _bpe_tokenizer(QWEN25_TEMPLATE)
    tokenizer.add_tokens(["YES", "NO", "Yes", "No", "yes", "no"])  # the backend also looks up YES/NO tokens
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_embedder(folder: Path) -> Path:
    """A tiny random BERT that sentence-transformers wraps with mean pooling (the role of MedEmbed)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    tokenizer = BertTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), model_max_length=128)
    BertModel(BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
