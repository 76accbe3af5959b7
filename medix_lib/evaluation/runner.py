"""Running an evaluation: generate each task's answers and judge them, writing every row to the results store as it
goes, so a killed run resumes where it stopped and a finished one costs no model call when run again."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from medix_lib import models
from medix_lib.contract import OutputContract
from medix_lib.evaluation.protocol import final_answer, prompt_messages, question_text, restates_prompt
from medix_lib.evaluation.store import ResultsStore
from medix_lib.judge import RUBRIC_TEMPLATE, Judge, JudgeItem
from medix_lib.rewards import GUARD_NAMES, screen


@dataclass(frozen=True)
class Candidate:
    """A model to evaluate: a policy (alias, hub id or path) and an optional PEFT adapter on top."""

    name: str
    policy_model: str
    adapter: str | None = None

    def settings(self, protocol: "Protocol") -> dict:
        """What the stored responses depend on: the policy, the adapter's weights, the generation settings."""
        adapter_hash = None
        if self.adapter:
            weights = sorted(Path(self.adapter).glob("*.safetensors")) or sorted(Path(self.adapter).glob("*.bin"))
            digest = hashlib.sha256()
            for path in weights:
                digest.update(path.read_bytes())
            adapter_hash = digest.hexdigest()[:16]
        return {"policy_model": self.policy_model, "adapter_sha256": adapter_hash, **protocol.generation()}


@dataclass(frozen=True)
class Protocol:
    """The paper's protocol as parameters (see :mod:`medix_lib.evaluation.protocol`)."""

    contract: OutputContract = OutputContract()
    system_prompt: bool = False  # the paper's protocol gives none
    with_choices: bool = True  # MCQ-origin items get "Choices: A. ..."; the reference stays the option text
    max_new_tokens: int = 2048
    batch_size: int = 8
    answer_guards: bool = False  # refuse hedges, judge instructions, padding before judging (small judges)
    seed: int = 0

    def generation(self) -> dict:
        return {"system_prompt": self.system_prompt, "with_choices": self.with_choices,
                "max_new_tokens": self.max_new_tokens, "temperature": 0.0,
                "contract": [self.contract.reasoning_tag, self.contract.answer_tag]}


def judge_key(judge: Judge) -> str:
    """How a judge is named in the store: backend and model (a sampled HTTP judge adds temperature and seed; a
    trained verifier, shipped or local, the hash of its weights, so a retrained one never inherits its predecessor's
    verdicts), and ``+terminology`` when the vocabularies decide before the model (its verdicts differ too)."""
    identity = getattr(judge._backend, "identity", None)
    name = f"{judge.backend}:{identity() if identity and judge.backend != 'transformers' else judge.model}"
    record = models.artifact_record(judge.model) if judge.backend == "transformers" else None
    return name + (f"@{record['sha256'][:12]}" if record else "") + ("+terminology" if judge.terminology else "")


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def generate(candidate: Candidate, task: str, rows: list[dict], protocol: Protocol, store: ResultsStore,
             load_policy: Callable, progress: bool = True) -> int:
    """Answer every row the store has no response for, a chunk at a time, each chunk committed as it is done.
    Returns the number of new responses; loads the policy only when there is something to generate."""
    from medix_lib.progress import bar as progress_bar

    from medix_lib import policy as policy_lib

    done = store.answered(candidate.name, task)
    pending = [r for r in rows if r["id"] not in done]
    if not pending:
        return 0
    model = load_policy()
    bar = progress_bar(total=len(rows), initial=len(rows) - len(pending), desc=f"{candidate.name} · {task}",
                       progress=progress)
    for chunk in _chunks(pending, protocol.batch_size):
        prompts = [prompt_messages(r, protocol.contract, protocol.system_prompt, protocol.with_choices,
                                   model.is_vision) for r in chunk]
        texts = policy_lib.generate(model, prompts, images=[r.get("image") for r in chunk] if model.is_vision else None,
                                    max_new_tokens=protocol.max_new_tokens, temperature=0.0,
                                    batch_size=protocol.batch_size, seed=protocol.seed, progress=False)
        store.put_responses(candidate.name, task, [
            {"item": r["id"], "prompt": question_text(r, protocol.with_choices), "reference": r["answer"],
             "choices": r.get("choices"), "response": t[0], "answer": final_answer(t[0], protocol.contract)}
            for r, t in zip(chunk, texts)])
        bar.update(len(chunk))
    bar.close()
    return len(pending)


EVALUATION_RULES = GUARD_NAMES | {"restates_prompt"}  # what :func:`_rule` can return


def _rule(answer: str, reference: str, question: str, system_prompt_text: str, guards: bool) -> str | None:
    """Why an answer is NO without asking the judge: it restates the prompt, or (with guards) a guard refuses it, the
    same guards as the accuracy reward's, with the question (a term lifted from it is a question copy)."""
    if answer.strip() and restates_prompt(answer, f"{system_prompt_text}\n{question}"):
        return "restates_prompt"
    return screen(answer, reference, question) if guards and answer.strip() else None


