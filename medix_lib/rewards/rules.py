"""Answer comparison rules that need no model: closed-form answers (yes/no, presence, laterality, numbers), sides,
numbers and negation. ``rule_verdict`` settles a pair by rule when a rule can."""

from __future__ import annotations

import re
import unicodedata

from medix_lib.contract import completion_text
from medix_lib.text import normalise

def _texts(completions) -> list[str]:
    return [completion_text(c) for c in completions]


def _column(values, n: int) -> list[str]:
    """A text column of length ``n``; missing columns and None cells become empty strings."""
    values = [""] * n if values is None else list(values)
    return ["" if v is None else str(v) for v in values]


_TOKEN = re.compile(r"\d+(?:\.\d+)?|[^\W\d_]+")
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
    "eighteen nineteen twenty".split())}
_CANONICAL = {
    **dict.fromkeys(["yes", "true", "present", "positive", "seen", "visible"], "yes"),
    **dict.fromkeys(["no", "false", "absent", "negative", "not present", "not seen", "not visible"], "no"),
    **dict.fromkeys(["left", "left sided", "sinistral"], "left"),
    **dict.fromkeys(["right", "right sided", "dextral"], "right"),
    **dict.fromkeys(["bilateral", "both sides", "left and right", "right and left"], "bilateral"),
}
_FILLERS = {"the", "a", "an", "it", "is", "its", "answer", "final", "this", "that", "there", "on", "side"}
_LATERALITY = {"left": {"left"}, "right": {"right"}, "bilateral": {"left", "right"}, "bilaterally": {"left", "right"}}


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(unicodedata.normalize("NFKC", str(text)).casefold())


def _number(token: str) -> str | None:
    if token in _NUMBER_WORDS:
        return str(_NUMBER_WORDS[token])
    # isdecimal, not float(): float() also reads "nan" and "infinity", which are words here.
    return f"{float(token):g}" if token.replace(".", "", 1).isdecimal() else None


def closed_form(text: str, leading: bool = False) -> str | None:
    """The canonical value of a short closed-form answer (yes/no, presence, laterality, a number), else None.

    With ``leading`` a yes/no that opens a longer answer counts ("Yes, there is an effusion" -> "yes").

    >>> [closed_form(t) for t in ("Yes.", "absent", "Left-sided", "three", "3.0", "pneumonia", "yes, small")]
    ['yes', 'no', 'left', '3', '3', None, None]
    >>> closed_form("No, the lungs are clear", leading=True)
    'no'
    """
    words = [t for t in _tokens(text) if t not in _FILLERS]
    phrase = " ".join(words)
    if phrase in _CANONICAL:
        return _CANONICAL[phrase]
    if len(words) == 1 and _number(words[0]) is not None:
        return _number(words[0])
    if leading and words and words[0] in ("yes", "no"):
        return words[0]
    return None


def laterality(text: str) -> frozenset[str]:
    """Sides an answer names ("bilateral" names both).

    >>> sorted(laterality("Bilateral effusions, larger on the left"))
    ['left', 'right']
    """
    return frozenset().union(*(_LATERALITY.get(t, set()) for t in _tokens(text)))


def numbers(text: str) -> frozenset[str]:
    """Numbers an answer states, canonicalised ("2" == "two" == "2.0")."""
    return frozenset(n for n in (_number(t) for t in _tokens(text)) if n is not None)


_NEGATION = re.compile(r"\b(no|not|without|absence of|absent|negative for|free of|ruled out|denies|never)\b", re.I)


def negated(text: str) -> bool:
    """Whether an answer negates (the contrast embeddings are blind to: cos("no pneumonia", "pneumonia") is high).

    >>> negated("No evidence of pneumonia"), negated("pneumonia")
    (True, False)
    """
    return bool(_NEGATION.search(unicodedata.normalize("NFKC", str(text))))


def rule_verdict(prediction: str, reference: str, strict: bool = False) -> float | None:
    """Score a pair by rule when a rule settles it (1.0 or 0.0), else None (a model must decide).

    ``strict`` is the embedding's rule set: cosine cannot see closed-form flips, changed numbers or negation, so
    those pairs are settled by exact comparison instead.

    >>> rule_verdict("Heart attack.", "heart attack"), rule_verdict("two", "2"), rule_verdict("no", "yes")
    (1.0, 1.0, 0.0)
    >>> rule_verdict("right lower lobe pneumonia", "left lower lobe pneumonia")
    0.0
    >>> rule_verdict("pneumonia", "lung infection") is None
    True
    >>> rule_verdict("5 mm nodule", "7 mm nodule"), rule_verdict("5 mm nodule", "7 mm nodule", strict=True)
    (None, 0.0)
    >>> rule_verdict("no pneumonia", "pneumonia"), rule_verdict("no pneumonia", "pneumonia", strict=True)
    (None, 0.0)
    """
    if normalise(prediction) == normalise(reference):
        return 1.0
    ref_form = closed_form(reference)
    pred_form = closed_form(prediction, leading=True)
    if ref_form is not None:
        if pred_form is not None or strict:
            return float(pred_form == ref_form)
    elif strict and closed_form(prediction) is not None:
        return 0.0
    sides_pred, sides_ref = laterality(prediction), laterality(reference)
    if sides_pred and sides_ref and sides_pred != sides_ref:
        return 0.0
    nums_pred, nums_ref = numbers(prediction), numbers(reference)
    if strict and (nums_pred and nums_ref and nums_pred != nums_ref or negated(prediction) != negated(reference)):
        return 0.0
    return None
