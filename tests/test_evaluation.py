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
from medix_lib.contract import OutputContract
from medix_lib.evaluation import stats
from medix_lib.judge import Judge
from medix_lib.rewards import AccuracyReward
from tests.judge_doubles import http_judge

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
    completions = [f"<OTHER><thinking>.</thinking><answer>{a}</answer>" for a in ["a heart attack", "E500", "angina"]]
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
    store = _store_with(tmp_path, ["a heart attack", "GARBAGE reply", "E500"])
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
                             *optional]
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
    assert report["prompt_hash"] and report["judge"] == "openai:stub-judge+terminology"

    calls = len(stub.requests)
    again = subprocess.run(_evaluate(out, source, stub.url), env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and len(stub.requests) == calls  # a finished evaluation asks no model again
    assert json.loads((out / "report.json").read_text()) == report
