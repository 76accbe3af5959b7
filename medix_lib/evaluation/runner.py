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
from medix_lib.data import pictures
from medix_lib.evaluation.image_control import base_task, check_control, control_task, controlled_rows
from medix_lib.evaluation.protocol import final_answer, prompt_messages, question_text, restates_prompt
from medix_lib.evaluation.stats import named_option
from medix_lib.evaluation.store import ResultsStore
from medix_lib.judge import RUBRIC_TEMPLATE, Judge, JudgeItem
from medix_lib.rewards import GUARD_NAMES, screen
from medix_lib.text import normalise


@dataclass(frozen=True)
class Candidate:
    """A model to evaluate: a policy (alias, hub id or path) and an optional PEFT adapter on top, or a model served at
    ``base_url`` by an OpenAI-compatible server (``policy_model`` is then the name the server gives it)."""

    name: str
    policy_model: str
    adapter: str | None = None
    base_url: str | None = None

    def load(self, protocol: "Protocol | None" = None):
        """What answers: the policy in this process (with the protocol's pixel bounds), or a client of its server
        (:mod:`~.served`; the server sizes pictures as it was started to)."""
        if self.base_url:
            from medix_lib.evaluation.served import ServedPolicy

            return ServedPolicy(self.policy_model, self.base_url)
        from medix_lib import policy as policy_lib

        protocol = protocol or Protocol()
        return policy_lib.load(self.policy_model, self.adapter, protocol.image_min_pixels, protocol.image_max_pixels)

    def settings(self, protocol: "Protocol") -> dict:
        """What the stored responses depend on: the policy, the adapter's weights, the generation settings."""
        adapter_hash = None
        if self.adapter:
            weights = sorted(Path(self.adapter).glob("*.safetensors")) or sorted(Path(self.adapter).glob("*.bin"))
            digest = hashlib.sha256()
            for path in weights:
                digest.update(path.read_bytes())
            adapter_hash = digest.hexdigest()[:16]
        return {"policy_model": self.policy_model, "adapter_sha256": adapter_hash, **protocol.generation(),
                **({"served": True} if self.base_url else {})}


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
    # image tasks asked again with the picture replaced (:mod:`~.image_control`; the paper's protocol asks no such
    # control). Not in generation(): the controlled answers have their own key, so switching it drops no stored answer
    image_control: str = "none"
    image_min_pixels: int = 0  # a dynamic-resolution policy's bounds on a picture's pixels (0: its processor's own)
    image_max_pixels: int = 0

    def __post_init__(self):
        check_control(self.image_control)

    def generation(self) -> dict:
        bounds = {k: v for k, v in (("image_min_pixels", self.image_min_pixels),
                                    ("image_max_pixels", self.image_max_pixels)) if v}  # unset: stores stay valid
        return {"system_prompt": self.system_prompt, "with_choices": self.with_choices,
                "max_new_tokens": self.max_new_tokens, "temperature": 0.0,
                "contract": [self.contract.reasoning_tag, self.contract.answer_tag], **bounds}


