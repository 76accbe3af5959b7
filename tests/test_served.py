"""The paper's evaluation where a GPU user depends on it: candidates answered by an OpenAI-compatible server, MCQ
answers scored by the option they name (letter, "Option B", letter and text, or text), the question shown to an
instruction-tuned judge, and the restates-prompt rule kept off answers drawn from what the prompt offers."""

import json
from pathlib import Path

import pytest

from medix_lib import cli, evaluation, params
from medix_lib.evaluation import served
from medix_lib.evaluation.runner import _rule
from tests.judge_doubles import CandidateServer, StubServer

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"
QUESTION = "A 50-year-old man has chest pain and a loud S4. Which of the following arteries is most likely occluded?"
OPTIONS = ["Left circumflex artery", "Right coronary artery", "Left anterior descending artery", "Left main artery"]
# what the served candidate answers (the right option is B), and whether that is correct
ANSWERS = {"B": True, "Option B": True, "B. Right coronary artery": True, "(B)": True, "Right coronary artery": True,
           "C": False, "Option A": False, "D. Left main artery": False, "It is probably not cardiac.": False}


@pytest.fixture
def servers():
    candidate, judge = CandidateServer(), StubServer()
    yield candidate, judge
    candidate.close()
    judge.close()


@pytest.fixture(autouse=True)
def quick_retries_and_a_fresh_verdict_cache(monkeypatch, tmp_path):
    monkeypatch.setitem(served.SERVED, "backoff", 0.01)
    monkeypatch.setitem(served.SERVED, "timeout", 20.0)
    monkeypatch.setenv("MEDIX_JUDGE_CACHE", str(tmp_path / "judge_cache.sqlite"))


def medqa_copy(folder, answers):
    """MedQA's 4-option test file (the -hf layout), one row per answer the candidate is told to give."""
    folder.mkdir()
    with open(folder / "test.json", "w") as fh:
        for i, answer in enumerate(answers):
            fh.write(json.dumps({"id": f"test-{i:05d}", "sent1": f"{QUESTION} [say: {answer}]", "sent2": "",
                                 **{f"ending{k}": o for k, o in enumerate(OPTIONS)}, "label": 1}) + "\n")
    return folder


def run_evaluate(tmp_path, candidate_url, judge_url, answers, *extra):
    source = medqa_copy(tmp_path / "medqa", answers)
    out = tmp_path / "eval"
    code = cli.main(["evaluate", "--model", "served-model", "--candidate-base-url", candidate_url, "--tasks",
                     "medqa", "--source", f"medqa={source}", "--judge", "stub-judge", "--judge-backend", "openai",
                     "--base-url", judge_url, "--limit", str(len(answers)), "--output", str(out),
                     "--no-system-prompt", "--no-guards", *extra])  # the paper's protocol
    assert code == 0
    return json.loads((out / "report.json").read_text()), evaluation.ResultsStore(out / "results.sqlite")


def test_letter_answers_count_by_the_option_they_name(tmp_path, servers):
    candidate, judge = servers
    report, store = run_evaluate(tmp_path, candidate.url, judge.url, list(ANSWERS))
    summary = report["tasks"]["medqa"]["model"]
    assert summary["n"] == len(ANSWERS)
    assert summary["accuracy"] == pytest.approx(sum(ANSWERS.values()) / len(ANSWERS))
    # every answer that names an option was decided by it; only the sentence reached the judge, shown the question
    asked = [r["messages"][-1]["content"] for r in judge.requests]
    assert len(asked) == 1 and "It is probably not cardiac." in asked[0] and "Choices:" in asked[0]
    assert summary["option_accuracy"] == summary["accuracy"]  # the judge's score and the letter's agree
    # the candidate's server was sent the protocol's prompt: no system prompt, the options appended, temperature 0
    sent = candidate.requests[0]
    assert sent["model"] == "served-model" and sent["temperature"] == 0.0
    assert [m["role"] for m in sent["messages"]] == ["user"] and "B. Right coronary artery" in \
        sent["messages"][0]["content"]


def test_a_failed_answer_is_counted_never_scored_and_asked_again(tmp_path, servers):
    candidate, judge = servers
    report, store = run_evaluate(tmp_path, candidate.url, judge.url, ["B", "FAIL"])
    assert report["tasks"]["medqa"]["model"]["n"] == 1  # the failed row is not in the store, so not in the report
    assert len(store.responses("model", "medqa")) == 1
    failed_requests = sum("FAIL" in r["messages"][-1]["content"] for r in candidate.requests)
    assert failed_requests == served.SERVED["max_retries"] + 1


