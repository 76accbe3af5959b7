"""Training: the warm-up stops on its format criterion, every loss variant runs and the clip ranges act, DAPO's group
filter drops planted zero-spread groups, a run killed with SIGKILL resumes to the same weights, two processes log
each reward once, and every adapter carries a model card."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import datasets
import pytest

from medix_lib import config, params, training
from medix_lib.contract import OutputContract
from medix_lib.data import FEATURES, to_grpo
from medix_lib.training import grpo, rows

ROWS = [
    ("What is the lay term for myocardial infarction?", "heart attack"),
    ("What is the lay term for epistaxis?", "nosebleed"),
    ("What is the lay term for pruritus?", "itching"),
    ("What is the lay term for syncope?", "fainting"),
    ("What is the lay term for cephalalgia?", "headache"),
    ("What is the lay term for pyrexia?", "fever"),
    ("What is the lay term for emesis?", "vomiting"),
    ("What is the lay term for dyspnea?", "shortness of breath"),
]


def dataset_dir(root: Path, n: int = 32, with_images: bool = False) -> Path:
    """A notebook-01-shaped DatasetDict under ``root``'s outputs layout: text rows, every other one a CT picture
    question (a random-noise PNG) ``with_images``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    train = [{"id": f"r{i}", "question": ROWS[i % len(ROWS)][0] + f" (case {i})", "answer": ROWS[i % len(ROWS)][1],
              "modality": "OTHER", "task_type": "open", "source": "test", "split": "train", "image": None,
              "choices": None, "extra_images": []} for i in range(n)]
    if with_images:
        for row in train[::2]:
            row.update(question=f"Which plane is shown? (case {row['id']})", answer="axial", modality="CT_SCAN",
                       image=Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).convert("RGB"))
    path = root / "01_synthesize_data" / "smoke" / "dataset"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(train, features=FEATURES),
                          "test": datasets.Dataset.from_list(train[:4], features=FEATURES)}).save_to_disk(str(path))
    return path


TINY = {"max_train_rows": 8, "max_completion_length": 10, "num_generations": 2, "per_device_train_batch_size": 4,
        "warmup_max_steps": 2, "warmup_check_every": 1, "warmup_check_prompts": 4, "lora_last_layers": 2,
        "rewards": ["semantic", "modality", "format"]}


def test_params_name_the_bad_combination_before_any_model_loads():
    with pytest.raises(params.ParamsError, match="steps_per_generation = 8 \\* 3 = 24 must be divisible"):
        params.load("03", "smoke", overrides={"steps_per_generation": 3, "gradient_accumulation_steps": 1,
                                              "num_generations": 5})
    with pytest.raises(params.ParamsError, match="'steps_per_generation' = 3 must be a multiple"):
        params.load("03", "smoke", overrides={"steps_per_generation": 3, "gradient_accumulation_steps": 2})
    with pytest.raises(params.ParamsError, match="'checkpoint_every' = 3 must be a multiple of 2"):
        params.load("03", "smoke", overrides={"checkpoint_every": 3, "num_iterations": 2})
    with pytest.raises(params.ParamsError, match="group_filter"):
        params.load("03", "dapo", overrides={"group_filter": [0.9, 0.1]})


