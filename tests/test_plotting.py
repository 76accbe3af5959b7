"""Figures: every plotting function draws and saves PNG + SVG."""

from medix_lib import judge as J
from medix_lib import plotting
from medix_lib.judge import Judge


def test_meta_evaluation_figure(counting, tmp_path):
    pairs = [{"a": "mi", "b": b, "label": label, "pair_type": "t"}
             for b, label in [("heart attack", True), ("angina", False), ("infarct", True), ("panic attack", False)]]
    results = {"counting": J.meta_evaluate(Judge(backend="counting", model="m"), pairs),
               "strict": J.meta_evaluate(Judge(backend="counting", model="m", threshold=1.0), pairs)}
    fig = plotting.judge_meta_evaluation(results, "judges vs gold pairs", mechanics_only=True)
    paths = plotting.save_figure(fig, tmp_path, "judge_meta")
    assert all(p.stat().st_size > 0 for p in paths)


def test_reward_vs_gold_one_bar_group_per_pair_type_and_label():
    """A pair type with YES and NO pairs (verbose) gets a bar group for each, labelled with its own gold label and
    the mean over that group only; judge failures (None) are left out of the means."""
    import matplotlib.pyplot as plt

    rows = ([{"pair_type": "verbose", "label": True, "accuracy": 1.0, "semantic": 0.5}] * 2
            + [{"pair_type": "verbose", "label": False, "accuracy": 0.0, "semantic": 0.25}] * 3
            + [{"pair_type": "verbose", "label": False, "accuracy": None, "semantic": 0.25}]
            + [{"pair_type": "sibling", "label": False, "accuracy": 0.5, "semantic": 0.75}])
    fig = plotting.reward_vs_gold(rows, ["accuracy", "semantic"], "reward vs gold", mechanics_only=False)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["verbose\nYES, n=2", "sibling\nNO, n=1",
                                                            "verbose\nNO, n=4"]
    heights = {c.get_label(): [round(p.get_height(), 6) for p in c.patches] for c in ax.containers}
    assert heights == {"accuracy": [1.0, 0.5, 0.0], "semantic": [0.5, 0.75, 0.25]}
    plt.close(fig)


def test_paired_differences_colour_a_resolved_drop_apart_from_a_gain():
    """A significant negative difference once took the green of a significant gain; each side now has its colour,
    named in the legend, and an interval spanning 0 stays neutral."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    comparisons = {"grpo - warmup": {"gain": {"diff": 0.21, "ci_low": 0.03, "ci_high": 0.38, "n": 24},
                                     "drop": {"diff": -0.21, "ci_low": -0.38, "ci_high": -0.03, "n": 24},
                                     "noise": {"diff": 0.05, "ci_low": -0.1, "ci_high": 0.2, "n": 24}}}
    fig = plotting.paired_differences(comparisons, "paired differences")
    ax = fig.axes[0]
    gain, drop, noise = [to_hex(line.get_color()) for line in ax.lines if line.get_marker() == "o"]
    assert len({gain, drop, noise}) == 3
    legend = ax.get_legend()
    named = {t.get_text(): to_hex(h.get_facecolor()) for t, h in zip(legend.get_texts(), legend.legend_handles)}
    assert named == {"interval above 0": gain, "interval below 0": drop, "interval spans 0": noise}
    plt.close(fig)


def test_task_accuracy_labels_refusals_per_candidate_and_never_counts_exact_matches(tmp_path):
    """The label once summed every candidate's rule decisions, exact matches included ("n=45 ... refused 45"):
    here base has one refusal and grpo none, though rules decided four of their six answers."""
    import matplotlib.pyplot as plt

    from medix_lib import evaluation

    store = evaluation.ResultsStore(tmp_path / "results.sqlite")
    decided = {"base": [("exact_match", True), ("overlong", False), (None, False)],
               "grpo": [("exact_match", True), ("exact_match", True), (None, True)]}
    for model, verdicts in decided.items():
        store.register(model, {"policy": model})
        store.put_responses(model, "synthetic_text", [
            {"item": f"i{k}", "prompt": "q", "reference": "a", "choices": None, "response": "r", "answer": "r"}
            for k in range(3)])
        store.put_verdicts(model, "synthetic_text", "judge", "hash", 0, [
            {"item": f"i{k}", "label": label, "rule": rule} for k, (rule, label) in enumerate(verdicts)])
    result = evaluation.report(store, ["base", "grpo"], ["synthetic_text"], "judge", "hash", n_boot=200)
    fig = plotting.task_accuracy(result, "judge accuracy")
    label = fig.axes[0].get_xticklabels()[0].get_text()
    assert label.replace("\u00a0", " ") == "synthetic_text\nn=3, judge failed 0\nrefused: base 1, grpo 0"
    plt.close(fig)
    del result["tasks"]["synthetic_text"]["base"]["refused_by_rule"]  # a report that does not say: no count shown
    del result["tasks"]["synthetic_text"]["grpo"]["refused_by_rule"]
    fig = plotting.task_accuracy(result, "judge accuracy")
    assert "refused" not in fig.axes[0].get_xticklabels()[0].get_text()
    plt.close(fig)


def test_accuracy_by_family_pools_every_task_per_candidate_with_n_under_each_group(tmp_path):
    """Open and closed questions and each modality, per candidate, over both tasks: grpo gains only on closed
    questions; n under each group, a "/" where the candidates answered different numbers."""
    import matplotlib.pyplot as plt

    from medix_lib import evaluation

    store = evaluation.ResultsStore(tmp_path / "results.sqlite")
    items = {"synthetic_text": [("open", "OTHER"), ("open", "OTHER"), ("yes_no", "OTHER"), ("mcq", "OTHER")],
             "synthetic_image": [("open", "CT_SCAN"), ("yes_no", "CT_SCAN")]}
    right = {"base": {"i0", "i2"}, "grpo": {"i0", "i2", "i3"}}
    for model in ("base", "grpo"):
        store.register(model, {"policy": model})
        for task, kinds in items.items():
            kinds = kinds[:1] if model == "base" and task == "synthetic_image" else kinds  # base answered fewer
            store.put_responses(model, task, [
                {"item": f"i{k}", "prompt": "q", "reference": "a", "choices": None, "response": "r", "answer": "r",
                 "task_type": kind, "modality": modality} for k, (kind, modality) in enumerate(kinds)])
            store.put_verdicts(model, task, "judge", "hash", 0, [
                {"item": f"i{k}", "label": task == "synthetic_text" and f"i{k}" in right[model]}
                for k in range(len(kinds))])
    result = evaluation.report(store, ["base", "grpo"], list(items), "judge", "hash", n_boot=200)
    fig = plotting.accuracy_by_family(result, "accuracy by family")
    types, modalities = fig.axes[:2]
    assert [t.get_text() for t in types.get_xticklabels()] == ["open\nn=3", "closed\n(yes/no, MCQ)\nn=2/3"]
    assert [t.get_text() for t in modalities.get_xticklabels()] == ["CT_SCAN\nn=1/2", "OTHER\nn=4"]
    heights = {c.get_label(): [round(p.get_height(), 3) for p in c.patches] for c in types.containers
               if hasattr(c, "patches")}
    assert heights == {"base": [0.333, 0.5], "grpo": [0.333, round(2 / 3, 3)]}
    assert "judge judge, prompt hash" in fig.texts[0].get_text()
    paths = plotting.save_figure(fig, tmp_path, "accuracy_by_family")
    assert all(p.stat().st_size > 0 for p in paths)
    plt.close("all")
