"""Bad input fails before any model loads, with one clear message naming the thing and the valid choices."""

import subprocess
import sys

import pytest

from medix_lib import config, models, params, pipeline


def test_unknown_key_in_params_file_names_it(tmp_path, monkeypatch):
    stage_dir = tmp_path / "03_train_grpo"
    stage_dir.mkdir()
    (stage_dir / "typo.yaml").write_text("max_stepz: 3\n")
    monkeypatch.setattr(config, "PARAMS_DIR", tmp_path)
    with pytest.raises(config.ParamsError, match=r"unknown parameter 'max_stepz'.*valid: .*max_steps"):
        params.load("03", "typo")


def test_unknown_key_in_overrides_names_it():
    with pytest.raises(config.ParamsError, match=r"--set: unknown parameter 'learning_rat'"):
        params.load("03", "smoke", overrides={"learning_rat": 1e-5})


def test_missing_params_file_lists_variants():
    with pytest.raises(config.ParamsError, match=r"no params file .*variants of 03_train_grpo: .*smoke"):
        params.load("03", "nonexistent")


def test_unknown_stage_lists_stages():
    with pytest.raises(config.ParamsError, match=r"unknown stage '07'.*01_synthesize_data"):
        config.stage_name("07")


def test_wrong_type_names_key():
    with pytest.raises(config.ParamsError, match=r"parameter 'max_steps' must be int"):
        params.load("03", "smoke", overrides={"max_steps": "many"})


def test_warmup_batch_size_is_checked():
    with pytest.raises(config.ParamsError, match=r"parameter 'warmup_batch_size' must be >= 1, got 0"):
        params.load("03", "smoke", overrides={"warmup_batch_size": 0})


def test_literal_choice_lists_valid_values():
    with pytest.raises(config.ParamsError, match=r"loss_type.*valid values: 'grpo'"):
        params.load("03", "smoke", overrides={"loss_type": "ppo"})


def test_group_divisibility_is_checked():
    with pytest.raises(config.ParamsError, match="divisible by num_generations"):
        params.load("03", "smoke", overrides={"per_device_train_batch_size": 6, "num_generations": 4})


def test_unresolvable_model_alias_lists_aliases():
    with pytest.raises(models.ModelError, match=r"'smollm-7b'.*offline causal_lm aliases: smollm2-135m-instruct"):
        params.load("04", "smoke", overrides={"judge_model": "smollm-7b"})
    # a server's model is whatever the server names it (vLLM's --served-model-name): not resolved here
    served = params.load("04", "smoke", overrides={"judge_backend": "openai", "judge_model": "qwen3"})
    assert served.judge_model == "qwen3"
    with pytest.raises(config.ParamsError, match=r"'judge_backend': unknown 'vllm'; valid: transformers, openai"):
        params.load("04", "smoke", overrides={"judge_backend": "vllm"})


def test_unknown_reward_lists_registry():
    with pytest.raises(config.ParamsError, match=r"unknown reward 'bleu'; valid: accuracy, semantic"):
        params.load("02", "smoke", overrides={"rewards": ["bleu"]})


def test_overrides_parse_yaml_values():
    assert pipeline.parse_overrides(["04.judge_show_question=true"]) == {
        "04_evaluate_with_judge": {"judge_show_question": True}}
    with pytest.raises(config.ParamsError, match="expected STAGE.KEY=VALUE"):
        pipeline.parse_overrides(["max_steps=2"])


def test_variants_need_one_stage():
    with pytest.raises(config.ParamsError, match="--variants needs exactly one stage"):
        pipeline.plan("smoke", None, ["smoke"])


def test_cli_reports_bad_profile_before_running(tmp_path):
    done = subprocess.run([sys.executable, "-m", "medix_lib", "run", "--profile", "laptop", "--output-root",
                           str(tmp_path)], capture_output=True, text=True, cwd=config.REPO_ROOT, timeout=120)
    assert done.returncode == 2
    assert "no params file params/01_synthesize_data/laptop.yaml" in done.stderr
    assert "smoke" in done.stderr
    assert not any(tmp_path.iterdir()), "nothing may run when params are invalid"


def test_judge_threshold_is_auto_or_a_probability():
    assert params.load("04", "smoke").judge_threshold == "auto"
    with pytest.raises(config.ParamsError, match="judge_threshold"):
        params.load("04", "smoke", overrides={"judge_threshold": 1.5})
    with pytest.raises(config.ParamsError, match="judge_threshold"):
        params.load("04", "smoke", overrides={"judge_threshold": "sometimes"})


def test_one_default_wherever_a_user_enters():
    """The judge a notebook, the CLI and the library use when nobody says otherwise is the same one."""
    from medix_lib import cli, judge

    for stage in ("02", "03", "04"):
        assert params.load(stage, "smoke").judge().model == judge.Judge().model == judge.DEFAULT_MODEL
    args = cli.build_parser().parse_args(["judge", "--input", "a.jsonl", "--output", "b.jsonl"])
    assert args.model is None and args.threshold is None  # the CLI leaves them to the Judge's defaults