def test_resume_from_another_configuration_is_refused(tmp_path):
    cfg = params.load("03", "smoke", tmp_path / "03_train_grpo" / "smoke", {"resume": True})
    (tmp_path / "03_train_grpo" / "smoke" / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (tmp_path / "03_train_grpo" / "smoke" / "checkpoints" / "config_hash.txt").write_text("0123456789abcdef")
    with pytest.raises(training.ResumeError, match="checkpoints of another configuration"):
        training.train(cfg)


def test_a_fresh_run_clears_an_earlier_runs_checkpoints_and_a_resumed_one_keeps_them(tmp_path):
    from medix_lib.training import run

    folder = tmp_path / "checkpoints"
    for step in (20, 40):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
    run.start_checkpoints(folder, "aaaa", keep=True)
    assert run._last_checkpoint(tmp_path, "aaaa").endswith("checkpoint-40")
    run.start_checkpoints(folder, "bbbb", keep=False)
    assert run._last_checkpoint(tmp_path, "bbbb") is None and (folder / "config_hash.txt").read_text() == "bbbb"


def test_batches_are_of_one_kind_and_text_batches_lose_the_image_key():
    kind = [i % 3 == 0 for i in range(30)]
    order = rows.homogeneous_order(kind, 4, 12, seed=1)
    assert all(len({kind[i] for i in order[b:b + 4]}) == 1 for b in range(0, len(order), 4))
    assert {kind[i] for i in order} == {True, False}


def test_image_rows_are_drawn_evenly_across_modalities():
    modality = ["MRI_SCAN"] * 12 + ["CT_SCAN"] * 3 + ["SPECT"] * 1 + ["OTHER"] * 8
    kind = [m != "OTHER" for m in modality]
    order = rows.homogeneous_order(kind, 4, 12, seed=2, modality=modality)
    drawn = Counter(modality[i] for i in order if kind[i])
    assert max(drawn.values()) - min(drawn.values()) <= 1 and set(drawn) == {"MRI_SCAN", "CT_SCAN", "SPECT"}
    assert all(len({kind[i] for i in order[b:b + 4]}) == 1 for b in range(0, len(order), 4))


def _text_reward(completions, **_):
    """A deterministic function of what the policy wrote: it varies within a group, so advantages are not zero."""
    return [sum(map(ord, c[0]["content"])) % 97 / 96 for c in completions]


def _constant_for_planted(completions, question, **_):
    """Planted zero-spread groups: every completion of a "constant" prompt scores 1.0."""
    return [1.0 if "constant" in q else r for q, r in zip(question, _text_reward(completions))]


def _tiny_trainer(tmp_path, reward, group_filter=None, learning_rate=5e-2, group_refill=0, **overrides):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import GRPOConfig

    from medix_lib import models

    tokenizer = AutoTokenizer.from_pretrained(models.resolve_path("smollm2-135m-instruct"))
    tokenizer.pad_token = tokenizer.eos_token
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id))
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))  # as in training: the KL reference is the base
    questions = [f"Question {i}" + (" constant" if i % 2 else "") for i in range(8)]
    ds = datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": q}], "question": q} for q in questions])
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, max_steps=2, num_generations=2,
                      per_device_train_batch_size=4, max_completion_length=8, logging_steps=1,
                      learning_rate=learning_rate, report_to="none", disable_tqdm=True, seed=0, shuffle_dataset=False,
                      gradient_checkpointing=False, **{"save_strategy": "no", **overrides})
    return grpo.trainer_class()(model=model, reward_funcs=[reward], args=args, train_dataset=ds,
                                processing_class=tokenizer, group_filter=group_filter,
                                rewards_path=tmp_path / "rewards.jsonl", group_refill=group_refill)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["grpo", "dapo", "gspo", "dr_grpo"])
