"""The reward registry: names -> reward functions built from a stage's settings, and scoring a JSONL file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from medix_lib.rewards.components import (COMPONENTS, MEDIX_WEIGHTS, AccuracyReward, CompositeReward, FormatReward,
                                          ModalityReward, SemanticReward, score_components)
from medix_lib.rewards.guards import explain

def weight(settings, name: str) -> float:
    return float(settings.reward_weights.get(name, MEDIX_WEIGHTS[name]))


def make(settings, name: str) -> Callable:
    """One reward function of the registry, configured by a stage's settings (``params.RewardSettings``)."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; valid: {', '.join(REWARDS)}")
    return REWARDS[name](settings, settings.contract())


def build(settings) -> tuple[list, list[float]]:
    """The reward functions and their weights, in TRL's ``reward_funcs`` / ``reward_weights`` form."""
    if settings.rewards == ["composite"]:
        return [make(settings, "composite")], [1.0]
    return [make(settings, name) for name in settings.rewards], [weight(settings, name) for name in settings.rewards]


REWARDS: dict[str, Callable[..., Callable]] = {
    "accuracy": lambda s, c: AccuracyReward(s.judge(), c, s.answer_guards, answer_rules=s.answer_rules),
    "semantic": lambda s, c: SemanticReward(s.semantic_model, s.semantic_mode, s.semantic_threshold,
                                            s.semantic_floor, c, s.answer_guards, answer_rules=s.answer_rules),
    "modality": lambda s, c: ModalityReward(c),
    "format": lambda s, c: FormatReward(c),
    "composite": lambda s, c: CompositeReward([make(s, n) for n in COMPONENTS], [weight(s, n) for n in COMPONENTS]),
}


def score_file(settings, input_path: str | Path, output_path: str | Path) -> dict:
    """Score a JSONL of ``completion``, ``answer``, ``modality`` (and optional ``question``) rows; write each row with
    every component, ``composite``, ``format_issues`` and ``refused``. Returns the mean of each score."""
    rows = [json.loads(line) for line in Path(input_path).read_text().splitlines() if line.strip()]
    for i, row in enumerate(rows, 1):
        missing = [k for k in ("completion", "answer", "modality") if k not in row]
        if missing:
            raise ValueError(f"{input_path}: row {i} lacks {', '.join(missing)}")
    funcs, weights = build(settings)
    columns = {k: [row.get(k) for row in rows] for k in ("answer", "modality", "question")}
    completions = [row["completion"] for row in rows]
    table = score_components(funcs, weights, completions, **columns)
    notes = explain(completions, columns["answer"], columns["question"], settings.contract(), settings.answer_guards,
                    settings.answer_rules)
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    with open(output_path, "w") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps({**row, **{k: v[i] for k, v in table.items()}, **notes[i]}, ensure_ascii=False) + "\n")
    return {k: sum(x for x in v if x is not None) / max(1, sum(x is not None for x in v)) for k, v in table.items()}