def judge_key(judge: Judge) -> str:
    """How a judge is named in the store: backend and model (a sampled HTTP judge adds temperature and seed; a
    trained verifier, shipped or local, the hash of its weights, so a retrained one never inherits its predecessor's
    verdicts), ``+terminology`` when the vocabularies decide before the model and ``+question`` when it is shown the
    question (their verdicts differ too)."""
    identity = getattr(judge._backend, "identity", None)
    name = f"{judge.backend}:{identity() if identity and judge.backend != 'transformers' else judge.model}"
    record = models.artifact_record(judge.model) if judge.backend == "transformers" else None
    return (name + (f"@{record['sha256'][:12]}" if record else "") + ("+terminology" if judge.terminology else "")
            + ("+question" if judge.show_question else ""))


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def generate(candidate: Candidate, task: str, rows: list[dict], protocol: Protocol, store: ResultsStore,
             load_policy: Callable, progress: bool = True) -> tuple[int, int]:
    """Answer every row the store has no response for, a chunk at a time, each chunk committed as it is done.
    Returns the numbers of new responses and of answers that failed (a served candidate's, after its retries: not
    stored, so never scored, and asked again by the next run); loads the policy only when there is something to
    generate."""
    from medix_lib.evaluation.served import ServedPolicy
    from medix_lib.progress import bar as progress_bar

    done = store.answered(candidate.name, task)
    # responses stored before their type, modality and family were kept
    store.fill_item_info(candidate.name, task, [{"id": r["id"], **item_info(r)} for r in rows])
    pending = [r for r in rows if r["id"] not in done]
    if not pending:
        return 0, 0
    model = load_policy()
    served = isinstance(model, ServedPolicy)
    bar = progress_bar(total=len(rows), initial=len(rows) - len(pending), desc=f"{candidate.name} · {task}",
                       progress=progress)
    stored = 0
    for chunk in _chunks(pending, model.concurrency if served else protocol.batch_size):
        texts = _answers(model, chunk, protocol)
        answered = [(r, t) for r, t in zip(chunk, texts) if t is not None]
        store.put_responses(candidate.name, task, [
            {"item": r["id"], "prompt": question_text(r, protocol.with_choices), "reference": r["answer"],
             "choices": r.get("choices"), "response": t, "answer": final_answer(t, protocol.contract),
             **item_info(r)}
            for r, t in answered])
        stored += len(answered)
        bar.update(len(chunk))
    bar.close()
    if stored < len(pending):
        warnings.warn(f"{candidate.name}/{task}: {len(pending) - stored} of {len(pending)} answers failed and were "
                      f"not stored (first error: {model.last_errors[0] if served and model.last_errors else '?'}); "
                      f"run again to ask for them", stacklevel=2)
    return stored, len(pending) - stored


def item_info(row: dict) -> dict:
    """What the report breaks accuracy down by, as a response keeps it: the row's question type, modality tag and
    question family (``family``, where its loader says one: :data:`~medix_lib.data.ROW_EXTRAS`)."""
    return {"task_type": row.get("task_type"), "modality": row.get("modality"), "family": row.get("family")}


def _answers(model, chunk: list[dict], protocol: Protocol) -> list[str | None]:
    """The model's answers to ``chunk``'s rows as the protocol asks them: a served candidate's with each row's picture
    as a data URL (None where it failed), a local policy's through ``policy.generate``."""
    from medix_lib import policy as policy_lib
    from medix_lib.evaluation.served import ServedPolicy, with_images

    served = isinstance(model, ServedPolicy)
    # a server gets typed parts only where a picture goes with the text: every server reads those
    prompts = [prompt_messages(r, protocol.contract, protocol.system_prompt, protocol.with_choices,
                               r.get("image") is not None if served else model.is_vision) for r in chunk]
    if served:
        return model.answer([with_images(p, pictures(r)) if r.get("image") is not None else p
                             for p, r in zip(prompts, chunk)], protocol.max_new_tokens, protocol.seed)
    texts = policy_lib.generate(model, prompts, images=[pictures(r) for r in chunk] if model.is_vision else None,
                                max_new_tokens=protocol.max_new_tokens, temperature=0.0,
                                batch_size=protocol.batch_size, seed=protocol.seed, progress=False)
    return [t[0] for t in texts]


def grading_template(task: str) -> str | None:
    """The judge template ``task`` is graded with instead of the judges' own: the rubric for report tasks (metric
    ``judge_rubric`` in the benchmark registry), None for every other task and for names outside the registry. The
    one place that says so: :func:`evaluate` grades with it, the report reads the verdicts under its hash."""
    from medix_lib import benchmarks

    spec = benchmarks.TASKS.get(base_task(task))  # a control's key is graded as its task
    return RUBRIC_TEMPLATE if spec is not None and spec.metric == "judge_rubric" else None


OPTION_RULES = {"option_correct": True, "option_other": False}  # an MCQ answer that names one option

EVALUATION_RULES = GUARD_NAMES | {"restates_prompt"} | set(OPTION_RULES)  # what :func:`_rule` can return


