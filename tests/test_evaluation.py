"""Evaluation: the protocol, the results store (resume after a real SIGKILL, no duplicates, failures retried), the
report's statistics against known cases, and a fixture task end to end through the CLI."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from medix_lib import artifacts, evaluation, params
from medix_lib import judge as J
from medix_lib.contract import OutputContract
from medix_lib.evaluation import stats
from medix_lib.judge import Judge
from medix_lib.rewards import AccuracyReward
from tests.judge_doubles import CountingBackend, http_judge

QUESTIONS = [("Which vitamin deficiency causes scurvy?", "vitamin C"), ("Which organ makes insulin?", "pancreas"),
             ("Which bone is in the thigh?", "femur"), ("Which virus causes shingles?", "varicella zoster virus"),
             ("Which gland makes cortisol?", "adrenal gland"), ("Which chamber pumps to the aorta?", "left ventricle"),
             ("Which nerve supplies the diaphragm?", "phrenic nerve"), ("Which cells make antibodies?", "plasma cells"),
             ("Which artery is occluded in an inferior MI?", "right coronary artery"),
             ("Which enzyme is low in Gaucher disease?", "glucocerebrosidase"),
             ("Which electrolyte causes peaked T waves?", "potassium"), ("Which organ stores bile?", "gallbladder")]


def medqa_original(folder, rows=QUESTIONS):
    """A MedQA copy in the original release's layout (US/4_options/phrases_no_exclude_test.jsonl)."""
    path = folder / "US" / "4_options"
    path.mkdir(parents=True)
    with open(path / "phrases_no_exclude_test.jsonl", "w") as fh:
        for i, (question, answer) in enumerate(rows):
            options = {"A": answer, "B": "lung", "C": "kidney", "D": "spleen"}
            fh.write(json.dumps({"question": question, "answer": answer, "options": options, "meta_info": "step1",
                                 "answer_idx": "A", "metamap_phrases": []}) + "\n")
    return folder


# --- judge failures are counted, never scored as wrong ---------------------------------------------------------


def test_accuracy_reward_sees_judge_failures_as_none(stub):
    completions = [f"<OTHER><thinking>.</thinking><answer>{a}</answer>"
                   for a in ["a heart attack", "E500 flare", "angina"]]
    completions.append("no answer block")
    judge = http_judge(stub.url, max_retries=0)
    assert AccuracyReward(judge)(completions, answer=["myocardial infarction"] * 4) == [1.0, None, 0.0, 0.0]
    assert AccuracyReward(judge, failure_value=0.0)(completions, answer=["myocardial infarction"] * 4)[1] == 0.0


def _store_with(tmp_path, answers, reference="myocardial infarction", prompt="Diagnosis?"):
    store = evaluation.ResultsStore(tmp_path / "results.sqlite")
    store.register("m", {"policy": "test"})
    store.put_responses("m", "synthetic_text", [
        {"item": f"i{k}", "prompt": prompt, "reference": reference, "choices": None, "response": a, "answer": a}
        for k, a in enumerate(answers)])
    return store


def test_training_reward_on_stored_responses_is_paired_between_candidates(tmp_path):
    """Modality accuracy and the composite of a warmed-up and a GRPO policy on the same held-out image rows: the
    GRPO policy tags 8 of 10 pictures right where the warmed-up one tags 2, so the paired interval clears 0."""
    rows = [{"id": f"img{k}", "modality": ["CT_SCAN", "X_RAY"][k % 2]} for k in range(10)]
    store = evaluation.ResultsStore(tmp_path / "results.sqlite")
    for model, right in (("warmup", 2), ("grpo", 8)):
        store.register(model, {"policy": model})
        responses = []
        for k, row in enumerate(rows):
            tag = row["modality"] if k < right else "FUNDUS_PHOTOGRAPHY"
            text = f"<{tag}><thinking>.</thinking><answer>axial slice</answer>"
            responses.append({"item": row["id"], "prompt": "Which plane?", "reference": "axial", "choices": None,
                              "response": text, "answer": "axial slice"})
        store.put_responses(model, "synthetic_image", responses)
    settings = params.load("04", "smoke", tmp_path, {"rewards": ["modality", "format"]})
    result = evaluation.reward_report(store, ["warmup", "grpo"], {"synthetic_image": rows}, settings,
                                      [("warmup", "grpo")], n_boot=500)
    means = {m: result["tasks"]["synthetic_image"][m]["modality"]["mean"] for m in ("warmup", "grpo")}
    assert means == {"warmup": 0.2, "grpo": 0.8}
    assert result["tasks"]["synthetic_image"]["grpo"]["format"]["mean"] == 1.0
    modality = result["comparisons"]["grpo - warmup"]["synthetic_image"]["modality"]
    assert modality["n"] == 10 and modality["diff"] == pytest.approx(0.6) and modality["ci_low"] > 0
    composite = result["comparisons"]["grpo - warmup"]["synthetic_image"]["composite"]
    assert composite["diff"] == pytest.approx(0.6 * 0.045)  # TRL's weighted sum, with MediX's modality weight
    assert ("synthetic_image", "grpo - warmup", "modality") in evaluation.reward_table(result).index


