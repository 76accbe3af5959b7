"""Notebook 03's code path with trl 1.15 / transformers 5.17 / peft 0.21: the gpu24 preset's params at tiny size
through medix_lib.training.train (loading, rows in batches of one kind, MedixGRPOTrainer with the judge and embedder
rewards, model cards). On CPU, trl 1.15's Triton log-prob kernel is replaced by tests/gpu_env/cpu_logprob.py; what only
a GPU shows (Unsloth, 4-bit, adamw_8bit, bf16, gradient checkpointing) is in scripts/gpu_check.sh."""

import json
from pathlib import Path

import pytest

from medix_lib import training


def test_grpo_steps_run_on_mixed_data_with_every_reward(trained):
    cfg, result = trained
    assert result["steps"] == cfg.max_steps and result["device"] == "cpu"
    rewards = result["completion_rewards"]
    assert {r["kind"] for r in rewards} == {"image", "text"}  # batches of one kind, both kinds trained
    for row in rewards:
        assert set(cfg.rewards) <= set(row)
        assert row["accuracy"] == row["accuracy"], "the judge failed (NaN): its error is in the trainer's log"
    losses = [h["loss"] for h in result["history"] if "loss" in h]
    assert len(losses) == cfg.max_steps and all(loss == loss for loss in losses)


def test_adapters_and_cards_are_written(trained):
    cfg, result = trained
    for folder in (Path(result["sft_model_dir"]), Path(result["model_dir"])):
        assert json.loads((folder / "adapter_config.json").read_text())["r"] == cfg.lora_r
        assert "variant `gpu24`" in (folder / "README.md").read_text()


def test_without_the_cpu_stand_in_trl_115_stops_at_its_triton_kernel(train_params, processor_patch):
    import trl.trainer.utils

    assert trl.trainer.utils._ChunkedLogProbFunction is None  # no Triton beside the CPU torch wheel
    cfg = train_params("gpu24-no-stand-in", max_steps=1)
    with pytest.raises(AttributeError, match="apply"):
        training.train(cfg, progress=False)


def test_plain_lora_on_every_layer_loads(train_params, processor_patch):
    from medix_lib.training import loading

    model, _ = loading.load_plain(train_params("gpu24-every-layer", lora_last_layers=0), use_gpu=False)
    adapted = {int(n.split(".layers.")[1].split(".")[0]) for n, _ in model.named_parameters() if "lora_A" in n}
    assert len(adapted) >= 2  # every layer of the tiny policy's language model


def test_plain_path_loads_the_gpu_profiles_vlm(train_params, processor_patch):
    from medix_lib import vlm
    from medix_lib.training import loading

    model, _ = loading.load_plain(train_params("gpu24-plain"), use_gpu=False)
    tower = vlm.vision_tower(model)
    assert not any(p.requires_grad for p in tower.parameters())
    model.train()
    assert not tower.training  # frozen in eval mode through the trainer's model.train()
