"""Guards against reward hacking: answers that have no content, address the grader, copy the question, hedge over
candidates, refuse, or pad; and ``check_answer``, everything the answer rewards know before a model is asked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from medix_lib.contract import OutputContract, ParsedCompletion, blocks
from medix_lib.judge import looks_like_injection
from medix_lib.rewards.rules import _column, _texts, _tokens, rule_verdict
from medix_lib.text import normalise

# Tokens that make LLM judges say YES to empty answers ("One Token to Fool LLM-as-a-Judge", 2025), and openers that
# carry no answer. An answer made only of these and punctuation has no content.
_MASTER_KEYS = re.compile(
    r"thought process|let'?s (solve|think)( about)?( this)?( problem)?( step by step)?|let us (solve|think)"
    r"( about)?( this)?( problem)?( step by step)?|step by step|solution|final answer|the answer is|answer|reasoning"
    r"|explanation|respuesta|解|かいせつ|答案|回答", re.I)
# On top of the judge's own injection patterns: text that names the grader or forges the judge prompt's layout.
_ADDRESSES_GRADER = re.compile(
    r"\b(judge|grader|grading|evaluator|examiner|assessor)\b|\b(reference|predicted)\s+answers?\s*[:=]"
    r"|\bground[ -]truth\b|<<<|>>>|\[/?inst\]", re.I)
_DISJUNCTION = re.compile(r"\b(or|either|versus|vs)\b|\b[^\W\d_]{2,}\s*/\s*[^\W\d_]{2,}\b", re.I)
_REFUSAL = re.compile(
    r"\b(i (do not|don't|cannot|can't|am unable to) (know|tell|determine|say|answer)|cannot be (determined|assessed|"
    r"answered)|can't be determined|unable to (determine|answer|assess)|not (enough|sufficient) information"
    r"|insufficient (information|data)|not sure|unsure)\b", re.I)


def _no_content(text: str, question: str) -> bool:
    return not any(ch.isalnum() for ch in _MASTER_KEYS.sub(" ", text))


def _copies_question(text: str, question: str) -> bool:
    """Most of the question's words, or a phrase lifted from a question that offers no choices: "What is the medical
    term for 'heart attack'?" answered "heart attack" names the same concept as the reference, and the judge (which
    never sees the question) would say YES. A question with "or" offers its candidates: picking one is an answer."""
    words, asked = set(_tokens(text)), set(_tokens(question))
    if len(asked) >= 3 and len(words) >= 3 and words <= asked and len(words) >= 0.6 * len(asked):
        return True
    phrase = normalise(text)
    return bool(phrase) and f" {phrase} " in f" {normalise(question)} " and not _DISJUNCTION.search(question)


def _lists_candidates(text: str, question: str) -> bool:
    return bool(_DISJUNCTION.search(text)) or len(re.split(r"[,;\n]", text.strip(" ,;\n"))) >= 3


# name -> predicate(text, question). A guard fires when the answer has the trait and the reference does not.
GUARDS: dict[str, Callable[[str, str], bool]] = {
    "no_content": _no_content,
    "judge_instruction": lambda text, question: looks_like_injection(text) or bool(_ADDRESSES_GRADER.search(text)),
    "question_copy": _copies_question,
    "candidate_list": _lists_candidates,
    "refusal": lambda text, question: bool(_REFUSAL.search(text)),
}
MAX_ANSWER_WORDS = 32  # answers longer than this and 4x the reference's length are refused as padding
GUARD_NAMES = frozenset({*GUARDS, "overlong"})  # what :func:`screen` can return


def screen(answer: str, reference: str, question: str = "") -> str | None:
    """The name of the guard that refuses ``answer``, or None when it may be scored.

    >>> screen("pneumonia or effusion or edema", "pneumonia"), screen("T2: hyperintense?", "T2 hyperintense")
    ('candidate_list', None)
    >>> screen("Thought process:", "pneumonia"), screen("left or right", "left or right")
    ('no_content', None)
    """
    for name, has_trait in GUARDS.items():
        if has_trait(answer, question) and not has_trait(reference, question):
            return name
    if len(_tokens(answer)) > max(MAX_ANSWER_WORDS, 4 * len(_tokens(reference))):
        return "overlong"
    return None


@dataclass(frozen=True)
class AnswerCheck:
    """What the answer rewards know about one completion before any model is asked."""

    answer: str | None
    refused: str | None  # why it scores 0 without a model: no_answer, empty, multiple_answers or a guard name
    decided: float | None  # the score when a comparison rule settles it


def check_answer(parsed: ParsedCompletion, reference: str, question: str = "", guards: bool = True,
                 strict: bool = False) -> AnswerCheck:
    """Steps 1-3 of the module docstring for one parsed completion.

    >>> c = OutputContract()
    >>> check_answer(c.parse("<OTHER><thinking>.</thinking><answer>Yes</answer>"), "yes")
    AnswerCheck(answer='Yes', refused=None, decided=1.0)
    >>> check_answer(c.parse("<OTHER><answer>a</answer><answer>b</answer>"), "a").refused
    'multiple_answers'
    """
    answer = parsed.answer
    refused = None
    if answer is None:
        refused = "no_answer"
    elif not answer.strip():
        refused = "empty"
    elif guards and len({normalise(a) for a in parsed.answers}) > 1:
        refused = "multiple_answers"
    elif guards:
        refused = screen(answer, reference, question)
    decided = 0.0 if refused else rule_verdict(answer, reference, strict)
    return AnswerCheck(answer, refused, decided)


ANSWER_RULES = ("strict", "release")
RELEASE_INVALID = ("__", ":", "?")  # the release zeroes any answer containing one of these


def release_answer(text: str, answer_tag: str = "answer") -> str:
    """The answer as the MediX-R1 release reads a response: whitespace around ``<``, ``>`` and ``/`` removed
    everywhere, then the *first* closed answer block, or the whole response when there is none; stripped of spaces
    and then of full stops.

    >>> release_answer("<OTHER> <thinking>.</thinking> < answer > Heart attack. </answer><answer>x</answer>")
    'Heart attack'
    >>> release_answer("  pneumonia, probably.")
    'pneumonia, probably'
    """
    collapsed = re.sub(r"\s*([</>])\s*", r"\1", str(text))
    found = blocks(collapsed, answer_tag)
    return (found[0] if found else collapsed).strip().strip(".")


def release_invalid(answer: str) -> bool:
    """The release's invalid-answer rule: empty, one character, or containing ``__``, ``:`` or ``?``.

    >>> release_invalid("T2: hyperintense"), release_invalid("A"), release_invalid("pneumonia")
    (True, True, False)
    """
    return len(answer) <= 1 or any(symbol in answer for symbol in RELEASE_INVALID)


def check_release(text: str, reference: str, question: str = "", guards: bool = True,
                  answer_tag: str = "answer") -> AnswerCheck:
    """:func:`check_answer` under the release's answer rules (``answer_rules: release``): its parsing and invalid
    rule, an exact match after its stripping, and the guards when on; no closed-form or laterality rules.

    >>> check_release("no tags at all: pneumonia", "pneumonia")
    AnswerCheck(answer='no tags at all: pneumonia', refused='release_invalid', decided=0.0)
    >>> check_release("<OTHER><answer>Pneumonia.</answer>", "Pneumonia")
    AnswerCheck(answer='Pneumonia', refused=None, decided=1.0)
    """
    answer = release_answer(text, answer_tag)
    refused = "release_invalid" if release_invalid(answer) else (screen(answer, reference, question) if guards
                                                                    else None)
    decided = 0.0 if refused else (1.0 if answer == str(reference).strip().strip(".") else None)
    return AnswerCheck(answer, refused, decided)


def check(text: str, reference: str, question: str, guards: bool, strict: bool, contract: OutputContract,
          answer_rules: str = "strict") -> AnswerCheck:
    """One completion's :class:`AnswerCheck` under ``answer_rules`` (``strict``: this project's; ``release``)."""
    if answer_rules == "release":
        return check_release(text, reference, question, guards, contract.answer_tag)
    if answer_rules != "strict":
        raise ValueError(f"unknown answer_rules {answer_rules!r}; valid: {', '.join(ANSWER_RULES)}")
    return check_answer(contract.parse(text), reference, question, guards, strict)


def explain(completions, answer, question=None, contract: OutputContract | None = None,
            guards: bool = True, answer_rules: str = "strict") -> list[dict]:
    """Per completion, what the parser found and why an answer is refused: the columns a researcher reads first.

    >>> explain(["<X_RAY><thinking>.</thinking>pneumonia"], ["pneumonia"])
    [{'format_issues': 'no_answer_block', 'refused': 'no_answer'}]
    """
    contract = contract or OutputContract()
    texts = _texts(completions)
    references, questions = _column(answer, len(texts)), _column(question, len(texts))
    rows = []
    for text, ref, q in zip(texts, references, questions):
        parsed = contract.parse(text)
        rows.append({"format_issues": ",".join(parsed.issues),
                     "refused": check(text, ref, q, guards, False, contract, answer_rules).refused})
    return rows