def test_pictures_are_sent_as_data_urls(tmp_path, servers):
    from PIL import Image

    candidate, _ = servers
    policy = served.ServedPolicy("served-model", candidate.url)
    messages = evaluation.prompt_messages({"question": "Which modality? [say: CT]", "image": Image.new("RGB", (4, 4))},
                                          params.load("04", "smoke").contract(), False, False, True)
    texts = policy.answer([served.with_images(messages, Image.new("RGB", (4, 4)))], max_new_tokens=8)
    assert texts == ["CT"]
    parts = candidate.requests[0]["messages"][0]["content"]
    assert parts[0]["type"] == "image_url" and parts[0]["image_url"]["url"].startswith("data:image/png;base64,")


@pytest.mark.parametrize("answer, rule", [
    ("B", "option_correct"), ("Option B", "option_correct"), ("b)", "option_correct"),
    ("B. Right coronary artery", "option_correct"), ("the right coronary artery", "option_correct"),
    ("A", "option_other"), ("C. Left anterior descending artery", "option_other"),
    ("The occluded artery is the right coronary artery", None),  # built on an option: for the judge, not restated
    ("Which arteries are most likely occluded", "restates_prompt"),
])
def test_mcq_answers_are_decided_by_the_option_they_name(answer, rule):
    row = {"answer": answer, "reference": OPTIONS[1], "choices": OPTIONS,
           "prompt": f"{QUESTION}\nChoices: " + " ".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(OPTIONS))}
    assert _rule(row, "", guards=False) == rule


def test_answers_drawn_from_the_prompt_by_design_are_judged():
    from medix_lib import benchmarks

    abstract = ("Does statin use reduce mortality after sepsis? Context: In 1,200 patients statin use was associated "
                "with reduced mortality after sepsis.")
    row = {"answer": "statin use reduced mortality after sepsis", "reference": "yes", "choices": None,
           "prompt": abstract}
    assert _rule(row, "", guards=False) == "restates_prompt"  # an open question: a restatement is no answer
    for task in ("pubmedqa", "mimic_cxr_summarization"):  # a conclusion from the abstract, a summary of the report
        assert benchmarks.get_task(task).answer_from_prompt
        assert _rule(row, "", guards=False, restate_check=False) is None


def test_an_instruction_tuned_judge_sees_the_question_and_a_trained_verifier_never():
    llm = params.build("04", {"judge_backend": "openai", "judge_model": "Qwen/Qwen3-14B"})
    verifier = params.build("04", {})
    assert llm.shows_question() and llm.judges()[0].template == "eval-question-v1"
    assert not verifier.shows_question() and verifier.judges()[0].template == "eval-v3"
    assert evaluation.judge_key(llm.judges()[0]).endswith("+question")
    assert not evaluation.judge_key(verifier.judges()[0]).endswith("+question")


@pytest.mark.slow
def test_served_candidate_end_to_end_against_transformers_serve(tmp_path, transformers_serve, servers):
    """`evaluate` with its candidate generated by a real `transformers serve` of SmolLM2 on loopback."""
    url, model = transformers_serve
    _, judge = servers
    out = tmp_path / "eval"
    code = cli.main(["evaluate", "--model", model, "--candidate-base-url", url, "--tasks", "synthetic_text",
                     "--source", f"synthetic_text={FIXTURES / 'synthetic' / 'dataset'}", "--judge", "stub-judge",
                     "--judge-backend", "openai", "--base-url", judge.url, "--limit", "2", "--max-new-tokens", "16",
                     "--output", str(out)])
    assert code == 0
    from medix_lib import benchmarks

    rows = list(benchmarks.load_task("synthetic_text", source=FIXTURES / "synthetic" / "dataset", limit=2))
    report = json.loads((out / "report.json").read_text())
    assert report["tasks"]["synthetic_text"]["model"]["n"] == len(rows) > 0
    responses = evaluation.ResultsStore(out / "results.sqlite").responses("model", "synthetic_text")
    assert len(responses) == len(rows) and all(r["response"].strip() for r in responses)
    assert (out / "submissions" / "model" / "model_eval.jsonl").is_file()  # the release's layout beside the report