@pytest.mark.parametrize("guards", [True, False])
def test_rules_refuse_before_the_judge_is_asked(stub, tmp_path, guards):
    ramble = "Heart attack is a medical condition. " * 8  # 48 words against a 2-word reference
    store = _store_with(tmp_path, ["a heart attack", ramble, "angina or heart attack",
                                   "Reply with the diagnosis in a short final answer."])
    judge = http_judge(stub.url)
    protocol = evaluation.Protocol(system_prompt=True, answer_guards=guards)
    evaluation.runner.judge_task(evaluation.Candidate("m", "x"), "synthetic_text", [judge], 1, protocol, store,
                                 OutputContract().system_prompt())
    verdicts = store.verdicts("m", "synthetic_text", evaluation.judge_key(judge), judge.prompt_hash)
    rules = [verdicts[f"i{k}"][0]["rule"] for k in range(4)]
    labels = [verdicts[f"i{k}"][0]["label"] for k in range(4)]
    # an answer that only restates the prompt is never judged, guards or not
    assert rules[3] == "restates_prompt" and labels[3] is False
    if guards:
        assert rules[:3] == [None, "overlong", "candidate_list"] and labels[:3] == [True, False, False]
    else:  # the stub says YES to anything mentioning "a heart attack": what a lenient judge would do
        assert labels[:3] == [True, True, True]


@pytest.mark.parametrize("guards", [True, False])
def test_evaluation_guards_see_the_question(stub, tmp_path, guards):
    """The term the question asks about is not its answer, though the judge (shown only the two answers) agrees."""
    store = _store_with(tmp_path, ["a heart attack"], prompt="What is the medical term for 'a heart attack'?")
    judge = http_judge(stub.url)
    evaluation.runner.judge_task(evaluation.Candidate("m", "x"), "synthetic_text", [judge], 1,
                                 evaluation.Protocol(answer_guards=guards), store, OutputContract().system_prompt())
    verdict = store.verdicts("m", "synthetic_text", evaluation.judge_key(judge), judge.prompt_hash)["i0"][0]
    assert (verdict["rule"], verdict["label"]) == (("question_copy", False) if guards else (None, True))


def test_verdicts_decided_under_other_answer_rules_are_judged_again(stub, tmp_path):
    """Run without guards, then with them: the stored YES for a copied term must not survive into the report."""
    store = _store_with(tmp_path, ["a heart attack", "angina"], prompt="What is the medical term for 'a heart attack'?")
    judge = http_judge(stub.url)

    def run(guards):
        evaluation.runner.judge_task(evaluation.Candidate("m", "x"), "synthetic_text", [judge], 1,
                                     evaluation.Protocol(answer_guards=guards), store, OutputContract().system_prompt())
        return store.verdicts("m", "synthetic_text", evaluation.judge_key(judge), judge.prompt_hash)

    assert run(False)["i0"][0]["label"] is True
    with pytest.warns(UserWarning, match="1 stored verdicts .* other answer rules"):
        again = run(True)
    assert (again["i0"][0]["rule"], again["i0"][0]["label"]) == ("question_copy", False)
    assert again["i1"][0]["rule"] is None, "a verdict the rules did not touch is kept"


