"""How well a judge agrees with gold-labelled answer pairs."""

from __future__ import annotations

from medix_lib.judge.core import Judge
from medix_lib.judge.protocol import JudgeItem

def meta_evaluate(judge: Judge, pairs: list[dict], progress: bool = False) -> dict:
    """How well a judge agrees with gold-labelled answer pairs (dicts with ``a`` = reference, ``b`` = prediction,
    ``label`` and ``pair_type``): accuracy, Cohen's kappa, AUC of P(YES), ROC points, the confusion matrix
    ``[[TN, FP], [FN, TP]]`` and per-pair-type accuracy. Failed verdicts are counted and left out of the metrics."""
    import numpy as np
    from sklearn.metrics import cohen_kappa_score, confusion_matrix, roc_auc_score, roc_curve

    verdicts = judge([JudgeItem(reference=p["a"], prediction=p["b"], question=p.get("question", "")) for p in pairs],
                     progress=progress)
    ok = [(p, v) for p, v in zip(pairs, verdicts) if v.label is not None]
    gold = np.array([bool(p["label"]) for p, _ in ok], dtype=bool)
    said = np.array([bool(v.label) for _, v in ok], dtype=bool)
    result = {"n": len(pairs), "scored": len(ok), "failures": len(pairs) - len(ok), **judge.describe(),
              "accuracy": float((gold == said).mean()) if ok else float("nan"),
              "cohen_kappa": float("nan"), "auc": float("nan"), "roc": None,
              "confusion": confusion_matrix(gold, said, labels=[False, True]).tolist(),
              "yes_rate": float(said.mean()) if ok else float("nan")}
    if ok and len(set(gold) | set(said)) > 1:
        result["cohen_kappa"] = float(cohen_kappa_score(gold, said))
    scores = [v.p_yes for _, v in ok]
    if len(set(gold)) == 2 and all(s is not None for s in scores):
        result["auc"] = float(roc_auc_score(gold, scores))
        fpr, tpr, _ = roc_curve(gold, scores)
        result["roc"] = {"fpr": [round(float(x), 4) for x in fpr], "tpr": [round(float(x), 4) for x in tpr]}
    per_type: dict[str, dict] = {}
    for p, v in zip(pairs, verdicts):
        entry = per_type.setdefault(p.get("pair_type", "all"), {"n": 0, "gold_yes": bool(p["label"]), "correct": 0,
                                                                "failures": 0, "p_yes": []})
        entry["n"] += 1
        if v.label is None:
            entry["failures"] += 1
        else:
            entry["correct"] += int(v.label == bool(p["label"]))
            if v.p_yes is not None:
                entry["p_yes"].append(v.p_yes)
    result["per_pair_type"] = {
        t: {"n": e["n"], "gold_yes": e["gold_yes"], "failures": e["failures"],
            "accuracy": e["correct"] / max(1, e["n"] - e["failures"]),
            "mean_p_yes": float(np.mean(e["p_yes"])) if e["p_yes"] else float("nan")}
        for t, e in per_type.items()}
    result["stats"] = judge.last_stats.to_dict()
    return result
