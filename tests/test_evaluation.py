"""Evaluation: judge failures are counted, never scored as wrong; answer guards refuse before the judge is asked."""

import pytest

from medix_lib import evaluation, params
from medix_lib.judge import JudgeItem
from medix_lib.rewards import AccuracyReward
from tests.judge_doubles import http_judge


def test_accuracy_reward_and_evaluator_see_failures(stub):
    completions = [f"<OTHER><thinking>.</thinking><answer>{a}</answer>" for a in ["heart attack", "E500", "angina"]]
    completions.append("no answer block")
    judge = http_judge(stub.url, max_retries=0)
    assert AccuracyReward(judge)(completions, answer=["myocardial infarction"] * 4) == [1.0, None, 0.0, 0.0]
    assert AccuracyReward(judge, failure_value=0.0)(completions, answer=["myocardial infarction"] * 4)[1] == 0.0
    records = [v.to_dict() for v in judge([JudgeItem("myocardial infarction", p) for p in ["heart attack", "E500"]])]
    summary = evaluation.summarise(records, 200, 0)
    assert summary["judge_fail_rate"] == 0.5 and summary["accuracy"] == 1.0


@pytest.mark.parametrize("guards", [True, False])
def test_evaluator_applies_the_answer_guards_before_asking_the_judge(stub, guards):
    cfg = params.load("04", "smoke", overrides={"answer_guards": guards})
    ramble = "Heart attack is a medical condition. " * 8  # 48 words against a 2-word reference
    responses = ["<thinking>.</thinking><answer>heart attack</answer>", f"<answer>{ramble}</answer>",
                 "<answer>angina or heart attack</answer>"]
    rows = {"id": ["a", "b", "c"], "question": ["Diagnosis?"] * 3, "answer": ["myocardial infarction"] * 3}
    judge = http_judge(stub.url)
    records = evaluation.judge_answers(cfg, judge, rows, responses)
    if guards:
        assert [r["rule"] for r in records] == [None, "overlong", "candidate_list"]
        assert [r["label"] for r in records] == [True, False, False] and judge.last_stats.model_calls == 1
        assert evaluation.summarise(records, 200, 0)["refused_by_guard"] == 2
    else:  # the stub says YES to anything mentioning "heart attack": what a lenient judge would do
        assert [r["label"] for r in records] == [True, True, True] and judge.last_stats.model_calls == 3