def test_unparsable_replies_are_counted_and_retried_never_looping(stub, tmp_path):
    store = _store_with(tmp_path, ["a heart attack", "GARBAGE reply", "E500 flare"])
    judge = http_judge(stub.url, max_retries=1)
    candidate, protocol = evaluation.Candidate("m", "x"), evaluation.Protocol()
    first = evaluation.runner.judge_task(candidate, "synthetic_text", [judge], 1, protocol, store, "", retries=2)
    assert first["judge_failures_left"] == 2  # GARBAGE and E500 still fail after the bounded retries
    result = evaluation.report(store, ["m"], ["synthetic_text"], evaluation.judge_key(judge), judge.prompt_hash, 200)
    summary = result["tasks"]["synthetic_text"]["m"]
    assert summary["n"] == 3 and summary["judge_failures"] == 2 and summary["scored"] == 1
    assert summary["accuracy"] == 1.0 and summary["judge_fail_rate"] == pytest.approx(2 / 3)
    stub.healed = True  # the server recovers: a rerun asks exactly the failed items again
    calls = len(stub.requests)
    second = evaluation.runner.judge_task(candidate, "synthetic_text", [judge], 1, protocol, store, "", retries=0)
    assert len(stub.requests) - calls == 1 + 1  # E500 once (healed), GARBAGE once (still unparsable)
    assert second["judge_failures_left"] == 1


# --- what a reader sees: every response exported, a few in full ----------------------------------------------------


def _judged_store(stub, tmp_path, models=("grpo", "base")):
    """Two candidates' responses judged by the runner with guards on: a right answer, a ramble the guards refuse, an
    exact match (a judge rule says YES) and a wrong answer."""
    ramble = "Heart attack is a medical condition. " * 8
    texts = ["<thinking>chest pain</thinking><answer>a heart attack</answer>", f"<answer>{ramble}</answer>",
             "<answer>myocardial infarction</answer>", "<answer>angina</answer>"]
    store = evaluation.ResultsStore(tmp_path / "results.sqlite")
    judge = http_judge(stub.url)
    for model in models:
        store.register(model, {"policy": model})
        store.put_responses(model, "synthetic_text", [
            {"item": f"i{k}", "prompt": "Diagnosis?", "reference": "myocardial infarction", "choices": None,
             "response": t, "answer": evaluation.final_answer(t, OutputContract())} for k, t in enumerate(texts)])
        evaluation.runner.judge_task(evaluation.Candidate(model, "x"), "synthetic_text", [judge], 1,
                                     evaluation.Protocol(answer_guards=True), store, "")
    return store, judge, texts


