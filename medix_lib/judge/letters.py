"""Letter verdicts, for judges trained to answer A (correct), B (incorrect) or C (invalid: truncated, repetitive,
meaningless or a refusal) as CompassVerifier is (template kind "abc", ``TEMPLATES["compassverifier-v1"]``).

A is YES; B and C are both NO, and C is also counted apart (``JudgeStats.invalid``) so a report can say how many
answers the judge found unusable rather than wrong. The local backend scores P(A) over the three letters' next-token
mass, so C's mass counts against YES; the served backend parses the reply (:func:`parse_letter`) and, when the server
sends log-probabilities, scores the same P(A) from them."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from medix_lib.judge.protocol import Score

LETTERS = ("A", "B", "C")
CORRECT, INVALID = "A", "C"
# The release prompt's own names for the letters; its last line asks for these words instead of the letters.
_WORDS = {"correct": "A", "incorrect": "B", "invalid": "C"}


@dataclass(frozen=True)
class LetterScore(Score):
    """A backend's answer to a letter prompt: P(A) as ``p_yes``, A as the label, and the letter it chose."""

    letter: str | None = None

    @property
    def invalid(self) -> bool:
        return self.letter == INVALID


def parse_letter(text: str) -> str | None:
    """A strict A/B/C reply: the letter alone (optionally bold, quoted, boxed or followed by punctuated text such as
    "- CORRECT"), after the last "Final Judgment:" when there is one (the release's CoT replies end so), or the word
    the release's prompt names it by (CORRECT, INCORRECT, INVALID). ``None`` when unparsable.

    >>> [parse_letter(t) for t in ["A", " b.", "**C**", "\\\\boxed{B}", "A - CORRECT", "<think>x</think>C"]]
    ['A', 'B', 'C', 'B', 'A', 'C']
    >>> parse_letter("Analysis step by step: (1) ... Final Judgment: \\\\boxed{C} - INCOMPLETE")
    'C'
    >>> [parse_letter(t) for t in ["CORRECT", "Incorrect.", "INVALID", "Final Judgment: A"]]
    ['A', 'B', 'C', 'A']
    >>> [parse_letter(t) for t in ["The answer is A", "ABC", "D", "", "a correct answer", "Answer: B"]]
    [None, None, None, None, None, None]
    """
    text = re.sub(r"(?s)^\s*<think>.*?</think>", "", str(text))
    text = text.rsplit("Final Judgment:", 1)[-1]
    text = re.sub(r"\\boxed\{\s*([A-Ca-c])\s*\}", r"\1", text).strip()
    edge_open, edge_close, rest = r"[\s*\"'`(\[]*", r"[\s*\"'`)\]]*", r"(?:[-.,;:!\n].*)?"
    match = re.fullmatch(f"{edge_open}([A-Ca-c]){edge_close}{rest}", text, re.DOTALL)
    if match:
        return match.group(1).upper()
    match = re.fullmatch(f"{edge_open}(correct|incorrect|invalid){edge_close}{rest}", text, re.IGNORECASE | re.DOTALL)
    return None if match is None else _WORDS[match.group(1).lower()]


def letter_score(masses: dict[str, float] | None, replied: str | None = None) -> LetterScore | None:
    """The score of one letter reply from the letters' probability masses (None: the backend has none) and the
    letter parsed from its text: P(A) normalised over A, B and C, and the replied letter, else the likeliest one.
    None when there is neither.

    >>> letter_score({"A": 0.2, "B": 0.2, "C": 0.6})
    LetterScore(p_yes=0.2, label=False, error=None, attempts=1, score=None, letter='C')
    >>> letter_score(None, "A")
    LetterScore(p_yes=None, label=True, error=None, attempts=1, score=None, letter='A')
    """
    total = sum(masses.values()) if masses else 0.0
    letter = replied or (max(LETTERS, key=masses.get) if total > 0 else None)
    if letter is None:
        return None
    return LetterScore(p_yes=masses[CORRECT] / total if total > 0 else None, label=letter == CORRECT, letter=letter)


def masses_from_logprobs(top_logprobs: list[dict]) -> dict[str, float]:
    """Each letter's probability mass among a served reply's first-token alternatives (``top_logprobs`` entries:
    ``{"token", "logprob"}``); spellings with spaces, quotes or bold markers count for their letter."""
    masses = dict.fromkeys(LETTERS, 0.0)
    for alt in top_logprobs:
        token = str(alt.get("token", "")).strip().strip("*\"'`(")
        if token in masses and alt.get("logprob") is not None:
            masses[token] += math.exp(alt["logprob"])
    return masses


def letter_token_ids(tokenizer) -> list[list[int]]:
    """Per letter A, B, C, the token ids pooled into its next-token mass: its single-token spellings with and
    without a leading space (a chat reply starts with either, depending on the tokenizer)."""
    ids = []
    for letter in LETTERS:
        spellings = [tokenizer.encode(s, add_special_tokens=False) for s in (letter, f" {letter}")]
        ids.append(sorted({s[0] for s in spellings if len(s) == 1}))
    if not all(ids) or len({i for group in ids for i in group}) != sum(map(len, ids)):
        raise ValueError(f"judge tokenizer has no distinct single tokens for the letters A, B, C: {ids}")
    return ids