def _rule(response: dict, system_prompt_text: str, guards: bool, restate_check: bool = True) -> str | None:
    """What decides a stored response without asking the judge, or None.

    - An MCQ answer that names one option, by its letter ("B", "Option B", "(B)"), letter and text ("B. Ampulla") or
      its text alone, is right when that option is the reference and wrong otherwise (``OPTION_RULES``): the
      release's judge accepts a letter, and a judge shown only the reference text cannot; a letter never reaches it.
    - An answer that only restates the prompt is no answer (``restates_prompt``), unless the task's answers are
      drawn from its prompt by design (``Task.answer_from_prompt``: a summary of a report, a conclusion from an
      abstract).
    - With ``guards``, the accuracy reward's answer guards, given the question (a term lifted from it is a copy).
    """
    answer, reference, question = response["answer"], response["reference"], response["prompt"]
    if not answer.strip():
        return None
    choices = response.get("choices")
    if choices:
        picked = named_option(answer, choices)
        if picked is not None:
            return "option_correct" if normalise(choices[picked]) == normalise(reference) else "option_other"
    if restate_check and restates_prompt(answer, f"{system_prompt_text}\n{question}"):
        return "restates_prompt"
    return screen(answer, reference, question) if guards else None


def judge_task(candidate: Candidate, task: str, judges: list[Judge], rounds: int, protocol: Protocol,
               store: ResultsStore, system_prompt_text: str, retries: int = 1) -> dict:
    """Judge every stored response without a successful verdict, for each round (round r asks
    ``judges[r % len(judges)]``); failures are stored with their error and asked again on the next run. Returns
    model calls and failures."""
    from medix_lib import benchmarks

    responses = store.responses(candidate.name, task)
    restate_check = not benchmarks.get_task(base_task(task)).answer_from_prompt
    rules = {r["item"]: _rule(r, system_prompt_text, protocol.answer_guards, restate_check) for r in responses}
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
                {"item": r["item"], "label": OPTION_RULES.get(rule, False),
                 "score": float(OPTION_RULES.get(rule, False)) if judge.rubric else None, "rule": rule}
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
    to ``store``. Image tasks are skipped, with the reason recorded, when the policy is text-only; with the protocol's
    ``image_control`` they are asked again with the picture replaced, under the key ``<task>@<control>``, and graded
    by the same judges. Report tasks (``metric`` judge_rubric in the benchmark registry) are graded by
    ``rubric_judges`` (default: each judge with the rubric template). Returns per task (and control key) what was
    generated and asked. A candidate stored with other settings (a retrained adapter) is refused, or with
    ``replace_changed`` its stale results are dropped and it is redone."""

    from medix_lib import benchmarks, policy as policy_lib

    if store.register(candidate.name, candidate.settings(protocol), replace=replace_changed):
        warnings.warn(f"{store.path.name}: candidate {candidate.name!r} changed since it was stored (policy, adapter "
                      f"or generation settings): its earlier responses and verdicts were dropped", stacklevel=2)
    loaded = {}

    def load_policy():
        if "policy" not in loaded:
            loaded["policy"] = candidate.load(protocol)
        return loaded["policy"]

    summary = {}
    for task, rows_of in tasks.items():
        spec = benchmarks.get_task(task)
        if spec.modality == "image" and not candidate.base_url and not policy_lib.is_vision(candidate.policy_model):
            store.skip(candidate.name, task, "image task: the policy is text-only")
            summary[task] = {"skipped": "image task: the policy is text-only"}
            continue
        rows = rows_of()
        template = grading_template(task)
        graders = (list(rubric_judges) or [_with_template(j, template) for j in judges]) if template else judges
        system_text = protocol.contract.system_prompt() if protocol.system_prompt else ""
        runs = [(task, rows)]
        if spec.modality == "image" and protocol.image_control != "none":
            runs.append((control_task(task, protocol.image_control),
                         controlled_rows(rows, protocol.image_control, protocol.seed, task)))
        for key, asked in runs:
            generated, failed = generate(candidate, key, asked, protocol, store, load_policy, progress)
            summary[key] = {"rows": len(asked), "generated": generated, "generation_failures": failed,
                            **judge_task(candidate, key, graders, rounds, protocol, store, system_text)}
    summary["policy_loaded"] = "policy" in loaded
    return summary


def _with_template(judge: Judge, template: str) -> Judge:
    import dataclasses

    return dataclasses.replace(judge, template=template)
