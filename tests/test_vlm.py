"""The offline vision-language policy (medix_lib.vlm): the Lite0 tower mapping, the frozen BatchNorm tower, the
checkpoint round trip, mixed image/text chunks, the shipped projector and the alignment split."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from medix_lib import artifacts, vlm


# ------------------------------------------------------------------------------------------ fast: tiny and tower
def _same_pad(x, k, s):
    """TensorFlow "SAME" padding, as the Lite0 weights were trained with."""
    ih, iw = x.shape[-2:]
    ph = max((-(-ih // s) - 1) * s + k - ih, 0)
    pw = max((-(-iw // s) - 1) * s + k - iw, 0)
    return torch.nn.functional.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


def _reference_lite0(sd, x):
    """EfficientNet-Lite0 written out from its .pth alone (no transformers): stem, 16 MBConv blocks, head."""
    F = torch.nn.functional

    def bn(h, p):
        return F.batch_norm(h, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                            False, 0.0, 1e-3)

    h = F.relu6(bn(F.conv2d(_same_pad(x, 3, 2), sd["_conv_stem.weight"], stride=2), "_bn0"))
    strides = [s for s, n in zip((1, 2, 2, 2, 1, 2, 1), (1, 2, 2, 3, 3, 4, 1)) for s in [s] + [1] * (n - 1)]
    for i, stride in enumerate(strides):
        p, inp = f"_blocks.{i}.", h
        if p + "_expand_conv.weight" in sd:
            h = F.relu6(bn(F.conv2d(h, sd[p + "_expand_conv.weight"]), p + "_bn0"))
        w = sd[p + "_depthwise_conv.weight"]
        h = F.relu6(bn(F.conv2d(_same_pad(h, w.shape[-1], stride), w, stride=stride, groups=w.shape[0]), p + "_bn1"))
        h = bn(F.conv2d(h, sd[p + "_project_conv.weight"]), p + "_bn2")
        if stride == 1 and h.shape == inp.shape:
            h = h + inp
    return F.relu6(bn(F.conv2d(h, sd["_conv_head.weight"]), "_bn1"))


def test_lite0_tower_reproduces_the_original_network():
    from transformers import EfficientNetModel

    tower = EfficientNetModel(vlm.lite0_config()).eval()
    tower.load_state_dict(vlm.lite0_state_dict(tower), strict=True)
    sd = torch.load(vlm.lite0_checkpoint(), map_location="cpu", weights_only=True)
    x = torch.randn(1, 3, vlm.IMAGE_SIZE, vlm.IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, ref = tower(x).last_hidden_state, _reference_lite0(sd, x)
        # the ImageNet head on our features still classifies: a real, intact network
        logits = sd["_fc.weight"] @ ours.mean((2, 3))[0] + sd["_fc.bias"]
    assert ours.shape == (1, 1280, 7, 7)
    assert (ours - ref).abs().max().item() < 1e-4
    assert torch.isfinite(logits).all()


def _tiny_vlm():
    from transformers import EfficientNetConfig, FastVlmConfig, FastVlmForConditionalGeneration, LlamaConfig

    vision = EfficientNetConfig(width_coefficient=0.25, depth_coefficient=0.25, image_size=32, hidden_dim=320,
                                hidden_act="relu6", drop_connect_rate=0.0)
    vision.hidden_size = 320
    text = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1)
    torch.manual_seed(0)
    return FastVlmForConditionalGeneration(FastVlmConfig(vision_config=vision, text_config=text, image_token_index=63,
                                                         image_seq_length=1))


def _tiny_step(model):
    ids = torch.tensor([[1, 63, 5, 6, 7], [1, 63, 8, 9, 10]])
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model.train()
    model(input_ids=ids, pixel_values=pixels, labels=ids).loss.backward()


def _bn_stats(model):
    return {k: v.clone() for k, v in vlm.vision_tower(model).state_dict().items() if "running" in k}


def test_tower_stays_frozen_and_in_eval_mode_through_train_and_backward():
    control = _tiny_vlm()
    before = _bn_stats(control)
    _tiny_step(control)
    assert any(not torch.equal(before[k], v) for k, v in _bn_stats(control).items()), "control must move BN stats"

    model = vlm.freeze_tower(_tiny_vlm())
    before = _bn_stats(model)
    _tiny_step(model)
    tower = vlm.vision_tower(model)
    assert model.training and model.model.language_model.training
    assert not any(m.training for m in tower.modules())
    assert all(not p.requires_grad and p.grad is None for p in tower.parameters())
    assert all(torch.equal(before[k], v) for k, v in _bn_stats(model).items())
    assert all(p.grad is not None for p in model.model.multi_modal_projector.parameters())


def test_frozen_tower_survives_peft_wrapping_and_deepcopy():
    import copy

    from peft import LoraConfig, get_peft_model

    model = get_peft_model(vlm.freeze_tower(_tiny_vlm()), LoraConfig(r=2, target_modules=["q_proj", "v_proj"],
                                                                     modules_to_save=["multi_modal_projector"]))
    for wrapped in (model, copy.deepcopy(model)):
        wrapped.train()
        assert not any(m.training for m in vlm.vision_tower(wrapped).modules())
        assert not any(p.requires_grad for p in vlm.vision_tower(wrapped).parameters())


def test_captions_never_name_the_modality_and_parse_back():
    from medix_lib.data.images import image_source_objects

    sources, _ = image_source_objects()
    for s in sources:
        text = vlm.caption(s.facts)
        assert "modality" not in text and s.facts["modality"][0].lower() not in text.lower()
        assert vlm.parse_caption(text) == {k: v[0].lower() for k, v in s.facts.items() if k in vlm.CAPTION_FACTS}
    items = [(None, s.facts, s.key) for s in sources]
    assert vlm.score_captions([vlm.caption(s.facts) for s in sources], items)["f1"] == 1.0
    assert vlm.score_captions(["plane: axial"] * len(items), items)["f1"] < 0.3


def test_alignment_holds_out_whole_pictures_and_never_the_data_stage_test_pictures(monkeypatch):
    from medix_lib.data import synthesis

    seen = []
    real = synthesis.split_images
    monkeypatch.setattr(synthesis, "split_images", lambda *a: seen.append(real(*a)) or seen[-1])
    synthesis.synthesize(seed=3, n_text=0, n_image=12, image_size=32, test_fraction=0.2)
    cfg = vlm.AlignConfig(data_seed=3, test_fraction=0.2)
    assert vlm.data_split(3, 0.2)[1] == seen[0]  # the very split the data stage made
    train, held = vlm.align_split(cfg)
    train_keys, held_keys = {s.key for s in train}, {s.key for s in held}
    assert train_keys and held_keys and not train_keys & held_keys
    assert not (train_keys | held_keys) & seen[0]
    train_views = vlm.views(train, 3, "t")
    held_views = vlm.views(held, 3, "h")
    assert {k for _, _, k in train_views} <= train_keys and {k for _, _, k in held_views} <= held_keys
    assert len(held_views) == 3 * len(held)


def test_modality_probe_matches_each_picture_only_to_other_training_pictures():
    probe = vlm.modality_probe(data_seed=0, test_fraction=0.2, views_per_picture=2)
    train, test_keys = vlm.data_split(0, 0.2)
    pictures = probe["pictures"]
    assert {k for k, p in pictures.items() if p["split"] == "test"} == test_keys
    assert {k for k, p in pictures.items() if p["split"] == "train"} == {s.key for s in train}
    train_modalities = {s.modality for s in train}
    for key, p in pictures.items():
        # a picture's own views are never its neighbours, so each view finds exactly one training neighbour
        assert sum(p["nearest"].values()) == 2 and set(p["nearest"]) <= train_modalities
        assert p["accuracy"] == p["nearest"].get(p["modality"], 0) / 2
    test_scores = [p["accuracy"] for p in pictures.values() if p["split"] == "test"]
    assert probe["heldout"] == pytest.approx(sum(test_scores) / len(test_scores))
    assert 0 <= probe["chance"] <= 1 and probe["commonest_training_modality"] in train_modalities


# ------------------------------------------------------------------------------------- slow: the real 139M model
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return vlm.build_base(tmp_path_factory.mktemp("vlm") / "base")


def _image(seed=0, size=(300, 200)):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8))


def _mixed_chunk(processor):
    image_prompt = [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                    {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "What?"}]}]
    text_prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a bone."}]
    texts = [processor.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
             for p in (image_prompt, text_prompt)]
    processor.tokenizer.padding_side = "left"
    # A text-only row contributes an empty image list, never None.
    return processor(text=texts, images=[[_image()], []], return_tensors="pt", padding=True)


@pytest.mark.slow
def test_base_reloads_with_auto_classes_pil_backend_and_identical_logits(base):
    from transformers import AutoModelForImageTextToText, AutoProcessor, PilBackend

    built, _ = vlm.build(0)
    model = AutoModelForImageTextToText.from_pretrained(base).eval()
    processor = AutoProcessor.from_pretrained(base)
    assert type(model).__name__ == "FastVlmForConditionalGeneration"
    assert type(processor.image_processor) is PilBackend
    assert model.config.vision_config.model_type == "efficientnet" and model.config.image_seq_length == 49
    enc = _mixed_chunk(processor)
    assert (enc["input_ids"] == model.config.image_token_id).sum() == vlm.IMAGE_TOKENS
    assert enc["pixel_values"].shape == (1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(built(**enc).logits, model(**enc).logits)


@pytest.mark.slow
def test_generate_on_a_mixed_chunk_and_policy_load(base):
    from medix_lib import policy

    loaded = policy.load(str(base))
    assert loaded.is_vision
    enc = _mixed_chunk(loaded.processing_class)
    with torch.inference_mode():
        out = loaded.model.generate(**enc, max_new_tokens=6, do_sample=False,
                                    suppress_tokens=[loaded.model.config.image_token_id])
    texts = loaded.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert len(texts) == 2 and all(t.strip() for t in texts)


@pytest.mark.slow
def test_shipped_projector_is_hash_checked_and_assembles_without_training(tmp_path, monkeypatch, base):
    tensors, rec = artifacts.load_tensors(vlm.ARTIFACT)
    assert tensors and all(k.startswith(vlm.PROJECTOR) for k in tensors)
    for key in ("base_parts", "config", "seed", "data_hash", "steps", "loss_curve", "caption_accuracy_before",
                "caption_accuracy_after", "train_seconds", "code_commit", "heldout_pictures"):
        assert key in rec
    assert not set(rec["heldout_pictures"]) & set(rec["train_pictures"])

    broken = tmp_path / "broken"
    shutil.copytree(artifacts.directory(vlm.ARTIFACT), broken)
    data = bytearray((broken / artifacts.WEIGHTS).read_bytes())
    data[-1] ^= 1
    (broken / artifacts.WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(artifacts.ArtifactError, match="sha256"):
        vlm.assemble(tmp_path / "never", broken)

    def no_training(*a, **k):
        raise AssertionError("assembling must not train")

    monkeypatch.setattr(torch.optim, "AdamW", no_training)
    model, _ = vlm.load(vlm.assemble(tmp_path / "assembled"))
    reference, _ = vlm.load(base)
    own = dict(model.named_parameters())
    for name, param in reference.named_parameters():
        expected = tensors[name].float() if name in tensors else param
        assert torch.equal(own[name], expected), name


def test_pixel_bounds_reach_a_dynamic_resolution_processor_and_are_refused_elsewhere():
    """``image_min_pixels``/``image_max_pixels`` resize a Qwen-VL picture; a fixed-size processor (this project's
    VLM) or a text policy refuses them rather than ignore them; unset, the evaluation's stored settings are as before
    (no stored answer is dropped), and the gpu presets hand theirs to the evaluation."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from medix_lib import evaluation, models, params, policy
    from medix_lib.config import ParamsError

    picture = [Image.new("RGB", (640, 480))]
    grids = {bounds: models.limit_image_pixels(Qwen2VLImageProcessorPil(), *bounds)(images=picture)[
        "image_grid_thw"].tolist() for bounds in ((0, 0), (0, 100_000), (1_000_000, 0))}
    tokens = {bounds: grid[0][1] * grid[0][2] // 4 for bounds, grid in grids.items()}
    assert tokens[(0, 100_000)] * 28 * 28 <= 100_000 < tokens[(0, 0)] * 28 * 28 < 1_000_000 <= tokens[
        (1_000_000, 0)] * 28 * 28
    with pytest.raises(ParamsError, match="resizes every picture to one size"):
        policy.load("medix-vlm-135m", max_pixels=200_000)
    with pytest.raises(ParamsError, match="takes no pictures"):
        models.limit_image_pixels(models.load_tokenizer("smollm2-135m-instruct"), max_pixels=200_000)
    with pytest.raises(ParamsError, match="min at most max"):
        params.load("03", "smoke", overrides={"image_min_pixels": 500, "image_max_pixels": 400})
    assert "image_max_pixels" not in evaluation.Protocol().generation()
    assert params.load("04", "gpu24").protocol().generation()["image_max_pixels"] == 1024 * 1024