def judge_task(candidate: Candidate, task: str, judges: list[Judge], rounds: int, protocol: Protocol,
               store: ResultsStore, system_prompt_text: str, retries: int = 1) -> dict:
    """Judge every stored response without a successful verdict, for each round (round r asks
    ``judges[r % len(judges)]``); failures are stored with their error and asked again on the next run. Returns
    model calls and failures."""
    responses = store.responses(candidate.name, task)
    rules = {r["item"]: _rule(r["answer"], r["reference"], r["prompt"], system_prompt_text, protocol.answer_guards)
             for r in responses}
    for key, judge in {judge_key(j): j for j in judges}.items():
        # the store keys verdicts by judge and prompt, not by the answer rules: verdicts decided under other rules
        # (guards switched, a guard added since) are judged again, never reported as if the rules had not changed
        stored = store.verdicts(candidate.name, task, key, judge.prompt_hash)
        stale = [item for item, rounds_ in stored.items()
                 if any((v["rule"] if v["rule"] in EVALUATION_RULES else None) != rules.get(item) for v in rounds_)]
        if stale:
            warnings.warn(f"{candidate.name}/{task}: {len(stale)} stored verdicts of {key} were decided under other "
                          f"answer rules; judging them again", stacklevel=2)
            store.drop_verdicts(candidate.name, task, key, judge.prompt_hash, stale)
    calls = failures = 0
    for round_ in range(rounds):
        judge = judges[round_ % len(judges)]
        key, prompt_hash = judge_key(judge), judge.prompt_hash
        for attempt in range(1 + retries):
            done = store.judged(candidate.name, task, key, prompt_hash, round_)
            todo = [r for r in responses if r["item"] not in done]
            if not todo:
                break
            ruled, asked = [], []
            for r in todo:
                (ruled if rules[r["item"]] else asked).append((r, rules[r["item"]]))
            store.put_verdicts(candidate.name, task, key, prompt_hash, round_, [
                {"item": r["item"], "label": False, "score": 0.0 if judge.rubric else None, "rule": rule}
                for r, rule in ruled])
            if asked:
                verdicts = judge([JudgeItem(r["reference"], r["answer"], r["prompt"]) for r, _ in asked])
                calls += judge.last_stats.model_calls
                store.put_verdicts(candidate.name, task, key, prompt_hash, round_, [
                    {"item": r["item"], **{k: v for k, v in asdict(verdict).items()
                                           if k in ("label", "p_yes", "score", "error", "rule")}}
                    for (r, _), verdict in zip(asked, verdicts)])
                failures = sum(v.error is not None for v in verdicts)
                if asked and failures == len(asked) == len(responses):
                    raise RuntimeError(f"the judge {key} failed on every item of {task} ({len(asked)} items); the "
                                       f"first error: {verdicts[0].error}. Nothing was scored: fix the judge (see the "
                                       f"README's memory plan and judge server sections) and run again; answers are "
                                       f"kept in the store")
    return {"judge_model_calls": calls, "judge_failures_left": failures}


def evaluate(candidate: Candidate, tasks: dict[str, Callable[[], list[dict]]], judges: list[Judge],
             store: ResultsStore, protocol: Protocol = Protocol(), rounds: int = 1, rubric_judges: list[Judge] = (),
             progress: bool = True, replace_changed: bool = True) -> dict:
    """Evaluate ``candidate`` on ``tasks`` (name -> a function returning the task's schema rows) and write everything
    to ``store``. Image tasks are skipped, with the reason recorded, when the policy is text-only. Report tasks
    (``metric`` judge_rubric in the benchmark registry) are graded by ``rubric_judges`` (default: each judge with
    the rubric template). Returns per task what was generated and asked. A candidate stored with other settings (a
    retrained adapter) is refused, or with ``replace_changed`` its stale results are dropped and it is redone."""

    from medix_lib import benchmarks, policy as policy_lib

    if store.register(candidate.name, candidate.settings(protocol), replace=replace_changed):
        warnings.warn(f"{store.path.name}: candidate {candidate.name!r} changed since it was stored (policy, adapter "
                      f"or generation settings): its earlier responses and verdicts were dropped", stacklevel=2)
    loaded = {}

    def load_policy():
        if "policy" not in loaded:
            loaded["policy"] = policy_lib.load(candidate.policy_model, candidate.adapter)
        return loaded["policy"]

    summary = {}
    for task, rows_of in tasks.items():
        spec = benchmarks.get_task(task)
        if spec.modality == "image" and not policy_lib.is_vision(candidate.policy_model):
            store.skip(candidate.name, task, "image task: the policy is text-only")
            summary[task] = {"skipped": "image task: the policy is text-only"}
            continue
        rows = rows_of()
        generated = generate(candidate, task, rows, protocol, store, load_policy, progress)
        graders = (list(rubric_judges) or [_with_template(j, RUBRIC_TEMPLATE) for j in judges]) \
            if spec.metric == "judge_rubric" else judges
        system_text = protocol.contract.system_prompt() if protocol.system_prompt else ""
        summary[task] = {"rows": len(rows), "generated": generated,
                         **judge_task(candidate, task, graders, rounds, protocol, store, system_text)}
    summary["policy_loaded"] = "policy" in loaded
    return summary


def _with_template(judge: Judge, template: str) -> Judge:
    import dataclasses

    return dataclasses.replace(judge, template=template)
