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
