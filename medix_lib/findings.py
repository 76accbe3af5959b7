""""What this run showed": each notebook's closing sentences, written from the metrics that run computed.

Nothing here is typed by hand about a result: every number comes from the stage's ``metrics.json`` (the dict
``cfg.write_metrics`` returns), and every judgement ("rose beyond its noise", "not resolved") from a confidence
interval in it. Each stage also says what its run cannot show, so a smoke run's 12 steps are not read as an effect.
"""

from __future__ import annotations


def signed(x: float, places: int = 3) -> str:
    """
    >>> signed(0.0946), signed(-0.2069, 2), signed(0.0)
    ('+0.095', '-0.21', '0.000')
    """
    text = f"{x:+.{places}f}"
    return text[1:] if float(text) == 0 else text


def interval(d: dict, places: int = 3) -> str:
    """A difference with its 95% interval and sizes, as the reports print it.

    >>> interval({"diff": 0.0946, "ci_low": 0.0376, "ci_high": 0.1511, "n_a": 320, "n_b": 320})
    '+0.095 [+0.038, +0.151] (n=320/320)'
    """
    n = f"{d['n_a']}/{d['n_b']}" if "n_a" in d else d.get("n")
    return (f"{signed(d['diff'], places)} [{signed(d['ci_low'], places)}, {signed(d['ci_high'], places)}]"
            + (f" (n={n})" if n is not None else ""))


def verdict(d: dict, up: str = "rose", down: str = "fell") -> str:
    """What an interval allows one to say.

    >>> verdict({"ci_low": 0.01, "ci_high": 0.2}), verdict({"ci_low": -0.1, "ci_high": 0.2})
    ('rose beyond its noise', 'stayed within its noise (the interval spans 0)')
    """
    if d["ci_low"] > 0:
        return f"{up} beyond its noise"
    if d["ci_high"] < 0:
        return f"{down} beyond its noise"
    return "stayed within its noise (the interval spans 0)"


# what each image control asks in place of the picture (medix_lib.evaluation.image_control)
CONTROL_WORDS = {"blank": "a mid-grey picture", "shuffled": "a test picture of another source"}


def picture_verdict(d: dict) -> str:
    """Whether the picture measurably matters, from the interval of accuracy with minus without it.

    >>> picture_verdict({"ci_low": 0.05, "ci_high": 0.3}), picture_verdict({"ci_low": -0.1, "ci_high": 0.2})
    ('the picture measurably helps', 'not measurably different without the picture (the interval spans 0)')
    """
    if d["ci_low"] > 0:
        return "the picture measurably helps"
    if d["ci_high"] < 0:
        return "measurably better without the picture"
    return "not measurably different without the picture (the interval spans 0)"


def picture_reliance(reliance: dict) -> list[str]:
    """A sentence per image control of an evaluation report's ``picture_reliance``: each candidate's accuracy with
    and without the picture (image tasks pooled) and whether the difference is resolved."""
    return [f"The image questions asked again with {CONTROL_WORDS[control]} in place of each picture "
            f"({control} control), judge accuracy with vs without the picture and the paired difference: "
            + "; ".join(f"{name} {d['with']:.2f} vs {d['without']:.2f}, {interval(d, 2)}: {picture_verdict(d)}"
                        for name, d in entry["pooled"].items()) + "."
            for control, entry in reliance.items()]


def _01(m: dict) -> list[str]:
    splits, synthesis = m["splits"], m["synthesis"]
    return [
        f"{m['rows']} rows were built in {m['build_seconds']} s: {splits['train']['rows']} for training and "
        f"{splits['test']['rows']} held out; {splits['train']['with_image']} and {splits['test']['with_image']} of "
        f"them ask about a picture ({synthesis.get('pictures/train', 0)} training pictures, "
        f"{synthesis.get('pictures/test', 0)} test pictures, split whole by source file).",
        f"The leakage check found {m['leakage']['n_leaks']} shared questions, answers or pictures between the splits; "
        f"{synthesis.get('duplicates_removed', 0)} duplicates were removed.",
        f"Reference answers are short ({m['answer_words']['median']:g} words at the median, "
        f"{m['answer_words']['p90']:g} at the 90th percentile), which is what the judge was validated on.",
        f"What it cannot show: {len(m['by_modality'])} modalities from "
        f"{synthesis.get('pictures/train', 0) + synthesis.get('pictures/test', 0)} pictures are a small, real sample, "
        f"not the paper's 51K rows; the modalities of the test pictures are "
        f"{', '.join(k for k, v in m['by_modality'].items() if v.get('test') and k != 'OTHER')}.",
    ]


