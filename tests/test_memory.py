"""The memory plan's arithmetic on tiny configs (no GPU, no weights), its counts on the gpu profile's own models'
published configs, the presets against the cards they are for, and its place in the pipeline."""

import json

import pytest

from medix_lib import config, memory, models, params, pipeline

GIB = memory.GIB


def qwen3(**over):
    return {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "head_dim": 128, "vocab_size": 151936,
            "rms_norm_eps": 1e-6, "rope_theta": 1e6, "hidden_act": "silu", **over}


def qwen25_vl(hidden, intermediate, layers, heads, kv_heads, vocab, tie, vision):
    return {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl", "hidden_size": hidden,
            "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "vocab_size": vocab, "tie_word_embeddings": tie, "hidden_act": "silu",
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "image_token_id": vocab - 5,
            "video_token_id": vocab - 4, "vision_start_token_id": vocab - 3, "vision_end_token_id": vocab - 2,
            "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                              "out_hidden_size": hidden, "patch_size": 14, "spatial_merge_size": 2,
                              "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
                              **vision}}


# The architecture numbers of the gpu profile's models (their config.json on the hub), and the parameter counts their
# model cards publish: the plans in docs/gpu.md and the preset comments come from these.
PUBLISHED = {
    "Qwen/Qwen2.5-VL-3B-Instruct": (qwen25_vl(2048, 11008, 36, 16, 2, 151936, True, {}), 3_754_622_976),
    "Qwen/Qwen3-4B-Instruct-2507": (qwen3(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                                          num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=True,
                                          max_position_embeddings=262144), 4_022_468_096),
    "Qwen/Qwen3-14B": (qwen3(hidden_size=5120, intermediate_size=17408, num_hidden_layers=40, num_attention_heads=40,
                             num_key_value_heads=8, tie_word_embeddings=False, max_position_embeddings=40960),
                       14_768_307_200),
    "abhinand/MedEmbed-large-v0.1": ({"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 1024,
                                      "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
                                      "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2},
                                     335_141_888),
}
TINY_QWEN3 = qwen3(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=8, vocab_size=128, tie_word_embeddings=True,
                   max_position_embeddings=256)
TINY_VLM = qwen25_vl(64, 128, 2, 4, 2, 160, True, {"depth": 2, "hidden_size": 32, "intermediate_size": 64,
                                                    "num_heads": 2, "fullatt_block_indexes": [1]})


def write_config(root, name, cfg):
    folder = root / name.replace("/", "--")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    return str(folder)


@pytest.fixture
def published(tmp_path, monkeypatch):
    """The gpu profile's hub ids resolve to folders holding only their published config.json."""
    paths = {name: write_config(tmp_path, name, cfg) for name, (cfg, _) in PUBLISHED.items()}
    resolve = models.resolve_path
    monkeypatch.setattr(models, "resolve_path", lambda name: paths.get(name) or resolve(name))
    memory.arch.cache_clear()
    yield paths
    memory.arch.cache_clear()


def real_model(cfg):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    config_ = AutoConfig.for_model(**cfg)
    loader = AutoModelForImageTextToText if "vision_config" in cfg else AutoModelForCausalLM
    return loader.from_config(config_)


@pytest.mark.parametrize("cfg", [TINY_QWEN3, TINY_VLM], ids=["qwen3", "qwen2.5-vl"])
def test_counts_on_the_meta_device_equal_the_instantiated_model(tmp_path, cfg):
    import torch

    a = memory.arch(write_config(tmp_path, "tiny", cfg))
    model = real_model(cfg)
    model.tie_weights()
    assert a.params == sum(p.numel() for p in model.parameters())  # the tied head counted once
    tower = model.model.visual if "vision_config" in cfg else None
    assert a.vision == (sum(p.numel() for p in tower.parameters()) if tower else 0)
    decoder = model.model.language_model if tower else model.model
    linears = [m for m in decoder.layers.modules() if isinstance(m, torch.nn.Linear)]
    assert a.quantizable == sum(m.weight.numel() for m in linears)
    keys = [m for m in decoder.layers.modules() if isinstance(m, torch.nn.Linear) and m in
            [layer.self_attn.k_proj for layer in decoder.layers]]
    assert a.kv_bytes_per_token == 2 * sum(k.out_features for k in keys) * 2  # keys and values, bf16, every layer


def test_lora_count_equals_peft_on_the_language_model(tmp_path):
    from peft import LoraConfig, get_peft_model

    a = memory.arch(write_config(tmp_path, "tiny", TINY_VLM))
    targets = "|".join(memory.UNSLOTH_TARGETS)
    model = get_peft_model(real_model(TINY_VLM), LoraConfig(
        r=4, target_modules=rf".*language_model.*\.({targets})"))  # Unsloth leaves the vision tower alone
    assert a.lora_params(4, memory.UNSLOTH_TARGETS) == sum(p.numel() for n, p in model.named_parameters()
                                                           if "lora_" in n)
    top = get_peft_model(real_model(TINY_VLM), LoraConfig(
        r=4, target_modules=list(memory.PLAIN_TARGETS), layers_to_transform=[1], layers_pattern="layers"))
    assert a.lora_params(4, memory.PLAIN_TARGETS, last_layers=1) == sum(
        p.numel() for n, p in top.named_parameters() if "lora_" in n and "language_model" in n)


def test_lora_targets_are_the_training_loaders():
    from medix_lib.training import loading

    assert memory.PLAIN_TARGETS == tuple(loading.LORA_TARGETS)
    assert set(memory.PLAIN_TARGETS) < set(memory.UNSLOTH_TARGETS)


def test_image_tokens_follow_the_merged_patch_grid(tmp_path):
    a = memory.arch(write_config(tmp_path, "tiny", TINY_VLM))
    assert a.patch_px == 28 and a.patches_per_token == 4
    assert a.image_tokens(56) == 4 and a.image_tokens(57) == 9 and a.image_tokens(448) == 256


def test_published_configs_give_the_published_parameter_counts(published):
    for name, (cfg, count) in PUBLISHED.items():
        assert memory.arch(name, "embedder" if cfg["model_type"] == "bert" else "causal_lm").params == count, name


def tiny_train_params(tmp_path, **over):
    values = {"policy_model": write_config(tmp_path, "policy", TINY_VLM),
              "judge_model": write_config(tmp_path, "judge", TINY_QWEN3), "rewards": ["accuracy", "format"],
              "lora_r": 4, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, "num_generations": 2,
              "max_completion_length": 16, "warmup_max_steps": 0, "variant": "t",
              "output_dir": str(tmp_path / "03_train_grpo" / "t"), **over}
    return params.build("03", values)


def test_training_plan_adds_what_stays_loaded_and_the_largest_phase(tmp_path):
    cfg = tiny_train_params(tmp_path)
    plan = memory.plan_stage(cfg, unsloth=True, total=24 * GIB)
    policy, judge = memory.arch(cfg.policy_model), memory.arch(cfg.judge_model)
    rest = policy.params - policy.quantizable
    lora = policy.lora_params(4, memory.UNSLOTH_TARGETS)
    assert [line.nbytes for line in plan.resident] == [
        pytest.approx(policy.quantizable * memory.NF4_BYTES + rest * 2), lora * (4 + 4 + 2), judge.params * 2]
    assert set(plan.phases) == {"rollouts", "update", "rewards"}
    # rollouts: the generation batch (4 x 2 sequences) at full length in bf16 keys and values
    kv = plan.phases["rollouts"][0]
    length = memory.TRAIN_PROMPT_TOKENS + policy.image_tokens(memory.TRAIN_IMAGE_PX) + 16
    assert kv.nbytes == 8 * length * policy.kv_bytes_per_token
    peak = max(sum(line.nbytes for line in lines) for lines in plan.phases.values())
    expected = (sum(line.nbytes for line in plan.resident) + peak + memory.CUDA_CONTEXT) * (1 + memory.MARGIN)
    assert plan.need() == pytest.approx(expected)
    assert plan.peak_phase() in plan.phases


def test_the_warm_up_phase_is_planned_at_its_own_batch_size(tmp_path):
    small, large = (memory.plan_stage(tiny_train_params(tmp_path, warmup_max_steps=10, warmup_batch_size=n),
                                      unsloth=True, total=24 * GIB).phases["format warm-up"] for n in (2, 4))
    logits = [lines[-1] for lines in (small, large)]
    assert logits[1].nbytes == 2 * logits[0].nbytes and logits[0].detail.startswith("2 x ")


def test_plain_path_keeps_bf16_weights_and_adapts_the_top_layers(tmp_path):
    cfg = tiny_train_params(tmp_path, lora_last_layers=1)
    plan = memory.plan_stage(cfg, unsloth=False, total=24 * GIB)
    policy = memory.arch(cfg.policy_model)
    assert plan.resident[0].nbytes == policy.params * 2
    assert plan.resident[1].nbytes == policy.lora_params(4, memory.PLAIN_TARGETS, 1) * (4 + 4 + 8)  # adamw_torch


def test_an_http_judge_takes_nothing_in_this_process(tmp_path):
    cfg = tiny_train_params(tmp_path, judge_backend="openai", judge_model="Qwen/Qwen3-14B")
    judge = memory.plan_stage(cfg, unsloth=True, total=24 * GIB).resident[2]
    assert judge.nbytes == 0 and "HTTP" in judge.detail


def test_vllm_colocated_rollouts_take_trls_share_of_the_card(tmp_path):
    from trl import GRPOConfig

    cfg = tiny_train_params(tmp_path, use_vllm=True)
    plan = memory.plan_stage(cfg, unsloth=True, total=80 * GIB)
    share = GRPOConfig.__dataclass_fields__["vllm_gpu_memory_utilization"].default
    assert any(line.what.startswith("vLLM") and line.nbytes == share * 80 * GIB for line in plan.resident)
    assert "rollouts" not in plan.phases


class Run:
    def __init__(self, cfg):
        self.params = cfg


def test_check_prints_every_plan_and_stops_naming_models_and_numbers(tmp_path, capsys):
    cfg = tiny_train_params(tmp_path)
    need = memory.plan_stage(cfg, unsloth=True, total=GIB).need()
    memory.check([Run(cfg)], free=need + 1, total=GIB, device="card", unsloth=True)
    assert "memory plan: 03_train_grpo [t] on card" in capsys.readouterr().out
    with pytest.raises(memory.MemoryPlanError) as err:
        memory.check([Run(cfg)], free=need - 1, total=GIB, device="card", unsloth=True)
    text = str(err.value)
    assert "do not fit card" in text and f"needs {need / GIB:.1f} GiB" in text
    assert cfg.policy_model in text and cfg.judge_model in text and "gpu24" in text
    assert "DOES NOT FIT" in capsys.readouterr().out


def test_a_config_that_cannot_be_read_is_named():
    with pytest.raises(memory.MemoryPlanError, match="download the model first"):
        memory.arch("no-such-org/no-such-model-xyz")


def test_vllm_share_holds_weights_kv_cache_and_overhead(published):
    a = memory.arch("Qwen/Qwen3-14B")
    share = memory.server_utilization("Qwen/Qwen3-14B", 80 * GIB, 4096)
    need = a.params * 2 + 16 * 4096 * a.kv_bytes_per_token + 3 * GIB
    assert share * 80 * GIB >= need > (share - 0.05) * 80 * GIB
    assert round(share, 2) == 0.55  # docs/gpu.md's command line


@pytest.mark.parametrize("variant, card_gib", [("gpu24", 24), ("gpu80", 80)])
def test_each_preset_fits_the_card_it_is_for(published, variant, card_gib, capsys):
    runs = pipeline.plan(variant)
    plans = memory.check(runs, free=(card_gib - 0.5) * GIB, total=card_gib * GIB, device="card", unsloth=True)
    assert [p.stage for p in plans] == list(config.STAGES.values())
    assert all(r.params.profile == "gpu" for r in runs)  # so the pipeline checks CUDA and this plan for them


def test_the_gpu_profiles_14b_judge_does_not_fit_a_24gb_card(published):
    with pytest.raises(memory.MemoryPlanError, match="04_evaluate_with_judge \\[gpu\\] needs 4[0-9].[0-9] GiB.*"
                                                     "Qwen/Qwen3-14B 27.5 GiB"):
        memory.check(pipeline.plan("gpu", ["04"]), free=23.5 * GIB, total=24 * GIB, device="card", unsloth=True)


def test_pixel_bounds_size_the_pictures_the_plan_budgets(tmp_path):
    """A dynamic-resolution policy's pictures are planned at the size the stage's bounds leave them."""
    plans = {bound: memory.plan_stage(tiny_train_params(tmp_path, image_max_pixels=bound), unsloth=True,
                                      total=24 * GIB) for bound in (0, 224 * 224)}
    policy = memory.arch(tiny_train_params(tmp_path).policy_model)
    kv = {bound: plan.phases["rollouts"][0].nbytes for bound, plan in plans.items()}
    tokens = {bound: kv[bound] // (8 * policy.kv_bytes_per_token) - memory.TRAIN_PROMPT_TOKENS - 16 for bound in kv}
    assert tokens == {0: policy.image_tokens(memory.TRAIN_IMAGE_PX), 224 * 224: policy.image_tokens(224)} == {
        0: 256, 224 * 224: 64}
    grown = memory.plan_stage(tiny_train_params(tmp_path, image_min_pixels=896 * 896), unsloth=True, total=24 * GIB)
    assert "896 px" in grown.phases["rollouts"][-1].detail


def test_every_gpu_preset_caps_pictures_at_the_size_its_plan_budgets():
    for variant in ("gpu", "gpu24", "gpu80"):
        for stage, px in (("02", memory.TRAIN_IMAGE_PX), ("03", memory.TRAIN_IMAGE_PX), ("04", memory.EVAL_IMAGE_PX)):
            cfg = params.load(stage, variant)
            assert cfg.image_max_pixels == memory.EVAL_IMAGE_PX ** 2 and memory._picture_px(cfg, px) == px


def test_presets_read_their_own_upstream_outputs():
    for variant in ("gpu24", "gpu80"):
        for stage in ("02", "03", "04"):
            assert params.load(stage, variant).dataset_dir == f"01_synthesize_data/{variant}/dataset"
        assert params.load("04", variant).candidates["grpo"] == f"03_train_grpo/{variant}/model"


def test_pipeline_checks_the_plan_after_cuda(monkeypatch):
    import torch

    seen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(memory, "check", lambda runs: seen.append([r.stage for r in runs]))
    runs = pipeline.plan("gpu24", ["03", "04"])
    pipeline.require_cuda(runs)
    assert seen == [["03_train_grpo", "04_evaluate_with_judge"]]
    pipeline.require_cuda([])
    assert len(seen) == 1


def test_a_judge_too_big_to_serve_on_the_card_is_refused(published):
    with pytest.raises(memory.MemoryPlanError, match="serving Qwen/Qwen3-14B needs 40.5 GiB"):
        memory.server_utilization("Qwen/Qwen3-14B", 24 * GIB, 4096)
