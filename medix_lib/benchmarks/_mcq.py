"""Multiple-choice items as schema rows, and the test for items that cannot be asked without their options.

The evaluation protocol appends "Choices: A. ..." to MCQ-origin items, so every such row keeps its options in
``choices`` (original order) and its reference as the correct option's text; the option letter is the reference's
index in ``choices``. Open-ended uses (training prompts without options) must drop items whose question only makes
sense against the options; :func:`option_dependence` finds them from the question's structure.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from typing import Any

from medix_lib.data import DataError

from ._common import Split, make_row

# Sentences end at . ? ! followed by a capital, digit or opening quote; "e.g. the" and "2.5 mg" do not split.
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+(?=[\"'(\[]?[A-Z0-9])")
# Capitals mark the negation as the point of the question ("Which of the following is NOT ...").
_CAPS_NEGATION = re.compile(r"\b(EXCEPT|NOT)\b")
_ASKS_OVER_OPTIONS = [
    re.compile(p, re.I) for p in (
        r"\b(all|each|any|none) of the (following|above|these|statements|options)\b",
        r"\b(all|each|every)\b[^.?!]*\bexcept\b",
        r"\bexcept\W*$",  # "The following are causes of X, except:"
        r"\b(true|false|correct|incorrect|wrong|untrue|accurate|inaccurate) (statements?|about|regarding|concerning)\b",
    )
]
# An interrogative "which" (opening the sentence or a clause, after a preposition, or "which of these"), not the
# relative one of "a rash which is not itchy".
_WHICH = re.compile(r"(?:(?:^|[,;:(]\s*|\b(?:in|of|to|for|from|by|with|at|on|under)\s+)which\b)"
                    r"|\bwhich\b(?=\s+(?:one\s+|two\s+)?of\s+"
                    r"(?:the\s+following|these|those|the\s+above|the\s+options)\b)", re.I)
# "which" asking to pick among the options themselves: "which of the following/these", "which statement", "which is"
_WHICH_OF_OPTIONS = re.compile(r"^\s*(?:(?:one|two)\s+)?of\s+"
                               r"(?:the\s+following|these|those|the\s+above|the\s+options)\b"
                               r"|^\s*(?:one|statements?|options?|answers?|choices?)\b|^\s*(?=(?:is|are)\b)", re.I)
# The question's own verb: the first auxiliary after "which" that does not open a clause of its own ("a patient who is
# not responding" belongs to the patient).
_VERB = re.compile(r"\b(?:is|are|was|were|does|do|did|would|should|can|could|will|has|have|may|might|must)(?:n't)?\b"
                   r"(?!')|\b(?:cannot|can't|won't)(?!\w)", re.I)
_CLAUSE_OPENER = re.compile(r"\b(?:who|whom|whose|that|which|when|whenever|where|if|unless|because|while|whereas|"
                            r"although|though|after|before|since|until)\s*$", re.I)
_NEGATED_ASK = re.compile(r"^\s+(?:(?:be|have|been)\s+)?(?:the\s+|an?\s+)?"
                          r"(?:not|never|least|false|incorrect|untrue|wrong|inaccurate|invalid|exceptions?|unlikely)\b",
                          re.I)
# "is true?", "is correct regarding ...", "are accurate about ...": a predicate over the options, unlike "is the
# correct diagnosis" (a well-posed ask for one thing)
_TRUTH_ASK = re.compile(r"^\s+(?:be\s+)?(?:(?:most|more|all|both)\s+)?(?:true|correct|accurate|right|valid)\b"
                        r"(?=\s*(?:$|[?.:;,]|about\b|regarding\b|concerning\b|of\b|for\b|in\b|with\b|when\b|"
                        r"as\b|except\b))", re.I)
_OPTION_ANSWER = re.compile(
    r"^(all|none|both|neither)( of)?( the| them)?( above| following| these| options)?\.?$"
    r"|^(both |only |all of |either |neither )?[a-e1-5]((\s*,\s*|\s+and\s+|\s*&\s*|\s+or\s+|\s+nor\s+)[a-e1-5])+\.?$",
    re.I)


def final_sentence(question: str) -> str:
    """The question's last sentence, where the actual ask sits in vignette-style items.

    >>> final_sentence("Labs are unremarkable except for low ferritin. Which of the following is the diagnosis?")
    'Which of the following is the diagnosis?'
    """
    parts = [p.strip() for p in _SENTENCE_END.split(question.strip()) if p.strip()]
    return parts[-1] if parts else question.strip()


def option_dependence(question: str, options: list[str], answer_index: int) -> str | None:
    """Why the item cannot be asked without its options, or None when its open form is well posed.

    Only the final sentence counts, so a case history saying "unremarkable except for ..." does not make an item
    option-dependent, while "Which of the following is NOT ...", "All of the following ... EXCEPT", "Which of these
    ... is not ...", "Which of the following statements about X is incorrect?" and "Which of the following is true?"
    do (see :func:`_which_asks_over_options`); so do answers that point at other options ("All of the above",
    "Both A and B"). A "which" that asks for one thing ("Which of the following is the most likely diagnosis?")
    stays: its open form is well posed.

    >>> option_dependence("Exam is unremarkable except for a rash. What is the diagnosis?", ["a", "b"], 0) is None
    True
    >>> option_dependence("Which of the following is NOT a cause of gout?", ["a", "b"], 0)
    'the question sentence asks against the options (NOT)'
    >>> option_dependence("Most common cause of X?", ["a", "b", "All of the above"], 2)
    "the answer points at other options ('All of the above')"
    """
    ask = final_sentence(question)
    if not ask.isupper() and (m := _CAPS_NEGATION.search(ask)):
        return f"the question sentence asks against the options ({m.group(0)})"
    for pattern in _ASKS_OVER_OPTIONS:
        if m := pattern.search(ask):
            return f"the question sentence asks against the options ({m.group(0)!r})"
    if phrase := _which_asks_over_options(ask):
        return f"the question sentence asks against the options ({phrase!r})"
    answer = options[answer_index].strip()
    if _OPTION_ANSWER.match(answer):
        return f"the answer points at other options ({answer!r})"
    return None


def _which_asks_over_options(ask: str) -> str | None:
    """The words of a "which" question that picks by a property of the options, or None.

    Negated ("Which of these muscles is not ...", "Which drug does not ...", "... would be least likely ...") or
    asking which option is true or false ("Which of the following statements about X is incorrect?", "Which of the
    following is true?"); the question's own verb decides, so "Which of the following is the most likely diagnosis in
    a patient who is not ...", "Which of the following is the correct diagnosis?" and "Which artery is occluded?"
    stay.

    >>> _which_asks_over_options("Which of these statements about the liver is incorrect?")
    'Which of these statements about the liver is incorrect'
    >>> _which_asks_over_options("Which of the following is the most likely diagnosis?") is None
    True
    """
    for m in _WHICH.finditer(ask):
        after = ask[m.end():]
        for verb in _VERB.finditer(after):
            if _CLAUSE_OPENER.search(after[:verb.start()]):
                continue  # "... in a patient who is not ...": not the question's verb
            tail = after[verb.end():]
            if verb.group(0).lower() == "cannot" or verb.group(0).lower().endswith("n't"):
                return ask[m.start():m.end() + verb.end()].strip(" ,;:(")
            if neg := _NEGATED_ASK.match(tail):
                return ask[m.start():m.end() + verb.end() + neg.end()].strip(" ,;:(")
            if _WHICH_OF_OPTIONS.match(after) and (truth := _TRUTH_ASK.match(tail)):
                return ask[m.start():m.end() + verb.end() + truth.end()].strip(" ,;:(")
            break  # the question's verb asks for something else
    return None


def mcq_row(dataset: str, rid: Any, split: Split, question: str, options: list[str], answer_index: int,
            stats: Counter, keep_option_dependent: bool, modality: str = "OTHER", image=None,
            source: str | None = None, task_type: str = "mcq") -> dict | None:
    """A schema row for one MCQ item, or None when it is skipped (counted in ``stats``, first three warned).

    ``keep_option_dependent`` keeps items that need their options (the evaluation protocol shows them); without it
    they are skipped, as an open-ended prompt cannot ask them.
    """
    if isinstance(answer_index, bool) or not isinstance(answer_index, int) or not 0 <= answer_index < len(options):
        raise DataError(dataset, rid, "answer", f"answer index {answer_index!r} outside the {len(options)} options")
    reference = options[answer_index]
    if options.count(reference) > 1:
        return _skip(dataset, rid, stats, "skipped_duplicate_reference",
                     f"the correct option {reference!r} appears twice, so its letter is ambiguous")
    reason = option_dependence(question, options, answer_index)
    if reason:
        if not keep_option_dependent:
            return _skip(dataset, rid, stats, "skipped_option_dependent", reason)
        stats["kept_option_dependent"] += 1
    return make_row(dataset, rid, split, question.strip(), reference, modality, task_type, image, list(options),
                    source)


def _skip(dataset: str, rid: Any, stats: Counter, key: str, reason: str) -> None:
    stats[key] += 1
    if stats[key] <= 3:
        warnings.warn(f"{dataset}: row {rid!r}: {reason}; skipped", stacklevel=3)
    return None
