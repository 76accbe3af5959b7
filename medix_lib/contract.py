"""The policy's output contract: a modality tag, a reasoning block, an answer block - and its parser.

MediX-R1 asks the policy for exactly::

    <CT_SCAN>
    <thinking> ... </thinking>
    <answer> ... </answer>

Tag names are configurable because the paper's figures say ``<think>`` while its release says ``<thinking>``.
The parser never raises: it reports what it found, so every reward can be a total function of the string.
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

    modality: str | None  # text before the reasoning tag, stripped of <>; None if there was no text
    reasoning: str | None
    answer: str | None
    well_formed: bool  # tag line, reasoning block, answer block and nothing else


@dataclass(frozen=True)
class OutputContract:
    """Tag names of the output format and the system prompt that asks for it."""

    reasoning_tag: str = "thinking"
    answer_tag: str = "answer"

    def system_prompt(self) -> str:
        r, a = self.reasoning_tag, self.answer_tag
        return (
            "You are a medical expert. First state the imaging modality of the question as one tag alone on the first "
            f"line, chosen from: {', '.join('<' + m + '>' for m in MODALITIES)} (use <OTHER> for text-only questions). "
            f"Then reason step by step inside <{r}>...</{r}>. Then give the final answer, short and free-text, inside "
            f"<{a}>...</{a}>. Write nothing outside these three parts."
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
        return {
            "reasoning": re.compile(rf"<{r}>(.*?)</{r}>", re.S),
            "answer": re.compile(rf"<{a}>(.*?)</{a}>", re.S),
            "reasoning_open": re.compile(rf"<{r}>"),
            "strict": re.compile(rf"\s*<{r}>.*?</{r}>\s*<{a}>.*?</{a}>\s*", re.S),
        }

    def parse(self, text: str) -> ParsedCompletion:
        """Split ``text`` into its contract parts; never raises.

        The answer is the *last* answer block, so a policy cannot plant an early decoy answer. If the answer tag is
        missing the answer is ``None`` (rewards treat that as wrong), never the raw text.

        >>> c = OutputContract()
        >>> p = c.parse("<MRI_SCAN>\\n<thinking>T2 bright.</thinking>\\n<answer>T2: hyperintense</answer>")
        >>> (p.modality, p.answer, p.well_formed)
        ('MRI_SCAN', 'T2: hyperintense', True)
        >>> c.parse("just pneumonia").answer is None
        True
        """
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        pat = self._patterns
        opening = pat["reasoning_open"].search(text)
        head = text[: opening.start()] if opening else ""
        modality = head.strip().strip("<>").strip() or None
        reasoning_blocks = pat["reasoning"].findall(text)
        answer_blocks = pat["answer"].findall(text)
        tail = text[opening.start():] if opening else ""
        well_formed = bool(
            opening
            and modality is not None
            and re.fullmatch(r"\s*<[A-Za-z_]+>\s*", head) is not None
            and len(reasoning_blocks) == 1
            and len(answer_blocks) == 1
            and pat["strict"].fullmatch(tail) is not None
        )
        return ParsedCompletion(
            modality=modality,
            reasoning=reasoning_blocks[0].strip() if reasoning_blocks else None,
            answer=answer_blocks[-1].strip() if answer_blocks else None,
            well_formed=well_formed,
        )


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
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return content if isinstance(content, str) else str(content)
    return "" if completion is None else str(completion)