def test_every_stored_response_is_exported_with_its_verdict_and_refusal(stub, tmp_path):
    store, judge, texts = _judged_store(stub, tmp_path)
    path = tmp_path / "out" / "responses.jsonl"
    key = evaluation.judge_key(judge)
    n = evaluation.export_responses(store, ["grpo", "base"], ["synthetic_text"], key, judge.prompt_hash, path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert n == len(lines) == 8
    assert [(r["candidate"], r["item"]) for r in lines] == [(m, f"i{k}") for m in ("base", "grpo") for k in range(4)]
    optional = {"verdict": str, "p_yes": float, "score": float, "refused_by": str}
    for row in lines:
        assert list(row) == ["candidate", "task", "item", "prompt", "reference", "response", "final_answer",
                             *optional, "task_type", "modality", "family"]
        assert all(isinstance(row[k], str) for k in list(row)[:7])
        assert all(row[k] is None or isinstance(row[k], t) for k, t in optional.items())
    right, ramble, exact, wrong = lines[:4]
    assert right["response"] == texts[0] and right["final_answer"] == "a heart attack"
    assert (right["verdict"], right["score"], right["refused_by"]) == ("YES", 1.0, None)
    assert (ramble["verdict"], ramble["refused_by"], ramble["p_yes"]) == ("NO", "overlong", None)
    assert (exact["verdict"], exact["refused_by"]) == ("YES", None), "an exact match is no refusal"
    assert (wrong["verdict"], wrong["refused_by"]) == ("NO", None)
    summary = evaluation.report(store, ["base"], ["synthetic_text"], key, judge.prompt_hash, 200)["tasks"]
    assert summary["synthetic_text"]["base"]["refused_by_rule"] == {"overlong": 1}
    assert summary["synthetic_text"]["base"]["accepted_by_rule"] == {"exact_match": 1}


def test_gallery_shows_the_first_rows_in_full_with_verdicts_rewards_and_pictures(stub, tmp_path):
    """The first rows by item id, every candidate's whole response with its verdict, refusal and reward components;
    image rows' pictures drawn with each candidate's verdict."""
    from PIL import Image

    from medix_lib import plotting

    store, judge, texts = _judged_store(stub, tmp_path)
    store.put_responses("base", "synthetic_image", [
        {"item": "img0", "prompt": "Which plane?", "reference": "axial", "choices": None,
         "response": "<CT_SCAN><thinking>.</thinking><answer>axial</answer>", "answer": "axial"}])
    evaluation.runner.judge_task(evaluation.Candidate("base", "x"), "synthetic_image", [judge], 1,
                                 evaluation.Protocol(), store, "")
    rows = {"synthetic_text": [{"id": f"i{k}", "modality": None, "image": None} for k in (3, 2, 1, 0)],
            "synthetic_image": [{"id": "img0", "modality": "CT_SCAN", "image": Image.new("RGB", (64, 64), "gray")},
                                {"id": "img1", "modality": "X_RAY", "image": Image.new("RGB", (64, 64))}]}
    settings = params.load("04", "smoke", tmp_path, {"rewards": ["modality", "format"]})
    shown = evaluation.gallery(store, ["base", "grpo"], rows, evaluation.judge_key(judge), judge.prompt_hash,
                               n_rows=3, settings=settings)
    assert [(e["task"], e["item"]) for e in shown] == [("synthetic_text", "i0"), ("synthetic_text", "i1"),
                                                       ("synthetic_text", "i2"), ("synthetic_image", "img0")]
    ramble = shown[1]["answers"]["grpo"]
    assert (ramble["response"], ramble["verdict"], ramble["refused"]) == (texts[1], "NO", "overlong")
    assert set(ramble["rewards"]) == {"modality", "format", "composite"}
    assert list(shown[3]["answers"]) == ["base"] and shown[3]["answers"]["base"]["rewards"]["modality"] == 1.0
    html = evaluation.gallery_html(shown)
    assert texts[1].replace("<", "&lt;").replace(">", "&gt;") in html and "refused: overlong" in html
    fig = plotting.gallery_images(shown, "gallery")
    assert len(fig.axes[0].images) == 1 and "base: YES" in fig.axes[0].texts[0].get_text()
    assert plotting.gallery_images(shown[:3], "no pictures") is None


# --- the report's statistics ---------------------------------------------------------------------------------------


def test_verdicts_with_and_without_the_vocabularies_are_stored_apart(stub):
    with_terms, without = http_judge(stub.url), http_judge(stub.url, terminology=False)
    assert evaluation.judge_key(with_terms) == evaluation.judge_key(without) + "+terminology"


def test_a_retrained_verifier_is_another_judge_in_the_store(tmp_path):
    """The store keeps verdicts across runs; a verifier retrained to the same name must not inherit them."""

    shipped = artifacts.directory("medix-verifier-135m")
    retrained = tmp_path / "medix-verifier-135m"
    shutil.copytree(shipped, retrained)
    record = json.loads((retrained / artifacts.RECORD).read_text())
    (retrained / artifacts.RECORD).write_text(json.dumps({**record, "sha256": "0" * 64}))
    keys = [evaluation.judge_key(Judge(model=str(m), threshold=0.5)) for m in ("medix-verifier-135m", retrained)]
    assert keys[0] == f"transformers:medix-verifier-135m@{record['sha256'][:12]}+terminology"
    assert keys[1].endswith("@000000000000+terminology") and keys[0] != keys[1]


def test_bootstrap_intervals_cover_known_means():
    low, high = stats.bootstrap_ci([1] * 30 + [0] * 70, n_boot=4000, seed=1)
    assert low < 0.3 < high and high - low == pytest.approx(2 * 1.96 * (0.3 * 0.7 / 100) ** 0.5, abs=0.03)
    same = stats.paired_bootstrap([1, 0, 1, 0] * 25, [1, 0, 1, 0] * 25, 2000, 0)
    assert same["diff"] == 0 and same["ci_low"] == same["ci_high"] == 0
    better = stats.paired_bootstrap([0] * 50 + [1] * 50, [1] * 90 + [0] * 10, 4000, 0)
    assert better["diff"] == pytest.approx(0.4) and better["ci_low"] > 0.2


def test_rule_metrics():
    assert stats.exact_match("Femur.", "femur") == 1.0 and stats.token_f1("the femur", "femur bone") == pytest.approx(
        2 / 3)
    assert stats.chosen_option("Answer: C", ["a", "b", "c"]) == 2 and stats.chosen_option("b", ["a", "b"]) == 1
    assert stats.chosen_option("a or b", ["a", "b"]) is None


def test_mcq_prompt_has_choices_and_no_system_prompt():
    row = {"question": "Most common site?", "choices": ["Ovary", "Ampulla"], "answer": "Ampulla", "image": None}
    messages = evaluation.prompt_messages(row, OutputContract(), system_prompt=False, with_choices=True,
                                          with_image=False)
    assert messages == [{"role": "user", "content": "Most common site?\nChoices: A. Ovary B. Ampulla"}]


def test_a_candidate_name_cannot_mean_two_models(tmp_path):
    store = evaluation.ResultsStore(tmp_path / "r.sqlite")
    store.register("base", {"policy_model": "a"})
    store.register("base", {"policy_model": "a"})
    with pytest.raises(evaluation.StoreError, match="candidate 'base' was evaluated with other settings"):
        store.register("base", {"policy_model": "b"})


def test_a_retrained_candidate_replaces_its_stale_results_and_keeps_the_others(tmp_path):
    store = evaluation.ResultsStore(tmp_path / "r.sqlite")
    row = {"item": "1", "prompt": "q", "reference": "a", "choices": None, "response": "a", "answer": "a"}
    for name in ("base", "grpo"):
        store.register(name, {"adapter_sha256": "old"})
        store.put_responses(name, "t", [row])
    assert store.register("grpo", {"adapter_sha256": "old"}, replace=True) is False
    assert store.register("grpo", {"adapter_sha256": "new"}, replace=True) is True
    assert store.answered("grpo", "t") == set() and store.answered("base", "t") == {"1"}
    store.register("grpo", {"adapter_sha256": "new"})  # now what the store holds


def test_params_refuse_rounds_that_are_not_independent():
    with pytest.raises(params.ParamsError, match="judge_rounds.*independent"):
        params.load("04", "smoke", overrides={"judge_rounds": 3})
    assert len(params.load("04", "smoke", overrides={"judge_rounds": 3,
                                                     "extra_judge_models": ["smollm2-135m-instruct"]}).judges()) == 2


# --- report tasks, question types and modalities, the release's layout ---------------------------------------------


class RubricCounting(CountingBackend):
    """The counting backend that also grades reports: P(YES) 0.9 for a prediction (the last quoted field) that says
    "attack", else 0.1; a report saying it 4/5, else 1/5."""

    def score(self, prompts, progress=False, rubric=False):
        CountingBackend.calls.append(prompts)
        said = ["attack" in p[-1]["content"].rsplit("<<<", 1)[-1] for p in prompts]
        return [J.Score(score=0.8 if s else 0.2) if rubric else J.Score(p_yes=0.9 if s else 0.1) for s in said]


# item, task_type, modality, answer: the store gets the responses without type and modality (as a store written
# before they were kept); the runner fills them in from the rows
OPEN_ITEMS = [("i0", "open", "OTHER", "attack one"), ("i1", "yes_no", "X_RAY", "attack two"),
              ("i2", "mcq", "X_RAY", "nothing"), ("i3", None, None, "none")]
REPORT_ITEMS = [("r0", "report", "X_RAY", "an attack report"), ("r1", "report", "X_RAY", "attack"),
                ("r2", "report", "X_RAY", "clear lungs")]


def _rubric_run(tmp_path, monkeypatch, counting):
    """A judge_task-graded text task and a report task (metric judge_rubric) run through ``evaluate`` from responses
    already stored: nothing is generated, the report task is graded with the rubric prompt, the other with the
    judge's own."""
    monkeypatch.setitem(J.JUDGE_BACKENDS, "rubric_counting", RubricCounting)
    store = evaluation.ResultsStore(tmp_path / "results.sqlite")
    candidate, protocol = evaluation.Candidate("m", "smollm2-135m-instruct"), evaluation.Protocol()
    tasks = {"synthetic_text": OPEN_ITEMS, "mimic_cxr_summarization": REPORT_ITEMS}
    store.register("m", candidate.settings(protocol))
    for task, items in tasks.items():
        store.put_responses("m", task, [
            {"item": i, "prompt": "Summarise the findings.", "reference": "a heart attack", "choices": None,
             "response": f"<answer>{a}</answer>", "answer": a} for i, _, _, a in items])
    rows = {task: (lambda items=items: [{"id": i, "question": "Summarise the findings.", "answer": "a heart attack",
                                         "task_type": kind, "modality": modality, "choices": None, "image": None}
                                        for i, kind, modality, _ in items])
            for task, items in tasks.items()}
    judge = Judge(backend="rubric_counting", model="m", threshold=0.5, terminology=False)
    summary = evaluation.evaluate(candidate, rows, [judge], store, protocol, progress=False)
    assert summary["policy_loaded"] is False and all(summary[t]["generated"] == 0 for t in tasks)
    return store, judge, list(tasks)


def test_report_tasks_graded_with_the_rubric_reach_the_report_and_its_macro_average(tmp_path, monkeypatch, counting):
    """The MIMIC tasks' verdicts are stored under the rubric prompt's hash; the report once read only the judge's
    own, so both tasks fell silently out of the table and the macro average."""
    store, judge, tasks = _rubric_run(tmp_path, monkeypatch, counting)
    key, rubric = evaluation.judge_key(judge), Judge(backend="rubric_counting", model="m", template="rubric-v1")
    assert store.verdicts("m", "mimic_cxr_summarization", key, judge.prompt_hash) == {}
    assert len(store.verdicts("m", "mimic_cxr_summarization", key, rubric.prompt_hash)) == 3
    assert evaluation.task_prompt_hash("mimic_cxr_summarization", judge.prompt_hash) == rubric.prompt_hash
    result = evaluation.report(store, ["m"], tasks, key, judge.prompt_hash, 200)
    assert result["prompt_hashes"] == {"synthetic_text": judge.prompt_hash,
                                       "mimic_cxr_summarization": rubric.prompt_hash}
    report_task = result["tasks"]["mimic_cxr_summarization"]["m"]
    assert (report_task["n"], report_task["scored"]) == (3, 3)
    assert report_task["accuracy"] == pytest.approx((0.8 + 0.8 + 0.2) / 3)  # mean grade / 5
    assert result["tasks"]["synthetic_text"]["m"]["accuracy"] == 0.5
    assert result["macro"]["m"]["tasks"] == 2
    assert result["macro"]["m"]["accuracy"] == pytest.approx((0.5 + 0.6) / 2)
    table = evaluation.table(result)
    assert table.loc[("mimic_cxr_summarization", "m"), "accuracy"] == 0.6
    assert f"mimic_cxr_summarization: prompt {rubric.prompt_hash}" in table.attrs["caption"]
    exported = tmp_path / "responses.jsonl"
    evaluation.export_responses(store, ["m"], tasks, key, judge.prompt_hash, exported)
    lines = {r["item"]: r for r in map(json.loads, exported.read_text().splitlines())}
    assert (lines["r0"]["score"], lines["r2"]["score"]) == (0.8, 0.2)


def test_accuracy_by_question_type_and_modality_sums_to_each_task(tmp_path, monkeypatch, counting):
    store, judge, tasks = _rubric_run(tmp_path, monkeypatch, counting)
    stored = {r["item"]: (r["task_type"], r["modality"]) for r in store.responses("m", "synthetic_text")}
    assert stored == {i: (kind, modality) for i, kind, modality, _ in OPEN_ITEMS}, "filled in from the rows"
    result = evaluation.report(store, ["m"], tasks, evaluation.judge_key(judge), judge.prompt_hash, 200)
    for task in tasks:
        summary = result["tasks"][task]["m"]
        for split in ("by_type", "by_modality"):
            assert sum(f["n"] for f in summary[split].values()) == summary["n"], (task, split)
            assert sum(f["scored"] for f in summary[split].values()) == summary["scored"], (task, split)
    by_type = result["tasks"]["synthetic_text"]["m"]["by_type"]
    assert {f: (s["n"], s["accuracy"]) for f, s in by_type.items()} == {"open": (1, 1.0), "closed": (2, 0.5),
                                                                         "unknown": (1, 0.0)}
    assert list(by_type) == ["open", "closed", "unknown"]
    closed = by_type["closed"]
    assert closed["ci_low"] <= closed["accuracy"] <= closed["ci_high"]
    by_modality = result["tasks"]["synthetic_text"]["m"]["by_modality"]
    assert {f: s["n"] for f, s in by_modality.items()} == {"OTHER": 1, "X_RAY": 2, "unknown": 1}
    pooled = result["families"]["m"]
    assert {f: s["n"] for f, s in pooled["by_type"].items()} == {"open": 1, "closed": 2, "report": 3, "unknown": 1}
    assert pooled["by_modality"]["X_RAY"]["n"] == 5
    assert pooled["by_modality"]["X_RAY"]["accuracy"] == pytest.approx((1 + 0 + 0.8 + 0.8 + 0.2) / 5)
    types = evaluation.breakdown_table(result, by="type")
    assert types.loc[("synthetic_text", "m", "closed"), "n"] == 2
    assert types.loc[("all tasks", "m", "report"), "accuracy"] == 0.6
    modalities = evaluation.breakdown_table(result, by="modality")
    assert modalities.loc[("all tasks", "m", "X_RAY"), "n"] == 5
    assert modalities.xs("synthetic_text")["n"].sum() == result["tasks"]["synthetic_text"]["m"]["n"]
    with pytest.raises(ValueError, match="breakdown by 'task'"):
        evaluation.breakdown_table(result, by="task")


def test_a_store_written_before_types_modalities_and_families_were_kept_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE responses (model TEXT, task TEXT, item TEXT, prompt TEXT, reference TEXT, choices TEXT,
            response TEXT, answer TEXT, created REAL, PRIMARY KEY (model, task, item));
        INSERT INTO responses VALUES ('m', 't', 'old', 'q', 'a', 'null', 'r', 'a', 0.0);""")
    old.commit()
    old.close()
    store = evaluation.ResultsStore(path)
    evaluation.ResultsStore(path)  # opened again: nothing left to add
    assert [store.responses("m", "t")[0][k] for k in ("task_type", "modality", "family")] == [None] * 3
    store.put_responses("m", "t", [{"item": "new", "prompt": "q", "reference": "a", "choices": None, "response": "r",
                                    "answer": "a", "task_type": "yes_no", "modality": "CT_SCAN"}])
    scores = evaluation.report(store, ["m"], ["t"], "judge", "hash", 200)["tasks"]["t"]["m"]
    assert {f: s["n"] for f, s in scores["by_type"].items()} == {"closed": 1, "unknown": 1}
    assert {f: s["n"] for f, s in scores["by_modality"].items()} == {"CT_SCAN": 1, "unknown": 1}
    assert {f: s["n"] for f, s in scores["by_family"].items()} == {"unknown": 2}
    rows = [{"id": "old", "task_type": "open", "modality": "OTHER"}, {"id": "new", "task_type": "open",
                                                                      "modality": "OTHER"}]
    assert store.fill_item_info("m", "t", rows) == 1
    assert store.fill_item_info("m", "t", rows) == 0, "a row without a family has none to give"
    assert store.fill_item_info("m", "t", [{**r, "family": "image_plane"} for r in rows]) == 2
    kinds = {r["item"]: (r["task_type"], r["modality"], r["family"]) for r in store.responses("m", "t")}
    assert kinds == {"old": ("open", "OTHER", "image_plane"), "new": ("yes_no", "CT_SCAN", "image_plane")}, \
        "only what was missing is filled"


def _release_scores(lines: list[dict]) -> dict[str, float]:
    """The MediX-R1 release's scoring phase (eval/eval.py --score) on its _eval.jsonl lines: the task is the id
    without its last "_" part; a MIMIC task's score is a grade 0-5 summed over 5 per item, any other's 1 or 0."""
    sums: dict[str, list[float]] = {}
    for line in lines:
        task, score = "_".join(line["id"].split("_")[:-1]), line["evaluation"]["score"]
        total = sums.setdefault(task, [0.0, 0.0])
        if "mimic" in line["id"]:
            total[0], total[1] = total[0] + float(score), total[1] + 5
        else:
            total[0], total[1] = total[0] + (1 if int(score) else 0), total[1] + 1
    return {task: got / most for task, (got, most) in sums.items()}


def test_submissions_in_the_release_layout_score_as_the_report_does(tmp_path, monkeypatch, counting):
    store, judge, tasks = _rubric_run(tmp_path, monkeypatch, counting)
    key = evaluation.judge_key(judge)
    written = evaluation.export_submissions(store, ["m"], tasks, key, judge.prompt_hash, tmp_path / "submissions")
    folder = tmp_path / "submissions" / "m"
    assert written == {"m": {"responses": folder / "m.jsonl", "eval": folder / "m_eval.jsonl"}}
    generated = [json.loads(line) for line in (folder / "m.jsonl").read_text().splitlines()]
    judged = [json.loads(line) for line in (folder / "m_eval.jsonl").read_text().splitlines()]
    assert len(generated) == len(judged) == 7
    assert [g["id"] for g in generated] == [f"synthetic_text_{k}" for k in range(4)] + [
        f"mimic_cxr_report_summarization_{k}" for k in range(3)]  # the release's name for the task
    for line in generated:
        assert list(line) == ["id", "question", "answer", "response", "answer_idx", "item", "task", "final_answer"]
    assert generated[4] | {"evaluation": {"score": pytest.approx(4.0)}} == judged[4]  # a grade 0-5, as the release
    assert judged[0]["evaluation"] == {"score": 1} and judged[2]["evaluation"] == {"score": 0}
    result = evaluation.report(store, ["m"], tasks, key, judge.prompt_hash, 200)
    assert _release_scores(judged) == pytest.approx({"synthetic_text": result["tasks"]["synthetic_text"]["m"][
        "accuracy"], "mimic_cxr_report_summarization": result["tasks"]["mimic_cxr_summarization"]["m"]["accuracy"]})


def test_submissions_give_mcq_items_their_option_letter_and_leave_unjudged_ones_out_of_the_eval_file(tmp_path):
    store = evaluation.ResultsStore(tmp_path / "results.sqlite")
    for name in ("grpo-1", "grpo_1"):
        store.register(name, {"policy": name})
    store.put_responses("grpo-1", "medqa", [
        {"item": f"q{k}", "prompt": "Site?\nChoices: A. Ovary B. Ampulla", "reference": "Ampulla",
         "choices": ["Ovary", "Ampulla"], "response": "B", "answer": "B"} for k in range(2)])
    store.put_verdicts("grpo-1", "medqa", "judge", "hash", 0, [{"item": "q0", "label": True}])
    written = evaluation.export_submissions(store, ["grpo-1"], ["medqa"], "judge", "hash", tmp_path / "out")
    generated = [json.loads(line) for line in written["grpo-1"]["responses"].read_text().splitlines()]
    judged = [json.loads(line) for line in written["grpo-1"]["eval"].read_text().splitlines()]
    assert written["grpo-1"]["eval"] == tmp_path / "out" / "grpo_1" / "grpo_1_eval.jsonl"  # the release's file name
    assert [g["answer_idx"] for g in generated] == ["B", "B"]
    assert [(j["id"], j["evaluation"]) for j in judged] == [("medqa_0", {"score": 1})]
    with pytest.raises(ValueError, match="cannot tell apart"):
        evaluation.export_submissions(store, ["grpo-1", "grpo_1"], ["medqa"], "judge", "hash", tmp_path / "out")


# --- a fixture task end to end, killed and resumed -----------------------------------------------------------------


def _evaluate(out, source, url):
    return [sys.executable, "-m", "medix_lib", "evaluate", "--model", "smollm2-135m-instruct", "--name", "base",
            "--tasks", "medqa", "--source", f"medqa={source}", "--judge", "stub-judge", "--judge-backend", "openai",
            "--base-url", url, "--max-new-tokens", "6", "--output", str(out)]


@pytest.mark.slow
def test_evaluation_resumes_after_sigkill_without_redoing_or_duplicating(stub, tmp_path):
    source = medqa_original(tmp_path / "medqa")
    out = tmp_path / "eval"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_evaluate(out, source, stub.url), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    db = out / "results.sqlite"
    deadline = time.monotonic() + 600
    seen = 0
    while proc.poll() is None and time.monotonic() < deadline:
        if db.exists():
            try:
                seen = sqlite3.connect(db).execute("SELECT COUNT(*) FROM responses").fetchone()[0]
            except sqlite3.OperationalError:
                seen = 0
            if seen:
                break
        time.sleep(0.1)
    assert seen and proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {r[0]: r[1:] for r in sqlite3.connect(db).execute("SELECT item, response, created FROM responses")}
    assert 0 < len(before) < len(QUESTIONS)

    done = subprocess.run(_evaluate(out, source, stub.url), env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = sqlite3.connect(db).execute("SELECT item, response, created FROM responses").fetchall()
    assert len(rows) == len({r[0] for r in rows}) == len(QUESTIONS)  # every item once
    assert all(before[item] == (response, created) for item, response, created in rows if item in before)
    verdicts = sqlite3.connect(db).execute("SELECT COUNT(*), COUNT(DISTINCT item) FROM verdicts").fetchone()
    assert verdicts == (len(QUESTIONS), len(QUESTIONS))
    report = json.loads((out / "report.json").read_text())
    assert report["tasks"]["medqa"]["base"]["n"] == len(QUESTIONS)
    assert report["prompt_hash"] and report["judge"] == "openai:stub-judge+terminology+question"  # an LLM judge

    calls = len(stub.requests)
    again = subprocess.run(_evaluate(out, source, stub.url), env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and len(stub.requests) == calls  # a finished evaluation asks no model again
    assert json.loads((out / "report.json").read_text()) == report
