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
        r"\bwhich (one )?of the following( \w+){0,3} (is|are|was|were|does|do|would|should|can|could|will)( be)?"
        r"( the)? (not|false|incorrect|untrue|wrong|least)\b",
        r"\bwhich (one |statement |option )?(is|are) (not|false|incorrect|untrue|wrong)\b",
        r"\b(true|false|correct|incorrect|wrong|untrue) (statements?|about|regarding)\b",
    )
]
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
    option-dependent, while "Which of the following is NOT ..." and "All of the following ... EXCEPT" do; so do
    answers that point at other options ("All of the above", "Both A and B").

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
    answer = options[answer_index].strip()
    if _OPTION_ANSWER.match(answer):
        return f"the answer points at other options ({answer!r})"
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
