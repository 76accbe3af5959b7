"""The shipped judge as an ensemble: verifiers trained by one recipe on different bases (SmolLM2-135M, Gemma-3-270M),
their YES-NO margins averaged, with the threshold chosen on the validation split they share.

Why: seeds of one base make the same mistakes (an ensemble of SmolLM2 seeds moved clinical AUC by 0.005), while a
second base errs elsewhere (Gemma is better on imaging vocabulary and cross-negation, worse on drugs and negation), so
the mean of their log-odds ranks clinical pairs better than either alone. What ships is a record, no weights: the
members' hashes (a retrained member invalidates the threshold, and loading says so), the rule, the threshold and
the validation scores it was chosen on.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from medix_lib import artifacts, judge, models
from medix_lib.verifier.pairs import PAIRS_VERSION, PairConfig, build_pairs, clinical_pairs, nonsense_pairs
from medix_lib.verifier.trainer import JUDGE, PRESET_ARTIFACTS, _auc, best_threshold, clinical_summary

FORMAT = "medix-ensemble-v1"
COMBINATION = "mean YES-NO margin"


MAX_MEANINGLESS_YES = 0.0  # meaningless answers the judge may pay: none of those it is calibrated on


def guarded_threshold(youden: float, meaningless: list[float], budget: float = MAX_MEANINGLESS_YES) -> float:
    """Youden's threshold, raised where needed until at most ``budget`` of the meaningless answers' P(YES) reach it:
    a judge that pays for nothing is gamed under RL, whatever its balanced accuracy.

    >>> round(guarded_threshold(0.25, [0.1, 0.2, 0.3, 0.31], budget=0.25), 4)  # one of four may pass: 0.31
    0.3
    >>> guarded_threshold(0.5, [0.1, 0.3])
    0.5
    """
    allowed = int(budget * len(meaningless))  # this many may still be paid
    ranked = sorted(meaningless, reverse=True)
    return youden if len(ranked) <= allowed or ranked[allowed] < youden else ranked[allowed] + 1e-6


def combine(members: tuple[str, ...] = tuple(PRESET_ARTIFACTS.values()), output: Path | None = None,
            progress: bool = True) -> dict:
    """Write the ensemble record of ``members`` (verifier aliases or artifact folders) to ``output`` (default: the
    shipped judge's folder) and return it. The members must share their validation split (same pair config), so
    the threshold is chosen on pairs none of them trained on."""
    recs = {m: models.artifact_record(m) for m in members}
    missing = [m for m, r in recs.items() if not r]
    if missing:
        raise ValueError(f"not trained verifiers (no record): {', '.join(missing)}")
    splits_of = {m: (json.dumps(r["config"]["pairs"], sort_keys=True), r["config"]["val_pairs"],
                     r["validation_pairs_hash"]) for m, r in recs.items()}
    if len(set(splits_of.values())) > 1:
        raise ValueError(f"members trained on different pair splits ({', '.join(recs)}): a threshold chosen on one "
                         f"member's validation pairs would not be held out for another")
    first = recs[members[0]]
    pair_config = first["config"]["pairs"]
    splits = build_pairs(PairConfig(seed=pair_config["seed"], fractions=tuple(pair_config["fractions"]),
                                    per_type=tuple(pair_config["per_type"])))
    val, clinical = splits["validation"][:first["config"]["val_pairs"]], clinical_pairs()
    # meaningless answers of the validation share of the pools against validation concepts: never trained on, never
    # in the test sets the meta-evaluation reports
    names = sorted({p.reference for p in splits["validation"] if p.kind in ("synonym", "sibling", "random")})
    meaningless = nonsense_pairs(names, split="validation")

    def mean_p_yes(pairs):
        prompts = [judge.TEMPLATES[judge.REWARD_TEMPLATE].messages(p.item(), False) for p in pairs]
        per_member = [judge.TransformersJudge(m, dtype="float32").log_odds(prompts, progress) for m in members]
        return [1 / (1 + math.exp(-sum(v) / len(v))) for v in zip(*per_member)]

    val_scores, clinical_scores, meaningless_scores = mean_p_yes(val), mean_p_yes(clinical), mean_p_yes(meaningless)
    labels = [p.label for p in val]
    threshold = guarded_threshold(best_threshold(labels, val_scores), meaningless_scores)
    identity = {"members": {m: r["sha256"] for m, r in recs.items()}, "combination": COMBINATION,
                "threshold": threshold}
    record = {
        # what the results store keys verdicts by: a new member's weights or a new threshold is a new judge
        "sha256": hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest(),
        "format": FORMAT, "name": JUDGE, "combination": COMBINATION,
        "members": {m: r["sha256"] for m, r in recs.items()},
        "member_bases": {m: r["base_model"] for m, r in recs.items()},
        "config": {"pairs": pair_config, "val_pairs": first["config"]["val_pairs"]},
        "pairs_version": first.get("pairs_version", PAIRS_VERSION),
        "validation_pairs_hash": first["validation_pairs_hash"], "threshold": threshold,
        "validation": {"n": len(val), "auc": _auc(labels, val_scores), "threshold": threshold,
                       "youden_threshold": best_threshold(labels, val_scores),
                       "meaningless_n": len(meaningless),
                       "meaningless_yes_rate": sum(x >= threshold for x in meaningless_scores) / len(meaningless)},
        "member_validation_auc": {m: r["validation"]["auc"] for m, r in recs.items()},
        "clinical_heldout": clinical_summary(clinical, clinical_scores),
        "member_clinical_auc": {m: r["clinical_heldout"]["auc"] for m, r in recs.items()},
        "code_commit": artifacts.git_commit(),
    }
    target = Path(output) if output else artifacts.directory(JUDGE)
    target.mkdir(parents=True, exist_ok=True)
    (target / "validation.jsonl").write_text("".join(
        json.dumps({"reference": p.reference, "prediction": p.prediction, "label": p.label, "kind": p.kind,
                    "p_yes": round(x, 6)}) + "\n" for p, x in zip(val, val_scores)))
    (target / artifacts.RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return record