def test_every_loss_variant_trains_and_the_clip_ranges_act(tmp_path, variant):
    knobs = {"grpo": {"loss_type": "grpo", "beta": 0.01},
             # a learning rate high enough that one update moves token probabilities past DAPO's 0.2 / 0.28
             "dapo": {"loss_type": "dapo", "beta": 0.0, "epsilon_high": 0.28, "num_iterations": 2,
                      "learning_rate": 0.5},
             "gspo": {"loss_type": "grpo", "beta": 0.0, "importance_sampling_level": "sequence", "epsilon": 3e-4,
                      "epsilon_high": 4e-4, "num_iterations": 2},
             "dr_grpo": {"loss_type": "dr_grpo", "beta": 0.0}}[variant]
    trainer = _tiny_trainer(tmp_path, _text_reward, **knobs)
    trainer.train()
    steps = [h for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 2 and len(steps) == 2
    assert all(h["time/update"] > 0 for h in steps) and steps[0]["time/generation"] > 0
    # num_iterations 2: one rollout batch feeds both updates, so rewards are logged once
    assert len([h for h in steps if "reward" in h]) == (1 if "num_iterations" in knobs else 2)
    if variant in ("dapo", "gspo"):  # the second update on a rollout batch sees a moved policy: ratios leave 1
        assert max(h["clip_ratio/region_mean"] for h in steps) > 0, steps


@pytest.mark.slow
@pytest.mark.parametrize("with_images", [True, False], ids=["mixed", "all_text"])
def test_the_vision_language_policy_trains_on_mixed_and_on_all_text_rows(tmp_path, with_images):
    """The smoke policy (medix-vlm-135m) through the training entry point: 3 GRPO steps take 3 of 4 one-kind batches,
    so a mixed dataset trains on both kinds (the image in the prompt) and an all-text one on text alone."""
    dataset_dir(tmp_path, with_images=with_images)
    cfg = params.load("03", "smoke", tmp_path / "03_train_grpo" / "smoke",
                      {**TINY, "max_steps": 3, "warmup_max_steps": 1})
    assert cfg.policy_model == "medix-vlm-135m"
    result = training.train(cfg, progress=False)
    kinds = {r["kind"] for r in result["completion_rewards"]}
    assert result["steps"] == 3 and kinds == ({"image", "text"} if with_images else {"text"})
    image_rewards = [r["modality"] for r in result["completion_rewards"] if r["kind"] == "image"]
    assert all(v in (0.0, 1.0) for v in image_rewards)  # scored against the picture's modality


@pytest.mark.slow
def test_validation_keeps_the_best_adapter_and_leaves_training_unchanged(tmp_path):
    """Validation at steps 0, 2 and 3 of a 3-step run on held-out rows; the best step's adapter kept; the trained
    adapter the same to the bit as that of a run without validation (same rows, seed and steps)."""
    from safetensors.torch import load_file

    dataset_dir(tmp_path, with_images=True)
    base = {**TINY, "max_steps": 3, "warmup_max_steps": 0}
    runs = {name: training.train(params.load("03", "smoke", tmp_path / "03_train_grpo" / name, {**base, **extra}),
                                 progress=False)
            for name, extra in (("plain", {}), ("validated", {"validation_every": 2, "validation_rows": 4}))}
    curve = runs["validated"]["validation"]
    assert [v["step"] for v in curve] == [0, 2, 3] and all(v["n"] == 4 and 0 <= v["composite"] <= 1 for v in curve)
    assert runs["plain"]["validation"] == [] and runs["validated"]["validation_rows"] == 4
    best_dir = tmp_path / "03_train_grpo" / "validated" / "best_model"
    best = max(curve, key=lambda v: v["composite"])
    assert json.loads((best_dir / "validation.json").read_text())["step"] == best["step"]
    assert (best_dir / "adapter_model.safetensors").is_file()
    card = (best_dir / "README.md").read_text()
    assert f"best validation step {best['step']}" in card and f"composite {best['composite']:.3f}" in card
    weights = {name: load_file(str(Path(run["model_dir"]) / "adapter_model.safetensors")) for name, run in runs.items()}
    assert all(bool((weights["plain"][k] == weights["validated"][k]).all()) for k in weights["plain"])


@pytest.mark.slow
def test_release_rows_with_several_pictures_go_from_notebook_01_to_grpo_steps(tmp_path, monkeypatch):
    """Notebook 01 reads a copy of the MediX-R1 release (rows of one, two and three pictures) through its
    ``release_data`` parameter; notebook 03's training then takes GRPO steps of the offline VLM on those rows, each
    question asked with every one of its pictures (the model itself refuses pictures that miss their placeholders)."""
    from transformers import LlavaProcessor

    fixture = config.REPO_ROOT / "tests" / "fixtures" / "benchmarks" / "medix_r1"
    done = subprocess.run([sys.executable, "-m", "medix_lib", "run", "--quiet", "--output-root", str(tmp_path),
                           "--profile", "smoke", "--only", "01", "--set", f"01.release_data={fixture}",
                           "--set", "01.image_size=64"], capture_output=True, text=True, cwd=config.REPO_ROOT,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    metrics = json.loads((tmp_path / "01_synthesize_data" / "smoke" / "metrics.json").read_text())
    assert metrics["rows"] == 7 and metrics["synthesis"]["train/rows_with_several_images"] == 2
    pictures_per_prompt = []
    called = LlavaProcessor.__call__

    def spy(self, *args, images=None, **kwargs):
        pictures_per_prompt.extend(len(p) for p in images or [])
        return called(self, *args, images=images, **kwargs)

    monkeypatch.setattr(LlavaProcessor, "__call__", spy)
    cfg = params.load("03", "smoke", tmp_path / "03_train_grpo" / "smoke",
                      {**TINY, "max_steps": 2, "warmup_max_steps": 0, "warmup_check_prompts": 0,
                       "max_train_rows": 4})
    result = training.train(cfg, progress=False)
    assert result["steps"] == 2 and {r["kind"] for r in result["completion_rewards"]} == {"image", "text"}
    assert {2, 3} & set(pictures_per_prompt), pictures_per_prompt


def test_the_warmup_masks_a_prompt_of_several_pictures_whole():
    """The warm-up's loss starts after the prompt; with two pictures the prompt holds two blocks of image tokens."""
    from PIL import Image

    from medix_lib import vlm
    from medix_lib.training import warmup

    _, processor = vlm.build()
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                                                       {"type": "text", "text": "Which side?"}]}],
                                         tokenize=False, add_generation_prompt=True)
    pics = [Image.new("RGB", (32, 32), "white"), Image.new("RGB", (32, 32), "black")]
    batch = warmup._batch_inputs(processor, [text], ["<answer>Left</answer>"], [pics], "cpu")
    image_token = processor.tokenizer.convert_tokens_to_ids(vlm.IMAGE_TOKEN)
    assert int((batch["input_ids"] == image_token).sum()) == 2 * vlm.IMAGE_TOKENS
    first_target = int((batch["labels"][0] != -100).nonzero()[0])
    assert int((batch["input_ids"][0, :first_target] == image_token).sum()) == 2 * vlm.IMAGE_TOKENS
    assert batch["pixel_values"].shape[0] == 2


