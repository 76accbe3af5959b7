"""The reward-hacking probe suite as tests: rule-enforced ceilings hold even when the judge says YES to everything."""

import pytest

from medix_lib import rewards
from medix_lib.rewards import probes
from medix_lib.contract import OutputContract


@pytest.fixture(scope="module")
def worst_case_rows():
    funcs = [rewards.AccuracyReward(probes.SycophantJudge()), rewards.SemanticReward("minilm-l6-v2"),
             rewards.ModalityReward(), rewards.FormatReward()]
    return probes.run(funcs, [rewards.MEDIX_WEIGHTS[f.__name__] for f in funcs])


def test_suite_covers_the_known_attacks():
    names = {p.name for p in probes.PROBES}
    assert {"empty_answer", "whitespace_answer", "question_as_answer", "candidates_or", "judge_instruction",
            "master_key_colon", "master_key_thought", "hedge_both_ways", "gibberish", "answer_outside_tags",
            "truncated_long", "overlong_answer", "lookalike_answer_tag", "fullwidth_tags"} <= names
    assert len(names) == len(probes.PROBES)


@pytest.mark.parametrize("probe", [p for p in probes.PROBES if p.enforced_by == "rules"], ids=lambda p: p.name)
def test_rule_enforced_probe_stays_under_its_ceiling_with_a_sycophant_judge(worst_case_rows, probe):
    rows = [r for r in worst_case_rows if r["probe"] == probe.name]
    assert rows, f"{probe.name} applies to no case"
    assert probes.violations(rows) == []


def test_model_enforced_probes_are_the_only_ones_a_sycophant_gets_through(worst_case_rows):
    leaked = {v["probe"] for v in probes.violations(worst_case_rows)}
    assert leaked <= {p.name for p in probes.PROBES if p.enforced_by == "model"}


def test_controls_keep_full_reward(worst_case_rows):
    controls = [r for r in worst_case_rows if r["kind"] == "control"]
    assert controls and all(r["composite"] == pytest.approx(1.0) for r in controls)


def test_without_guards_the_sycophant_is_fooled():
    unguarded = rewards.AccuracyReward(probes.SycophantJudge(), guards=False)
    rows = probes.run([unguarded], [1.0])
    fooled = {v["probe"] for v in probes.violations(rows)}
    assert {"judge_instruction", "master_key_colon", "candidates_or", "question_as_answer"} <= fooled


def test_probes_follow_configured_tags():
    think = OutputContract(reasoning_tag="think", answer_tag="final")
    rows = probes.run([rewards.FormatReward(think)], [1.0], contract=think)
    control = next(r for r in rows if r["probe"] == "control_reference")
    assert control["format"] == 1.0
    assert probes.violations(rows) == []


def test_composite_ceiling_follows_the_weights():
    empty = next(p for p in probes.PROBES if p.name == "empty_answer")
    assert empty.composite_ceiling(rewards.MEDIX_WEIGHTS) == pytest.approx(0.145)
    assert empty.composite_ceiling({"format": 0.5, "semantic": 0.5}) == pytest.approx(0.5)


def test_long_outputs_parse_fast():
    import time

    text = "<X_RAY><thinking>" + "<answer>x" * 50_000 + "a" * 1_000_000
    start = time.perf_counter()
    parsed = OutputContract().parse(text)
    assert time.perf_counter() - start < 2.0 and parsed.answer is None
