"""`python -m medix_lib export`: a LoRA adapter merged into its base is a standalone model folder that reloads
without PEFT and generates what adapter-over-base generates."""

import pytest

from medix_lib import cli, policy


def _adapter(base, tmp_path, target_modules):
    """A LoRA adapter with non-zero weights (a fresh adapter is an identity and would prove nothing)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(base.model, LoraConfig(r=4, lora_alpha=8, target_modules=target_modules,
                                                  init_lora_weights=False))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    folder = tmp_path / "adapter"
    model.save_pretrained(str(folder))
    (folder / "README.md").write_text("# trained by notebook 03\n")  # as training.run.write_card does
    return folder


def _tiny_base(tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from medix_lib import models

    tokenizer = AutoTokenizer.from_pretrained(models.resolve_path("smollm2-135m-instruct"))
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id))
    folder = tmp_path / "base"
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return str(folder)


def _same_tokens(base, adapter, exported, images=None):
    prompts = [[{"role": "user", "content": "Name the imaging modality."}]]
    if images:
        prompts = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which modality?"}]}]]
    merged_here = policy.generate(policy.load(base, str(adapter)), prompts, images=images, max_new_tokens=12,
                                  progress=False)
    reloaded = policy.generate(policy.load(str(exported)), prompts, images=images, max_new_tokens=12, progress=False)
    assert reloaded == merged_here and merged_here[0][0]
    assert policy.generate(policy.load(base), prompts, images=images, max_new_tokens=12, progress=False) != reloaded \
        or images  # the adapter changed the text model's answer (a VLM's short answer may coincide)


def test_an_exported_text_model_reloads_and_generates_as_adapter_over_base(tmp_path):
    base = _tiny_base(tmp_path)
    adapter = _adapter(policy.load(base), tmp_path, ["q_proj", "v_proj"])
    assert cli.main(["export", "--model", base, "--adapter", str(adapter), "--output", str(tmp_path / "out")]) == 0
    exported = tmp_path / "out"
    assert not (exported / "adapter_config.json").exists() and (exported / "config.json").is_file()
    assert (exported / "README.md").read_text().endswith("# trained by notebook 03\n")
    _same_tokens(base, adapter, exported)
    assert cli.main(["export", "--model", base, "--adapter", str(adapter), "--output", str(exported)]) == 2


@pytest.mark.slow
def test_an_exported_vision_language_model_reloads_and_generates_as_adapter_over_base(tmp_path):
    from PIL import Image

    base = "medix-vlm-135m"
    adapter = _adapter(policy.load(base), tmp_path, r"model\.language_model\.layers\.\d+\.self_attn\.(q|v)_proj")
    exported = policy.export(base, str(adapter), str(tmp_path / "out"))
    _same_tokens(base, adapter, exported, images=[Image.new("RGB", (64, 64), (90, 90, 90))])
