"""The closing "What this run showed" sentences are written from the run's metrics, never typed by hand."""

import copy
import json

import pytest

from medix_lib import config, findings


def committed(stage: str, profile: str = "cpu_long") -> dict:
    return json.loads((config.OUTPUTS_DIR / config.stage_name(stage) / profile / "metrics.json").read_text())


@pytest.mark.parametrize("stage", ["01", "02", "03", "04"])
def test_every_stage_speaks_from_its_committed_metrics(stage):
    text = " ".join(findings.sentences(stage, committed(stage)))
    assert "What it cannot show" in text


def test_a_changed_metric_changes_the_sentence():
    metrics = committed("03")
    moved = copy.deepcopy(metrics)
    moved["learning_effect"]["all"].update(diff=-0.2, ci_low=-0.3, ci_high=-0.1)
    before, after = findings.sentences("03", metrics), findings.sentences("03", moved)
    assert before != after
    assert any("-0.200 [-0.300, -0.100]" in s and "fell beyond its noise" in s for s in after)
    spans_zero = copy.deepcopy(metrics)
    spans_zero["learning_effect"]["all"].update(ci_low=-0.01)
    assert any("mechanics, not an effect" in s for s in findings.sentences("03", spans_zero))
    assert not any("mechanics, not an effect" in s for s in after)


def test_comparisons_are_judged_by_their_interval():
    metrics = committed("04")
    pair = next(iter(metrics["comparisons"]))
    task = next(iter(metrics["comparisons"][pair]))
    metrics["comparisons"][pair][task] = {"n": 10, "diff": 0.3, "ci_low": 0.1, "ci_high": 0.5}
    said = findings.sentences("04", metrics)
    assert f"{pair} on {task}: +0.30 [+0.10, +0.50] (n=10), better beyond its noise." in said
    metrics["comparisons"][pair][task].update(ci_low=-0.1)
    assert f"{pair} on {task}: +0.30 [-0.10, +0.50] (n=10), stayed within its noise (the interval spans 0)." in \
        findings.sentences("04", metrics)


def test_a_probe_over_its_ceiling_is_named_by_what_holds_it():
    metrics = committed("02")
    metrics["probe_violations"] = [{"probe": "gibberish", "enforced_by": "model"},
                                   {"probe": "judge_instruction", "enforced_by": "rules"}]
    said = findings.sentences("02", metrics)
    assert any("held by the rules, so a defect of the rules: judge_instruction." in s for s in said)


def test_picture_reliance_is_judged_by_its_interval():
    metrics = {k: v for k, v in committed("04").items() if k != "picture_reliance"}
    assert not any("blank control" in s for s in findings.sentences("04", metrics))  # a run without the control
    metrics["picture_reliance"] = {"blank": {"tasks": {}, "pooled": {
        "base": {"n": 45, "with": 0.47, "without": 0.44, "diff": 0.03, "ci_low": -0.05, "ci_high": 0.11},
        "grpo": {"n": 45, "with": 0.69, "without": 0.47, "diff": 0.22, "ci_low": 0.07, "ci_high": 0.38}}}}
    said = " ".join(findings.sentences("04", metrics))
    assert ("(blank control), judge accuracy with vs without the picture and the paired difference: base 0.47 vs "
            "0.44, +0.03 [-0.05, +0.11] (n=45): not measurably different without the picture (the interval spans 0); "
            "grpo 0.69 vs 0.47, +0.22 [+0.07, +0.38] (n=45): the picture measurably helps.") in said