@pytest.mark.slow
def test_group_filter_drops_planted_zero_spread_groups(tmp_path):
    trainer = _tiny_trainer(tmp_path, _constant_for_planted, group_filter=(0.01, 0.99), loss_type="dapo", beta=0.0)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "group_filter/dropped" in h]
    # 4 completions per step = 2 groups: the constant prompt's group (mean 1.0) is dropped, the other kept
    assert logged and all(h["group_filter/dropped"] == 1.0 and h["group_filter/kept_fraction"] == 0.5
                          for h in logged)
    written = [json.loads(line) for line in (tmp_path / "rewards.jsonl").read_text().splitlines()]
    assert len(written) == 2 * 4 and {r["step"] for r in written} == {0, 1}


@pytest.mark.slow
def test_dapo_refill_replaces_dropped_groups_with_informative_ones(tmp_path):
    """Each batch holds a constant prompt's group (dropped) and another; refill draws more prompts until the batch
    holds only informative groups, and the extra rollouts are logged as drawn."""
    trainer = _tiny_trainer(tmp_path, _constant_for_planted, group_filter=(0.01, 0.99), loss_type="dapo", beta=0.0,
                            group_refill=3)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "group_filter/dropped" in h]
    assert len(logged) == 2 and all(h["group_filter/dropped"] == 1.0 for h in logged)
    assert all(h["group_filter/kept_fraction"] == 1.0 and 1 <= h["group_filter/refill_batches"] <= 3 for h in logged)
    written = [json.loads(line) for line in (tmp_path / "rewards.jsonl").read_text().splitlines()]
    assert len(written) == 4 * sum(1 + h["group_filter/refill_batches"] for h in logged)


