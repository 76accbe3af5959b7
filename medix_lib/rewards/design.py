"""Notebook 02's analyses of the composite reward: score sampled completions, score gold-labelled answer pairs,
calibrate the cosine threshold, relate the judge to the embedding, and run the reward-hacking probes.

Each function returns a table the notebook shows and the numbers its metrics keep; the notebook stays a sequence of
calls with prose between them.
"""

from __future__ import annotations

from medix_lib.contract import OutputContract
from medix_lib.rewards.components import AccuracyReward, calibrate_threshold, score_components
from medix_lib.rewards.guards import explain
from medix_lib.rewards import probes

ANSWER_COMPONENTS = ("accuracy", "semantic")


def completion_table(rows, sampled: list[list[str]], contract: OutputContract):
    """One row per completion: a known-good reference completion per question (``kind`` reference), then the
    sampled base-policy completions (``kind`` base), with the question's columns."""
    import pandas as pd

    table = []
    for row, completions in zip(rows, sampled):
        columns = {k: v for k, v in row.items() if k not in ("prompt", "images")}
        table.append({"kind": "reference", **columns,
                      "completion": contract.format_reference(row["modality"], "From the source.", row["answer"])})
        table += [{"kind": "base", **columns, "completion": c} for c in completions]
    return pd.DataFrame(table)


def score_table(funcs: list, weights: list[float], table, contract: OutputContract, guards: bool):
    """``table`` with every component, the composite, and per completion what the parser found (``format_issues``)
    and which rule refused its answer before any model saw it (``refused``)."""
    import pandas as pd

    columns = {c: table[c].tolist() for c in ("answer", "modality", "question")}
    scores = score_components(funcs, weights, table["completion"].tolist(), **columns)
    scored = table.assign(**scores)
    notes = pd.DataFrame(explain(scored["completion"].tolist(), columns["answer"], columns["question"], contract,
                                 guards), index=scored.index)
    return scored.join(notes)


def gold_table(funcs: list, weights: list[float], pairs: list, contract: OutputContract):
    """Gold pairs (``verifier.Pair``) scored as well-formed completions whose answer is one side (``b``) and whose
    reference is the other (``a``): every component, the composite and the embedding cosine where there is one."""
    import pandas as pd

    gold = pd.DataFrame([{"a": p.reference, "b": p.prediction, "label": p.label, "pair_type": p.kind}
                         for p in pairs])
    scores = score_components(funcs, weights, [contract.format_reference("OTHER", "Comparing.", b) for b in gold["b"]],
                              answer=gold["a"].tolist(), modality=["OTHER"] * len(gold))
    gold = gold.assign(**scores)
    semantic = next((f for f in funcs if f.__name__ == "semantic"), None)
    if semantic is not None:
        gold["cosine"] = semantic.similarities(gold["b"].tolist(), gold["a"].tolist())
    return gold


def calibrate_semantic(gold):
    """The cosine threshold that maximises Youden's J on the gold pairs (None without a semantic component)."""
    return calibrate_threshold(gold["cosine"].tolist(), gold["label"].tolist()) if "cosine" in gold else None


def judge_vs_embedding(scored, gold, semantic, contract: OutputContract) -> dict | None:
    """Per answer (completions that have one, and gold pairs): cosine to the reference, the accuracy reward, and the
    group it belongs to; with the Pearson correlation of the two. None unless both answer components are scored."""
    import pandas as pd

    if semantic is None or "accuracy" not in scored or "cosine" not in gold:
        return None
    answered = scored[scored["refused"].isna()]
    parsed = [contract.parse(c).answer for c in answered["completion"]]
    sims = semantic.similarities(parsed, answered["answer"].tolist()) + gold["cosine"].tolist()
    verdicts = answered["accuracy"].tolist() + gold["accuracy"].tolist()
    groups = [f"{kind} completion" for kind in answered["kind"]] + [f"gold {'YES' if y else 'NO'}"
                                                                    for y in gold["label"]]
    keep = [i for i, v in enumerate(verdicts) if v is not None]
    r = float(pd.Series([sims[i] for i in keep]).corr(pd.Series([verdicts[i] for i in keep])))
    return {"similarities": sims, "verdicts": verdicts, "groups": groups, "r": r}


def probe_report(funcs: list, weights: list[float], contract: OutputContract, guards: bool) -> dict:
    """The probe suite against these rewards and against the same rewards with a judge that says YES to everything
    (what the rules alone hold): rows, the per-probe table, and the violations of each."""
    import pandas as pd

    rows = probes.run(funcs, weights, contract)
    worst_funcs = [AccuracyReward(probes.SycophantJudge(), contract, guards, answer_rules=f.answer_rules)
                   if f.__name__ == "accuracy" else f for f in funcs]
    worst = probes.run(worst_funcs, weights, contract)
    names = [f.__name__ for f in funcs]
    table = pd.DataFrame(rows).groupby("probe", sort=False).agg(
        {**{n: "max" for n in [*names, "composite"]}, "composite_ceiling": "first", "enforced_by": "first"})
    table["composite_if_judge_says_yes"] = pd.DataFrame(worst).groupby("probe", sort=False)["composite"].max()
    return {"rows": rows, "table": table, "violations": probes.violations(rows),
            "violations_with_yes_judge": probes.violations(worst)}


def answer_rules_comparison(settings) -> dict:
    """The probe suite under this project's answer rules and under the release's (``answer_rules``), the rest of
    ``settings`` unchanged: per probe the highest composite each way, with this judge and with one that says YES to
    everything, beside the probe's ceiling; and per way the probes over their ceiling."""
    from dataclasses import replace

    import pandas as pd

    from medix_lib.rewards import registry
    from medix_lib.rewards.guards import ANSWER_RULES

    columns, over = {}, {}
    for rules in ANSWER_RULES:
        variant = replace(settings, answer_rules=rules)
        funcs, weights = registry.build(variant)
        report = probe_report(funcs, weights, variant.contract(), variant.answer_guards)
        columns[rules] = report["table"]["composite"]
        columns[f"{rules}_if_judge_says_yes"] = report["table"]["composite_if_judge_says_yes"]
        columns["ceiling"] = report["table"]["composite_ceiling"]
        over[rules] = sorted({v["probe"] for v in report["violations_with_yes_judge"]})
    return {"table": pd.DataFrame(columns), "over_ceiling_with_yes_judge": over}
