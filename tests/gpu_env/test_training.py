"""Notebook 03's code path with trl 1.15 / transformers 5.17 / peft 0.21: the gpu24 preset's params at tiny size
through medix_lib.training.train (loading, rows in batches of one kind, MedixGRPOTrainer with the judge and embedder
rewards, model cards). On CPU, trl 1.15's Triton log-prob kernel is replaced by tests/gpu_env/cpu_logprob.py; what only
a GPU shows (Unsloth, 4-bit, adamw_8bit, bf16, gradient checkpointing) is in scripts/gpu_check.sh."""

import functools
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


def test_release_rows_of_several_pictures_train_the_qwen_vl_policy(tiny, processor_patch, tmp_path_factory,
                                                                   monkeypatch):
    """The release's rows (one, two and three pictures) through notebook 01's ``release_data`` and GRPO steps of the
    gpu24 preset's Qwen2.5-VL architecture (multimodal RoPE over several pictures, trl 1.15's ``images`` column)."""
    import trl.trainer.utils

    from medix_lib import config, params, pipeline
    from tests.gpu_env.cpu_logprob import CPULogProb

    root = tmp_path_factory.mktemp("release")
    release = config.REPO_ROOT / "tests" / "fixtures" / "benchmarks" / "medix_r1"
    cfg01 = params.load("01", "gpu24", root / "01_synthesize_data" / "gpu24",
                        {"release_data": str(release), "image_size": 64, "n_example_images": 2})
    assert pipeline.execute(pipeline.PlannedRun("01_synthesize_data", "gpu24", cfg01), progress=False)["status"] == "ok"
    from transformers import Qwen2_5_VLForConditionalGeneration

    pictures = []  # (pictures, sequences) of each forward that has pictures
    forward = Qwen2_5_VLForConditionalGeneration.forward

    def spy(self, *args, image_grid_thw=None, **kwargs):
        if image_grid_thw is not None:
            ids = kwargs.get("input_ids", args[0] if args else None)
            pictures.append((image_grid_thw.shape[0], ids.shape[0]))
        return forward(self, *args, image_grid_thw=image_grid_thw, **kwargs)

    monkeypatch.setattr(Qwen2_5_VLForConditionalGeneration, "forward", functools.wraps(forward)(spy))
    monkeypatch.setattr(trl.trainer.utils, "_ChunkedLogProbFunction", CPULogProb)
    cfg = params.load("03", "gpu24", root / "03_train_grpo" / "gpu24",
                      {"max_steps": 2, "max_train_rows": 4, "num_generations": 2, "per_device_train_batch_size": 4,
                       "gradient_accumulation_steps": 1, "max_completion_length": 8, "checkpoint_every": 0,
                       "lora_r": 4, "lora_alpha": 8, "lora_last_layers": 1, "warmup_check_prompts": 0,
                       "policy_model": str(tiny.vlm), "judge_model": str(tiny.judge),
                       "semantic_model": str(tiny.embedder)})
    result = training.train(cfg, progress=False)
    assert result["steps"] == 2 and {r["kind"] for r in result["completion_rewards"]} == {"image", "text"}
    assert any(n > rows for n, rows in pictures), pictures  # some prompts carried several pictures
