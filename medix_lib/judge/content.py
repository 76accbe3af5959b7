"""Answers with nothing to compare, decided NO before any model is asked.

A prediction that is only a code or a number where the reference names no number, a bare yes/no word or option
letter where the reference names a thing, a generic word ("disease", "finding", "abnormality") where the reference
names a specific one, or a template fragment ("<answer>", "{answer}", "Final answer:") carries no answer to compare.
Shown such text against a specific reference, a 135M verifier is a biased coin (the v7 verifier paid 18% of them at
its threshold), and a policy under RL finds every coin that lands YES. Text a verifier has never seen (an everyday
word, a coined term) is still the verifier's to judge: these rules only take the shapes that can be named.
"""

from __future__ import annotations

import re

from medix_lib.text import normalise

# Words about an answer's format, never its content: a prediction made only of these (and digits of a step number)
# is a template fragment ("Final answer:", "Based on the image,", "Insert answer here", "Step 1:").
_TEMPLATE_WORDS = frozenset(
    "answer answers final solution response output result question step insert here your my the a an is based on "
    "image picture thought process reasoning explanation thinking think placeholder text na n tbd null mask "
    "assistant user endoftext begin end of this to".split())
_MARKUP = re.compile(r"<\s*/?\s*[A-Za-z_|]+\s*>|\{[^{}]{0,40}\}|<\||"
                     r"\[(?:answer|mask|blank|placeholder|insert[^\]]{0,30}|your[^\]]{0,30})\]", re.I)
# A code shape or a bare number: digits with a separator, several digits or a digit alone ("T60.4", "K-27", "50 mm",
# "2"); a letter and one digit ("N0", "T2") may be a stage and stays the model's
_CODE = re.compile(r"\d[-./:]|[-./:]\d|\d\D*\d|^\s*\d\s*%?\s*$")
# ("right", "both" and "neither" are answers: a side, bilateral, none of two)
_BARE = frozenset({"yes", "no", "true", "false", "ok", "okay", "maybe", "none", "correct", "incorrect", "wrong",
                   "unknown", "all of the above", "none of the above", "y", "n"})
_LETTER = re.compile(r"(?:option |choice |answer )?[a-e]")
# A reference that states presence, absence or a polarity can be answered with a bare word ("No pleural effusion"
# is answered by "no"): the model decides those.
_POLARITY = re.compile(r"\b(?:no|not|non|without|absent|absence|negative|positive|present|normal|abnormal|none|"
                       r"neither|yes|free|unremarkable)\b")
# Words that name no particular finding: an answer made only of them ("disease", "a medical condition", "abnormal
# findings", "something wrong") is vague against a reference that names one.
_GENERIC = frozenset(
    "disease diseases disorder disorders condition conditions finding findings abnormality abnormalities syndrome "
    "pathology illness problem problems symptom symptoms diagnosis medical clinical health issue issues something "
    "abnormal wrong process state pathological pathologic anomaly ailment sickness sick unwell of a an the some any "
    "kind type sort certain".split())
_NUMBER_WORDS = re.compile(
    r"\b(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
    r"seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand|first|"
    r"second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|once|twice|single|double|triple|half|quarter|dozen|"
    r"i|ii|iii|iv|v|vi|vii|viii|ix|x|xi|xii)\b")
NO_CONTENT = "no_content"  # the rule's name in verdicts and stats


def _generic(text: str) -> bool:
    return all(w in _GENERIC for w in text.split())


def _template_only(text: str) -> bool:
    words = text.split()
    return any(w in _TEMPLATE_WORDS for w in words) and all(w in _TEMPLATE_WORDS or w.isdigit() for w in words)


def content_shape(reference: str, prediction: str) -> str | None:
    """Why ``prediction`` has nothing to compare with ``reference`` (raw texts): ``fragment``, ``code``, ``bare`` or
    ``vague``; None when it may be judged.

    >>> [content_shape("pulmonary embolism", p) for p in ("{answer}", "T60.4", "B", "Yes.", "some disease", "2")]
    ['fragment', 'code', 'bare', 'bare', 'vague', 'code']
    >>> [content_shape(r, p) for r, p in (("No pleural effusion", "no"), ("grade two", "2"), ("renal mass", "mass"),
    ...                                   ("CT", "C.T."), ("disease", "disease"), ("no nodal metastasis", "N0"))]
    [None, None, None, None, None, None]
    """
    pred, ref = normalise(prediction), normalise(reference)
    if not pred or pred == ref:
        return None  # the judge's empty and exact-match rules
    if (_MARKUP.search(prediction) and not _MARKUP.search(reference)) or (
            prediction.strip().endswith(":") and not reference.strip().endswith(":")) or (
            _template_only(pred) and not _template_only(ref)):
        return "fragment"
    if _CODE.search(prediction) and not re.search(r"[^\W\d_]{3,}", pred) \
            and not any(ch.isdigit() for ch in ref) and not _NUMBER_WORDS.search(ref):
        return "code"
    if (pred in _BARE or _LETTER.fullmatch(pred)) and ref not in _BARE and not _LETTER.fullmatch(ref) \
            and not _POLARITY.search(ref):
        return "bare"
    if _generic(pred) and not _generic(ref):
        return "vague"
    return None
