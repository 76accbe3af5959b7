"""The paper's evaluation protocol: how a benchmark row becomes a prompt, and what part of a response the judge sees.

No system prompt; temperature 0; MCQ-origin items get their options appended ("Choices: A. ..."), the reference is
the option text; the judge sees only the text after the last reasoning block; an answer that only restates the prompt
(the question, its options or the system prompt's instructions) is no answer and is never sent to the judge.
"""

from __future__ import annotations

import re

from medix_lib.contract import OutputContract
from medix_lib.data import format_choices, pictures
from medix_lib.text import normalise

_STOPWORDS = frozenset("""a an the of in on at to for with and or is are was were be been this that these those it its
which what who whom whose when where why how does do did can could should would will shall may might must your you
i we they he she his her their our my me us them as by from into than then there here not no yes if so""".split())


def question_text(row: dict, with_choices: bool) -> str:
    """The question as the protocol asks it: MCQ-origin rows with their options appended."""
    if with_choices and row.get("choices"):
        return f"{row['question']}\n{format_choices(row['choices'])}"
    return row["question"]


def prompt_messages(row: dict, contract: OutputContract, system_prompt: bool, with_choices: bool,
                    with_image: bool) -> list[dict]:
    """The chat prompt for one row. Contents are lists of typed parts for a vision-language policy (``with_image``:
    one image part per picture of the row, before the question), plain strings otherwise."""
    question = question_text(row, with_choices)
    messages = [{"role": "system", "content": contract.system_prompt()}] if system_prompt else []
    if with_image:
        messages = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in messages]
        parts = [{"type": "image"} for _ in pictures(row)] + [{"type": "text", "text": question}]
        return messages + [{"role": "user", "content": parts}]
    return messages + [{"role": "user", "content": question}]


def final_answer(text: str, contract: OutputContract) -> str:
    """The part of a response the judge sees: the answer block, else whatever follows the last reasoning block.

    >>> final_answer("<thinking>hmm</thinking> It is asthma.", OutputContract())
    'It is asthma.'
    """
    parsed = contract.parse(text)
    if parsed.answer is not None:
        return parsed.answer
    closing = f"</{contract.reasoning_tag}>"
    return text.rsplit(closing, 1)[-1].strip() if closing in text else text.strip()


def content_words(text: str) -> set[str]:
    return {w for w in normalise(text).split() if w not in _STOPWORDS}


def restates_prompt(answer: str, prompt_text: str) -> bool:
    """True when an answer says nothing the prompt did not: it has three or more content words, every one of them is
    in the prompt (question, options, system prompt), and it holds none of the options (an answer built on an
    option, "D. Cross-linking of DNA" or "it is cross-linking of DNA", picks that option). Shorter answers may pick
    words of the question ("left kidney" to "the left or the right kidney?") and are judged.

    >>> restates_prompt("Reply with the imaging modality tag, then your reasoning.", "Reply in three parts: the "
    ...                 "imaging modality tag, your reasoning, a short answer. What is the diagnosis?")
    True
    >>> restates_prompt("Pneumonia", "What is the diagnosis? Choices: A. pneumonia B. asthma")
    False
    >>> restates_prompt("The mechanism is cross-linking of DNA", "What is the mechanism of this drug? "
    ...                 "Choices: A. Cross-linking of DNA B. Inhibition of tubulin")
    False
    >>> restates_prompt("left kidney", "Is the mass in the left or the right kidney?")
    False
    """
    words = content_words(answer)
    if len(words) < 3:
        return False
    options = re.findall(r"\b[A-J]\. ([^\n]+?)(?= [A-J]\. |$)", prompt_text)
    if any(normalise(o) and normalise(o) in normalise(answer) for o in options):  # an answer built on an option
        return False
    return words <= content_words(prompt_text)
