"""Confidence intervals and rule-based answer metrics: what a report puts beside the judge's accuracy."""

from __future__ import annotations

import re

import numpy as np

from medix_lib.text import normalise


def bootstrap_ci(values, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean.

    >>> bootstrap_ci([1, 1, 1, 1], 200, 0)
    (1.0, 1.0)
    >>> low, high = bootstrap_ci([0, 1] * 50, 2000, 0)
    >>> 0.39 < low < 0.5 < high < 0.61
    True
    """
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_bootstrap(a, b, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean of ``b - a`` over paired items (the same items scored under two models) with a bootstrap interval that
    resamples items, keeping each pair together.

    >>> r = paired_bootstrap([0, 0, 1, 0] * 10, [1, 0, 1, 1] * 10, 2000, 0)
    >>> r["n"], round(r["diff"], 2), r["ci_low"] > 0
    (40, 0.5, True)
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.shape} vs {b.shape}")
    diff = b - a
    low, high = bootstrap_ci(diff, n_boot, seed, level)
    return {"n": int(len(diff)), "diff": float(diff.mean()) if len(diff) else float("nan"),
            "ci_low": low, "ci_high": high}


def _words(text: str) -> list[str]:
    """Normalised words without articles, as SQuAD's exact match and F1 compare them."""
    return [w for w in normalise(text).split() if w not in ("a", "an", "the")]


def bootstrap_difference(a, b, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean of ``b`` minus mean of ``a`` for two independent samples (e.g. the completions of a run's first and last
    quarter of steps), with a bootstrap interval that resamples each sample on its own.

    >>> r = bootstrap_difference([0.1, 0.2, 0.1, 0.2] * 10, [0.5, 0.6, 0.5, 0.6] * 10, 2000, 0)
    >>> round(r["diff"], 2), r["ci_low"] > 0.3, (r["n_a"], r["n_b"])
    (0.4, True, (40, 40))
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        return {"n_a": int(len(a)), "n_b": int(len(b)), "diff": float("nan"), "ci_low": float("nan"),
                "ci_high": float("nan")}
    rng = np.random.default_rng(seed)
    draws = (b[rng.integers(0, len(b), size=(n_boot, len(b)))].mean(axis=1)
             - a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(axis=1))
    alpha = (1 - level) / 2
    return {"n_a": int(len(a)), "n_b": int(len(b)), "diff": float(b.mean() - a.mean()),
            "ci_low": float(np.quantile(draws, alpha)), "ci_high": float(np.quantile(draws, 1 - alpha))}


def exact_match(answer: str, reference: str) -> float:
    """1 when the normalised answer (articles aside) equals the normalised reference.

    >>> exact_match("The pneumonia.", "pneumonia"), exact_match("lobar pneumonia", "pneumonia")
    (1.0, 0.0)
    """
    return float(bool(_words(answer)) and _words(answer) == _words(reference))


def token_f1(answer: str, reference: str) -> float:
    """SQuAD-style token F1 of the normalised answer against the normalised reference (articles removed).

    >>> round(token_f1("left lower lobe pneumonia", "pneumonia of the left lower lobe"), 3)
    0.889
    """
    a, r = _words(answer), _words(reference)
    if not a or not r:
        return float(a == r)
    common = sum(min(a.count(t), r.count(t)) for t in set(a))
    if not common:
        return 0.0
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


_LETTER = re.compile(r"^\s*(?:\(?([A-J])\)|([A-J])[.:)]|(?:option|answer|choice)\s*:?\s*\(?([A-J])\b|([A-J])$)",
                     re.IGNORECASE)


def chosen_option(answer: str, choices: list[str]) -> int | None:
    """The option an answer picks: a leading option letter ("B.", "(b)", "Answer: B", "B"), else the one option whose
    text it equals once normalised; None when it picks none or several.

    >>> choices = ["Ovary", "Ampulla", "Isthmus", "Cervix"]
    >>> chosen_option("B. Ampulla", choices), chosen_option("the ampulla", choices), chosen_option("tube", choices)
    (1, 1, None)
    """
    match = _LETTER.match(answer)
    if match:
        index = ord(next(g for g in match.groups() if g).upper()) - ord("A")
        return index if index < len(choices) else None
    return _option_by_text(answer, choices)


def _option_by_text(answer: str, choices: list[str]) -> int | None:
    target = normalise(re.sub(r"^(the|a|an)\s+", "", answer.strip(), flags=re.IGNORECASE))
    hits = [i for i, c in enumerate(choices) if normalise(c) == target]
    return hits[0] if len(hits) == 1 else None


_BARE_LETTER = re.compile(r"^\s*(?:(?:option|answer|choice)\s*:?\s*)?\(?([A-J])\)?[.:)]?\s*$", re.IGNORECASE)
_LETTER_THEN_TEXT = re.compile(r"^\s*(?:(?:option|answer|choice)\s*:?\s*)?\(?([A-J])[.:)]\s*(.+)$", re.IGNORECASE)


def named_option(answer: str, choices: list[str]) -> int | None:
    """The option an answer unmistakably names, for scoring it: a letter alone ("B", "(b)", "Option B", "Answer:
    B."), a capital letter with that option's own text ("B. Ampulla"), or the option's text alone; None otherwise,
    also where a letter comes with another option's text ("B. Cervix") or starts a sentence ("Answer: a lesion").

    >>> choices = ["Ovary", "Ampulla", "Isthmus", "Cervix"]
    >>> [named_option(a, choices) for a in ["B", "option b", "B. Ampulla", "the ampulla", "B. Cervix", "A lesion"]]
    [1, 1, 1, 1, None, None]
    """
    bare = _BARE_LETTER.match(answer)
    if bare:
        index = ord(bare.group(1).upper()) - ord("A")
        return index if index < len(choices) else None
    with_text = _LETTER_THEN_TEXT.match(answer)
    if with_text:
        index = ord(with_text.group(1).upper()) - ord("A")
        same = index < len(choices) and normalise(with_text.group(2)) == normalise(choices[index])
        return index if same else None
    return _option_by_text(answer, choices)