@pytest.mark.slow
def test_a_resumed_refill_run_draws_the_prompts_an_uninterrupted_one_draws(tmp_path):
    """Each checkpoint keeps where refill's draws had got to; a run resumed from step 1 draws on from there, so its
    second step's rollouts (refill batches included) are the uninterrupted run's."""
    from medix_lib.training import refill

    def run(folder, resume=None):
        import torch

        torch.manual_seed(0)  # the same random base model under the adapter
        trainer = _tiny_trainer(folder, _constant_for_planted, group_filter=(0.01, 0.99), loss_type="dapo",
                                beta=0.0, group_refill=3, save_strategy="steps", save_steps=1)
        trainer.train(resume_from_checkpoint=resume)
        rewards = [json.loads(line) for line in (folder / "rewards.jsonl").read_text().splitlines()]
        return trainer._refill_source.position, [r for r in rewards if r["step"] == 1]

    whole, interrupted = tmp_path / "whole", tmp_path / "interrupted"
    positions, second_step = run(whole)
    saved = json.loads((whole / "checkpoint-1" / refill.STATE_FILE).read_text())["position"]
    assert 0 < sum(saved.values()) < sum(positions.values())  # step 2 drew more after the checkpoint
    (interrupted / "checkpoint-1").mkdir(parents=True)
    for path in (whole / "checkpoint-1").iterdir():
        if path.is_file():
            (interrupted / "checkpoint-1" / path.name).write_bytes(path.read_bytes())
    resumed_positions, resumed_second_step = run(interrupted, str(interrupted / "checkpoint-1"))
    assert resumed_positions == positions and resumed_second_step == second_step


def test_refill_merge_repads_and_keeps_whole_groups():
    import torch

    from medix_lib.training import refill

    batch = {"prompt_ids": torch.tensor([[0, 5], [0, 5], [6, 7], [6, 7]]), "prompt_mask": torch.tensor([[0, 1]] * 4),
             "completion_ids": torch.tensor([[1, 2], [3, 0], [4, 0], [5, 6]]),
             "completion_mask": torch.tensor([[1, 1], [1, 0], [1, 0], [1, 1]]),
             "advantages": torch.tensor([1., -1., 0., 0.]), "num_items_in_batch": torch.tensor(6)}
    extra = {"prompt_ids": torch.tensor([[9, 9, 9]] * 4), "prompt_mask": torch.tensor([[1, 1, 1]] * 4),
             "completion_ids": torch.tensor([[7, 8, 9]] * 4), "completion_mask": torch.tensor([[1, 1, 1]] * 4),
             "advantages": torch.tensor([.5, -.5, 2., -2.]), "num_items_in_batch": torch.tensor(12)}
    merged, keep = refill.merge(batch, torch.tensor([True, True, False, False]), extra,
                                torch.tensor([False, False, True, True]), pad_token_id=0)
    assert keep.tolist() == [True] * 4 and merged["advantages"].tolist() == [1., -1., 2., -2.]
    assert merged["prompt_ids"].tolist() == [[0, 0, 5], [0, 0, 5], [9, 9, 9], [9, 9, 9]]  # left-padded
    assert merged["completion_ids"].tolist() == [[1, 2, 0], [3, 0, 0], [7, 8, 9], [7, 8, 9]]  # right-padded
    assert int(merged["num_items_in_batch"]) == 3 + 6


