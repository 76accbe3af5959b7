"""The whole notebook pipeline, at a tiny size, through the same CLI the README's demo command uses."""

import json
import subprocess
import sys

import nbformat
import pytest

from medix_lib import config

TINY = [
    "03.warmup_max_steps=2",
    "01.n_text=40", "01.n_image=8",
    "02.n_prompts=3", "02.completions_per_prompt=2", "02.max_new_tokens=16",
    "03.max_steps=2", "03.max_train_rows=8", "03.max_completion_length=12", "03.validation_every=1",
    "03.validation_rows=2",
    "04.max_eval_rows=4", "04.max_new_tokens=16", "04.n_bootstrap=200",
    # The verifier comparison scores ~1,000 pairs with three methods: tests/test_verifier.py covers it.
    "02.verifier_test_pairs=0", "02.n_gold_pairs=16",
]


def medix(*args, root):
    return subprocess.run([sys.executable, "-m", "medix_lib", "run", "--quiet", "--output-root", str(root), *args],
                          capture_output=True, text=True, cwd=config.REPO_ROOT, timeout=1500)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    done = medix("--profile", "smoke", *sum((["--set", s] for s in TINY), []), root=root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(config.STAGES.values()))
def test_every_stage_writes_notebook_metrics_figures_and_record(tiny_run, stage):
    out = tiny_run / stage / "smoke"
    nb = nbformat.read(out / "notebook.ipynb", as_version=4)
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "rendered notebook keeps outputs"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert any(f.endswith(".png") for f in figures) and any(f.endswith(".svg") for f in figures)
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "ok" and record["params"]["seed"] == record["seed"]
    assert record["packages"]["trl"] and record["packages"]["torch"]
    assert record["params"]["output_dir"] == f"{stage}/smoke"  # relative to the outputs root
    for path in (out / "notebook.ipynb", out / "run.json", out / "metrics.json"):
        text = path.read_text()
        assert str(tiny_run) not in text and str(config.REPO_ROOT) not in text, f"{path.name} names this machine"


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(config.STAGES.values()))
def test_rendered_notebook_shows_every_figure_it_saves_and_a_quiet_log(tiny_run, stage):
    out = tiny_run / stage / "smoke"
    nb = nbformat.read(out / "notebook.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    images = sum(any(k.startswith("image/") for k in o.get("data", {})) for o in outputs)
    assert images >= len(list((out / "figures").glob("*.png"))) > 0
    log = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "TqdmWarning" not in log and "it/s]" not in log and "examples/s]" not in log, log[:2000]
    assert len(log.splitlines()) <= 150
    closing = nb.cells[-1].outputs
    assert any("What this run showed" in o.get("data", {}).get("text/markdown", "") for o in closing)


@pytest.mark.slow
def test_rollouts_and_responses_are_exported_as_text(tiny_run):
    rollouts = [json.loads(line) for line in (tiny_run / "03_train_grpo/smoke/rollouts.jsonl").read_text().splitlines()]
    assert {r["step"] for r in rollouts} == {0, 1}  # rollouts_every 1: one group per step, the last step included
    for r in rollouts:
        assert {"step", "kind", "id", "prompt", "reference", "reference_modality", "completion", "accuracy", "semantic",
                "modality", "format", "composite"} <= set(r)
        assert isinstance(r["modality"], float)  # the reward component, not the row's modality
        assert isinstance(r["completion"], str) and isinstance(r["prompt"], str)
    responses = [json.loads(line) for line in
                 (tiny_run / "04_evaluate_with_judge/smoke/responses.jsonl").read_text().splitlines()]
    metrics = json.loads((tiny_run / "04_evaluate_with_judge/smoke/metrics.json").read_text())
    stored = sum(run["rows"] for runs in metrics["runs"].values() for run in runs.values() if isinstance(run, dict))
    assert metrics["responses_exported"] == len(responses) == stored > 0
    assert {r["candidate"] for r in responses} == {"base", "warmup", "grpo"}
    assert all(set(r) >= {"candidate", "task", "item", "prompt", "response", "final_answer", "verdict", "p_yes",
                          "refused_by"} for r in responses)


@pytest.mark.slow
def test_training_and_evaluation_numbers_are_real(tiny_run):
    train = json.loads((tiny_run / "03_train_grpo/smoke/metrics.json").read_text())
    assert train["steps"] == 2 and train["warmup"]["format_curve"]
    effect = train["learning_effect"]["all"]  # measured on the completions the run generated, first vs last step
    assert effect["first_steps"] == [0, 0] and effect["last_steps"] == [1, 1]
    assert effect["ci_low"] <= effect["diff"] <= effect["ci_high"]
    assert (tiny_run / "03_train_grpo/smoke/model/adapter_config.json").exists()
    evaluation = json.loads((tiny_run / "04_evaluate_with_judge/smoke/metrics.json").read_text())
    for model in ("base", "warmup", "grpo"):
        summary = evaluation["tasks"]["synthetic_text"][model]
        assert summary["n"] == 4
        assert 0.0 <= summary["ci_low"] <= summary["accuracy"] <= summary["ci_high"] <= 1.0
        assert summary["judge_failures"] == 0
    assert evaluation["store"] == "04_evaluate_with_judge/smoke/results.sqlite"  # relative to the outputs root
    assert set(evaluation["comparisons"]) == {"grpo - warmup", "grpo - base"}


@pytest.mark.slow
def test_failing_cell_stops_with_the_notebook_and_cell_named(tiny_run):
    tiny_04 = sum((["--set", s] for s in TINY if s.startswith("04.")), [])
    done = medix("--profile", "smoke", "--only", "04", *tiny_04, "--set", "04.candidates={grpo: no/such/adapter}",
                 "--set", "04.compare=[]", root=tiny_run)
    assert done.returncode == 1
    assert "04_evaluate_with_judge [smoke] failed in cell" in done.stderr
    record = json.loads((tiny_run / "04_evaluate_with_judge/smoke/run.json").read_text())
    assert record["status"] == "failed" and "cell" in record["error"]
    # earlier stages' outputs stay untouched
    assert (tiny_run / "03_train_grpo/smoke/model/adapter_config.json").exists()


def test_shipped_models_are_assembled_before_the_first_notebook(monkeypatch):
    """The smoke judge is assembled from its shipped weights by the runner, before any notebook starts, so a missing
    or altered weight file fails there, naming the model. The order is the subject here: execution is swapped out."""
    from medix_lib import models, pipeline

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM"):
        monkeypatch.setenv(var, "1")
    events = []
    monkeypatch.setattr(models, "resolve_path", lambda name: events.append(("prepare", name)) or name)
    monkeypatch.setattr(pipeline, "execute", lambda run, progress: events.append(("run", run.stage)) or {"seconds": 0})
    pipeline.run_pipeline("smoke", only=["02", "04"], progress=False)
    assert events == [("prepare", "medix-verifier-135m"), ("prepare", "medix-verifier-270m"),  # the judge's members
                      ("prepare", "medix-vlm-135m"), ("run", "02_design_rewards"), ("run", "04_evaluate_with_judge")]