def _02(m: dict) -> list[str]:
    kinds, out = m["mean_by_kind"], []
    out.append(f"Composite reward: reference completions {kinds['reference']['composite']:.3f}, base-policy "
               f"completions {kinds['base']['composite']:.3f} (n={m['n_completions']}; base answers refused before any "
               f"model: {', '.join(f'{k} {v}' for k, v in m['refused_base'].items()) or 'none'}).")
    judge, gold = m.get("judge_meta"), m["gold_pairs"]
    if judge:
        no = gold["mean_by_label"].get("False", {})
        out.append(f"On {judge['n']} held-out gold pairs the judge agrees with the label on {judge['accuracy']:.1%} "
                   f"(AUC {judge['auc']:.3f}, kappa {judge['cohen_kappa']:.2f}); the accuracy reward pays "
                   f"{no.get('accuracy', float('nan')):.3f} on average on NO pairs.")
    cal = m.get("semantic_calibration")
    if cal:
        out.append(f"Cosine similarity separates the same pairs with AUC {cal['auc']:.2f}; its best threshold is "
                   f"{cal['threshold']:.2f} (false positive rate {cal['fpr']:.2f} there), so the embedding reward is "
                   f"{'close to chance' if cal['auc'] < 0.7 else 'informative'} on these near misses.")
    over = sorted({v["probe"] for v in m["probe_violations"]})
    by_rule = sorted({v["probe"] for v in m["probe_violations"] if v.get("enforced_by") != "model"})
    enforced = ("each enforced by a model, not a rule." if not by_rule else
                f"of them held by the rules, so a defect of the rules: {', '.join(by_rule)}.")
    out.append(f"{len(m['probe_max_composite'])} reward-hacking probes: "
               + (f"{len(over)} earned more than their ceiling ({', '.join(over)}), {enforced}" if over
                  else "none earned more than its ceiling."))
    judged = (m.get("verifier") or {}).get("with_terminology") or {}
    if "nonsense_yes_rate" in judged:
        n = m["verifier"]["n"]
        out.append(f"The judge as used (verifier and rules) says YES to {judged['nonsense_yes_rate']:.1%} of "
                   f"{n['nonsense']} held-out meaningless answers, {judged['instruction_yes_rate']:.1%} of "
                   f"{n['instruction']} instructions to the judge and {judged['wrong_yes_rate']:.1%} of {n['wrong']} "
                   f"real answers to another question; clinical AUC {judged['clinical_auc']:.3f} (n={n['clinical']}).")
    out.append("What it cannot show: how the rewards behave with the paper's judge and embedder; the gold pairs are "
               "built from ontologies, and the hand-written clinical pairs (verifier section) are the closer test.")
    return out


def _03(m: dict) -> list[str]:
    warm, effect = m["warmup"], m["learning_effect"]
    curve = warm["format_curve"]
    out = [f"Warm-up: {warm['steps']} steps ({warm['seconds']:.0f} s) took the held-out format reward from "
           f"{curve[0][1]:.2f} to {curve[-1][1]:.2f}" + ("." if warm["reached"] else ", short of its target."),
           f"GRPO: {m['steps']} steps in {m['seconds']:.0f} s ({m['seconds_per_step']:.1f} s a step on "
           f"{m['device']}, {m['torch_threads']} threads; generation {m['time_seconds']['generation']:.0f} s, update "
           f"{m['time_seconds']['update']:.0f} s, reward {m['time_seconds']['reward']:.0f} s)."]
    everything = effect["all"]
    out.append(f"The composite reward of GRPO's own completions, last vs first quarter of the steps, "
               f"{verdict(everything)}: {interval(everything)}"
               + "".join(f"; {kind} prompts {interval(effect[kind])}" for kind in ("image", "text")
                         if effect.get(kind, {}).get("n_a"))
               + ".")
    means = m["component_means"]
    out.append("Mean components over the run: " + ", ".join(f"{k} {v:.2f}" for k, v in means.items()) + ".")
    if everything["ci_low"] <= 0 <= everything["ci_high"]:
        out.append(f"What it cannot show: with {m['steps']} steps ({everything['n_a']} completions per quarter) a "
                   f"change of the size RL makes here is not resolved; this run shows the mechanics, not an effect "
                   f"(the cpu_long profile trains long enough for that).")
    else:
        out.append("What it cannot show: rewards on its own rollouts say what the policy learned to be paid for; "
                   "whether that holds on rows it never saw is notebook 04's question.")
    return out


def _04(m: dict) -> list[str]:
    out = []
    for task, by_model in m["tasks"].items():
        scores = ", ".join(f"{name} {s['accuracy']:.2f}" for name, s in by_model.items() if s.get("n"))
        n = max((s.get("n", 0) for s in by_model.values()), default=0)
        out.append(f"{task} (n={n}): judge accuracy {scores}.")
    for pair, tasks in m.get("comparisons", {}).items():
        for task, d in tasks.items():
            out.append(f"{pair} on {task}: {interval(d, 2)}, {verdict(d, 'better', 'worse')}.")
    out += picture_reliance(m.get("picture_reliance", {}))
    probe = m.get("modality_probe")
    if probe:
        out.append(f"Modality ceiling: {probe['heldout']:.0%} of test-picture views have a nearest training picture "
                   f"of their own modality ({probe['leave_one_out']:.0%} for training pictures left out one at a "
                   f"time).")
    judge = m.get("judge", "")
    out.append(f"What it cannot show: verdicts are the judge's ({judge}); a difference on rows that neither policy "
               f"answers right is the judge's noise, so read the gallery and responses.jsonl before the number.")
    return out


STAGES = {"01": _01, "02": _02, "03": _03, "04": _04}


def sentences(stage: str, metrics: dict) -> list[str]:
    """The closing sentences of notebook ``stage`` ("01".."04") from the metrics its run wrote."""
    from medix_lib import config

    key = config.stage_name(stage)[:2]
    return STAGES[key](metrics)


def show(stage: str, metrics: dict):
    """The closing cell's output: the sentences as a Markdown list under "What this run showed"."""
    from IPython.display import Markdown

    profile = f" ({metrics.get('profile')} profile, variant {metrics.get('variant')})" if metrics.get("variant") else ""
    return Markdown(f"### What this run showed{profile}\n\n" + "\n".join(f"- {s}" for s in sentences(stage, metrics)))