def _train(root, *extra):
    sets = sum((["--set", f"{k}={json.dumps(v)}"] for k, v in {**TINY, "max_steps": 4, "checkpoint_every": 2}.items()),
               [])
    return [sys.executable, "-m", "medix_lib", "train", "--quiet", "--output-root", str(root), *sets, *extra]


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    from safetensors.torch import load_file

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for root in (whole, killed):
        dataset_dir(root)
    done = subprocess.run(_train(whole), capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    proc = subprocess.Popen(_train(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "03_train_grpo" / "smoke" / "checkpoints" / "checkpoint-2"
    deadline = time.monotonic() + 900
    while not (checkpoint / "trainer_state.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # into step 3
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = subprocess.run(_train(killed, "--resume"), capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    a = load_file(str(whole / "03_train_grpo/smoke/model/adapter_model.safetensors"))
    b = load_file(str(killed / "03_train_grpo/smoke/model/adapter_model.safetensors"))
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    history = json.loads((killed / "03_train_grpo/smoke/log_history.json").read_text())
    assert max(h["step"] for h in history if "step" in h) == 4
    card = (killed / "03_train_grpo/smoke/model/README.md").read_text()
    assert all(s in card for s in ("medix-vlm-135m", "sha256", "loss `grpo`", "GRPO 4", "prompt "))


@pytest.mark.slow
def test_two_processes_log_each_reward_once(tmp_path):
    dataset_dir(tmp_path)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(config.REPO_ROOT / "configs/accelerate/cpu_2proc.yaml"), "-m", "medix_lib", "train", "--quiet",
           "--output-root", str(tmp_path),
           *sum((["--set", f"{k}={json.dumps(v)}"] for k, v in {**TINY, "max_steps": 1}.items()), [])]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "03_train_grpo" / "smoke"
    written = [json.loads(line) for line in (out / "completion_rewards.jsonl").read_text().splitlines()]
    # one generation batch per process, 4 completions each, gathered: 8 rows, written by one process only
    assert len(written) == 2 * TINY["per_device_train_batch_size"]
    history = json.loads((out / "log_history.json").read_text())
    assert len([h for h in history if "reward" in h]) == 1


def test_warmup_targets_leave_the_modality_to_rl():
    from medix_lib.training import warmup

    image = __import__("PIL.Image", fromlist=["Image"]).new("RGB", (8, 8))
    batch = {"modality": ["CT_SCAN"] * 20, "answer": ["chest"] * 20, "image": [image] * 20}
    tags = {OutputContract().parse(t).modality for t in warmup.targets(batch, OutputContract(), "random", 0)}
    assert len(tags) > 3  # drawn at random, so the tag says nothing about the picture before RL
    assert warmup.asks_modality("syn-image_modality-abc") and not warmup.asks_modality("syn-image_body_region-abc")


def test_grpo_dataset_is_conversational_with_reward_columns(tmp_path):
    path = dataset_dir(tmp_path, n=8)
    rl = datasets.load_from_disk(str(path))["train"]
    cfg = params.load("03", "smoke", tmp_path / "03_train_grpo" / "smoke")
    ds = rows.grpo_dataset(rl, cfg, OutputContract(), n_batches=3, prompts_per_batch=2)
    assert len(ds) == 6 and {"prompt", "answer", "modality", "question"} <= set(ds.column_names)
    assert ds[0]["prompt"][0]["role"] == "system" and to_grpo(rl, OutputContract())[0]["prompt"][1]["role"] == "user"


def test_checkpoints_kept_on_disk_are_bounded(tmp_path):
    from medix_lib.training import run

    cfg = params.load("03", "cpu_long", tmp_path / "03_train_grpo" / "cpu_long")
    assert run.grpo_args(cfg, tmp_path, "cpu").save_total_limit == cfg.keep_checkpoints == 2
    assert run.grpo_args(params.build("03", {**cfg.to_dict(), "keep_checkpoints": 0}), tmp_path, "cpu") \
        .save_total_limit is None
    assert run.config_hash(params.build("03", {**cfg.to_dict(), "keep_checkpoints": 5})) == run.config_hash(cfg)

