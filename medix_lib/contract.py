"""The policy's output contract: a modality tag, a reasoning block, an answer block - and its parser.

MediX-R1 asks the policy for exactly::

    <CT_SCAN>
    <thinking> ... </thinking>
    <answer> ... </answer>

Tag names are configurable because the paper's figures say ``<think>`` while its release says ``<thinking>``.
The parser never raises: it reports what it found (and what is wrong, in ``issues``), so every reward can be a total
function of the string.

Rules, chosen so that a reward built on them cannot be gamed by layout tricks:

- Tags match byte for byte (ASCII ``<``, ``>``, exact tag name): a look-alike tag (``<аnswer>`` with a Cyrillic
  ``а``, fullwidth ``＜answer＞``) is text, not a tag.
- The modality is the tag the completion *starts* with (whitespace aside), compared case-insensitively; a tag
  preceded by chatter ("Sure! <CT_SCAN>") is not a modality tag, and neither is one of several tags sprayed
  before the first block.
- An answer exists only inside a *closed* answer block. A missing or unclosed answer tag (a generation cut off by the
  token budget) means no answer: rewarding it would make running out of tokens free. When several answer blocks
  exist the last one is the answer (an early decoy does not count) and all of them are reported, so rewards can
  refuse a completion that hedges across blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

MODALITIES: tuple[str, ...] = (
    "X_RAY", "MICROSCOPY", "CLINICAL_PHOTOGRAPHY", "CT_SCAN", "GRAPHICS", "ANGIOGRAPHY", "PET_SCAN", "ULTRASOUND",
    "MRI_SCAN", "FUNDUS_PHOTOGRAPHY", "OCT_SCAN", "ENDOSCOPY", "MAMMOGRAPHY", "FLUOROSCOPY", "OTHER", "SPECT",
)


def check_modality(tag: str) -> str:
    """Return ``tag`` upper-cased if it is one of the 16 modality tags, else raise naming the valid ones.

    >>> check_modality("ct_scan")
    'CT_SCAN'
    """
    upper = tag.strip().strip("<>").upper()
    if upper not in MODALITIES:
        raise ValueError(f"unknown modality tag {tag!r}; valid tags: {', '.join(MODALITIES)}")
    return upper


@dataclass(frozen=True)
class ParsedCompletion:
    """What the parser found in one completion. ``None`` means the part is absent."""

    modality: str | None  # name of the leading <TAG>, as written (case kept); None if the text starts otherwise
    reasoning: str | None  # content of the first closed reasoning block, stripped
    answers: tuple[str, ...]  # contents of every closed answer block, in order, stripped
    well_formed: bool  # known modality tag, one reasoning block, one answer block, nothing else
    issues: tuple[str, ...]  # why it is not well formed (empty when it is); stable names, see OutputContract.parse

    @property
    def answer(self) -> str | None:
        """The final answer: the last closed answer block, or None when there is none."""
        return self.answers[-1] if self.answers else None


@dataclass(frozen=True)
class OutputContract:
    """Tag names of the output format, the system prompt that asks for it, and its parser."""

    reasoning_tag: str = "thinking"
    answer_tag: str = "answer"

    def __post_init__(self):
        for name in (self.reasoning_tag, self.answer_tag):
            if not re.fullmatch(r"[A-Za-z][\w-]*", name):
                raise ValueError(f"tag name {name!r} must be a plain identifier such as 'thinking' or 'answer'")
        if self.reasoning_tag == self.answer_tag:
            raise ValueError("reasoning_tag and answer_tag must differ")

    def system_prompt(self) -> str:
        r, a = self.reasoning_tag, self.answer_tag
        # Kept short on purpose: on CPU every prompt token is paid for in every rollout and every gradient step.
        return (
            f"You are a medical expert. Reply in exactly three parts: the imaging modality tag, e.g. <CT_SCAN>, then "
            f"your reasoning in <{r}>...</{r}>, then a short final answer in <{a}>...</{a}>. Modality tags: "
            f"{' '.join(MODALITIES)} (OTHER when there is no image)."
        )

    def format_reference(self, modality: str, reasoning: str, answer: str) -> str:
        """A completion that satisfies the contract exactly (used for SFT warm-up rows and tests).

        >>> print(OutputContract().format_reference("X_RAY", "Opacity in the right lower lobe.", "pneumonia"))
        <X_RAY>
        <thinking>Opacity in the right lower lobe.</thinking>
        <answer>pneumonia</answer>
        """
        r, a = self.reasoning_tag, self.answer_tag
        return f"<{modality}>\n<{r}>{reasoning}</{r}>\n<{a}>{answer}</{a}>"

    @cached_property
    def _patterns(self) -> dict[str, re.Pattern]:
        r, a = re.escape(self.reasoning_tag), re.escape(self.answer_tag)
        # Linear-time patterns only; blocks are found with str.find (a lazy ``<a>(.*?)</a>`` regex is quadratic on
        # many unclosed tags, which a policy can emit).
        return {
            "lead": re.compile(r"\s*<([A-Za-z_]+)>"),
            "any_tag": re.compile(r"<[A-Za-z_]+>"),
            "r_open": re.compile(rf"<{r}>"), "r_close": re.compile(rf"</{r}>"),
            "a_open": re.compile(rf"<{a}>"), "a_close": re.compile(rf"</{a}>"),
            "shape": re.compile(rf"\s*<[A-Za-z_]+>\s*<{r}>.*</{r}>\s*<{a}>.*</{a}>\s*", re.S),
        }

    def parse(self, text: str) -> ParsedCompletion:
        """Split ``text`` into its contract parts; never raises.

        ``issues`` names what breaks the format: ``no_modality_tag``, ``multiple_modality_tags``, ``unknown_modality``,
        ``no_reasoning_block``, ``multiple_reasoning_blocks``, ``no_answer_block``, ``unclosed_answer``,
        ``multiple_answer_blocks``, ``text_outside_blocks`` (anything besides whitespace around or between the three
        parts, or a wrong order).

        >>> c = OutputContract()
        >>> p = c.parse("<MRI_SCAN>\\n<thinking>T2 bright.</thinking>\\n<answer>T2: hyperintense</answer>")
        >>> (p.modality, p.answer, p.well_formed)
        ('MRI_SCAN', 'T2: hyperintense', True)
        >>> p = c.parse("<MRI_SCAN><thinking>cut off by the token budget... <answer>T2")
        >>> (p.answer, p.issues)
        (None, ('no_reasoning_block', 'unclosed_answer'))
        """
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        pat = self._patterns
        lead = pat["lead"].match(text)
        modality = lead.group(1) if lead and lead.group(1) not in (self.reasoning_tag, self.answer_tag) else None
        first_block = min((m.start() for m in (pat["r_open"].search(text), pat["a_open"].search(text)) if m),
                          default=len(text))
        # Several tags before the first block is spraying candidates (e.g. all 16 modalities): no modality.
        sprayed = len(pat["any_tag"].findall(text, 0, first_block)) > 1
        reasoning = blocks(text, self.reasoning_tag)
        answers = tuple(a.strip() for a in blocks(text, self.answer_tag))
        counts = {k: len(pat[k].findall(text)) for k in ("r_open", "r_close", "a_open", "a_close")}

        issues = []
        if sprayed:
            modality = None
            issues.append("multiple_modality_tags")
        elif modality is None:
            issues.append("no_modality_tag")
        elif modality.upper() not in MODALITIES:
            issues.append("unknown_modality")
        if not reasoning:
            issues.append("no_reasoning_block")
        elif counts["r_open"] > 1 or counts["r_close"] > 1:
            issues.append("multiple_reasoning_blocks")
        if counts["a_open"] > counts["a_close"]:
            issues.append("unclosed_answer")
        elif not answers:
            issues.append("no_answer_block")
        if len(answers) > 1:
            issues.append("multiple_answer_blocks")
        if not issues and not pat["shape"].fullmatch(text):
            issues.append("text_outside_blocks")
        return ParsedCompletion(
            modality=modality,
            reasoning=reasoning[0].strip() if reasoning else None,
            answers=answers if "unclosed_answer" not in issues else (),
            well_formed=not issues,
            issues=tuple(issues),
        )


def blocks(text: str, tag: str) -> list[str]:
    """Contents of the closed ``<tag>...</tag>`` blocks, left to right, non-nested; linear in ``len(text)``."""
    opening, closing = f"<{tag}>", f"</{tag}>"
    found, pos = [], 0
    while (start := text.find(opening, pos)) != -1:
        end = text.find(closing, start + len(opening))
        if end == -1:
            break
        found.append(text[start + len(opening):end])
        pos = end + len(closing)
    return found


def completion_text(completion) -> str:
    """The generated text from a TRL completion: a string, or a list of chat messages (last assistant content).

    >>> completion_text([{"role": "assistant", "content": "<answer>x</answer>"}])
    '<answer>x</answer>'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "") if isinstance(completion[-1], dict) else completion[-1]
        if isinstance(content, list):  # multimodal message: a list of typed parts
            return "".join(part.get("text") or "" for part in content if isinstance(part, dict))
        return content if isinstance(content, str) else str(content)
    return "" if completion is None else str(completion)
