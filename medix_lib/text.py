"""Text keys shared by every stage: one normaliser (duplicates, leakage, exact-match answers, gold-pair keys) and one
rule for lower-casing a term's first letter."""

from __future__ import annotations

import re
import unicodedata


def normalise(text: str) -> str:
    """Case-, accent-, punctuation- and whitespace-insensitive form of a text.

    Letters of every script survive (an ASCII-only key would map every Chinese question to the same empty key).

    >>> normalise("  Sjögren   Syndrome! ") == normalise("sjogren syndrome")
    True
    >>> normalise("T2_weighted, MRI"), normalise("肺炎")
    ('t2 weighted mri', '肺炎')
    """
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def lower_first(text: str) -> str:
    """Lower-case the first letter of a capitalised first word; leave abbreviations and codes as they are.

    >>> [lower_first(t) for t in ("Atrial flutter", "DVT of the leg", "X-linked inheritance", "T2 hyperintense",
    ...                           "McArdle disease", "pH below 7")]
    ['atrial flutter', 'DVT of the leg', 'X-linked inheritance', 'T2 hyperintense', 'McArdle disease', 'pH below 7']
    """
    first = text.split(" ", 1)[0]
    capitalised = len(first) > 1 and first[0].isupper() and first[1].islower() and not any(
        ch.isupper() for ch in first[1:])
    return text[:1].lower() + text[1:] if capitalised else text
