"""Notebook 04's generation and judging through medix_lib.evaluation with the gpu24 preset's params at tiny size: the
base policy and notebook 03's adapter answer image and text tasks, a tiny Qwen3 judge grades them through the
transformers backend, and every judge prompt is rendered with thinking off (the gpu profile's Qwen3 judges would
otherwise be read where they open a reasoning block)."""

import pytest

from medix_lib import evaluation, params
from medix_lib.judge import local

from tests.gpu_env.tiny import EMPTY_THINK


@pytest.fixture(scope="module")
def evaluated(tiny, processor_patch, outputs, trained):
    cfg = params.load("04", "gpu24", outputs / "04_evaluate_with_judge" / "gpu24",
                      {"tasks": ["synthetic_text", "synthetic_image"], "max_eval_rows": 4, "max_new_tokens": 8,
                       "batch_size": 4, "n_bootstrap": 200, "policy_model": str(tiny.vlm),
                       "judge_model": str(tiny.judge)})
    rendered = []
    encode = local.encode_prompt

    def spy(tokenizer, messages):
        prefix, tail = encode(tokenizer, messages)
        rendered.append(tokenizer.decode(prefix + tail))
        return prefix, tail

    store = evaluation.ResultsStore(outputs / "04_evaluate_with_judge" / "gpu24" / "results.sqlite")
    judges = cfg.judges()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(local, "encode_prompt", spy)
        runs = {c.name: evaluation.evaluate(c, cfg.task_rows(), judges, store, cfg.protocol(),
                                            rounds=cfg.judge_rounds, progress=False) for c in cfg.candidate_list()}
    result = evaluation.report(store, list(cfg.candidates), cfg.tasks, evaluation.judge_key(judges[0]),
                               judges[0].prompt_hash, cfg.n_bootstrap, cfg.seed, [tuple(p) for p in cfg.compare])
    return cfg, runs, result, rendered


def test_every_candidate_answers_and_is_judged_on_image_and_text_tasks(evaluated):
    cfg, runs, result, _ = evaluated
    assert set(runs) == {"base", "grpo"}  # grpo: the adapter notebook 03 wrote, merged into the policy
    for task in cfg.tasks:
        # answers reached the judge model, not only its rules (a candidate repeating another's answers hits the cache)
        assert sum(runs[name][task]["judge_model_calls"] for name in runs) > 0
        for name in runs:
            run = runs[name][task]
            assert 0 < run["rows"] == run["generated"] <= cfg.max_eval_rows
            summary = result["tasks"][task][name]
            assert summary["n"] == run["rows"] and summary["judge_failures"] == 0
            assert 0.0 <= summary["accuracy"] <= 1.0


def test_judge_prompts_are_rendered_with_thinking_off(evaluated):
    *_, rendered = evaluated
    assert rendered and all(text.endswith(EMPTY_THINK) for text in rendered)
