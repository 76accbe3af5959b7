"""``python -m medix_lib compare``: variants of one stage side by side from copies of the committed runs' metrics.json
and run.json (their real structure), a copy's seed or commit changed to be flagged; the table's numbers are the
metrics' own."""

import csv
import json
import shutil

import pytest

from medix_lib import cli, config

STAGE = {k: config.stage_name(k) for k in ("01", "02", "03", "04")}


def _copy(root, stage, source, name=None, run=None, params=None, metrics=None):
    """outputs/<stage>/<source>/{metrics,run}.json copied to root/<stage>/<name>, with ``run``/``params``/``metrics``
    keys replaced (a value None deletes the key). Returns the copy's metrics."""
    src, dst = config.OUTPUTS_DIR / stage / source, root / stage / (name or source)
    dst.mkdir(parents=True)
    shutil.copy(src / "metrics.json", dst / "metrics.json")
    shutil.copy(src / "run.json", dst / "run.json")
    for file, changes in (("run.json", run), ("metrics.json", metrics)):
        data = json.loads((dst / file).read_text())
        for key, value in (changes or {}).items():
            data.pop(key) if value is None else data.__setitem__(key, value)
        if file == "run.json" and params:
            data["params"].update(params)
        (dst / file).write_text(json.dumps(data))
    return json.loads((dst / "metrics.json").read_text())


def _table(root, stage):
    folder = root / stage / "comparison"
    with (folder / "comparison.csv").open() as fh:
        return list(csv.DictReader(fh))


def _written(root, stage):
    folder = root / stage / "comparison"
    return sorted(p.name for p in folder.iterdir())


def test_03_effects_algorithms_and_flags(tmp_path, capsys):
    stage = STAGE["03"]
    metrics = {"smoke": _copy(tmp_path, stage, "smoke"),
               "reseeded": _copy(tmp_path, stage, "smoke", "reseeded", params={"seed": 1},
                                 run={"git_commit": "d4e5f6a0" * 5}),
               "gspo": _copy(tmp_path, stage, "smoke", "gspo", params={"importance_sampling_level": "sequence"}),
               "cpu_long": _copy(tmp_path, stage, "cpu_long")}
    assert cli.main(["compare", "--stage", "3", "--output-root", str(tmp_path)]) == 0
    out = capsys.readouterr()
    rows = {r["variant"]: r for r in _table(tmp_path, stage)}
    assert list(rows) == ["smoke", "cpu_long", "gspo", "reseeded"]  # smoke (the reference) first, then by name
    for name, m in metrics.items():
        effect = m["learning_effect"]["all"]
        row = rows[name]
        assert float(row["effect"]) == effect["diff"]
        assert (float(row["effect_ci_low"]), float(row["effect_ci_high"])) == (effect["ci_low"], effect["ci_high"])
        assert (int(row["effect_n_first"]), int(row["effect_n_last"])) == (effect["n_a"], effect["n_b"])
        assert int(row["steps"]) == m["steps"] and float(row["seconds_per_step"]) == m["seconds_per_step"]
    assert {n: r["algorithm"] for n, r in rows.items()} == {"smoke": "grpo", "cpu_long": "grpo", "gspo": "gspo",
                                                            "reseeded": "grpo"}
    commit = json.loads((config.OUTPUTS_DIR / stage / "smoke" / "run.json").read_text())["git_commit"][:7]
    assert rows["smoke"]["flags"] == "" and rows["smoke"]["params_changed"] == "(reference)"
    assert rows["gspo"]["flags"] == "" and rows["gspo"]["params_changed"] == "importance_sampling_level"
    assert rows["reseeded"]["flags"] == f"different code: d4e5f6a vs {commit}; different seed: 1 vs 0"
    long = rows["cpu_long"]["flags"].split("; ")
    assert "different profile: cpu_long vs smoke" in long and "different data: training rows 160 vs 64" in long
    assert ("different data: dataset 01_synthesize_data/cpu_long/dataset vs 01_synthesize_data/smoke/dataset"
            in long)
    assert f"warning: {stage}/reseeded is not comparable with smoke: different seed: 1 vs 0" in out.err
    assert "gspo is not comparable" not in out.err
    assert "| reseeded |" in out.out and "## Flags" in out.out
    assert _written(tmp_path, stage) == ["comparison.csv", "comparison.md", "comparison.png", "comparison.svg"]
    # the comparison folder is no variant: a second run reads the same four
    assert cli.main(["compare", "--stage", stage, "--output-root", str(tmp_path)]) == 0
    assert [r["variant"] for r in _table(tmp_path, stage)] == list(rows)


@pytest.mark.parametrize("stage_arg", ["2", "02", "02_design_rewards"])
def test_02_judge_gold_pairs_and_probes(tmp_path, capsys, stage_arg):
    stage = STAGE["02"]
    metrics = {"cpu_long": _copy(tmp_path, stage, "cpu_long"), "smoke": _copy(tmp_path, stage, "smoke"),
               "no_judge": _copy(tmp_path, stage, "smoke", "no_judge", metrics={"judge_meta": None})}
    argv = ["compare", "--stage", stage_arg, "--variants", "cpu_long,smoke,no_judge", "--output-root", str(tmp_path)]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    rows = {r["variant"]: r for r in _table(tmp_path, stage)}
    assert list(rows) == ["cpu_long", "smoke", "no_judge"]  # the order given: cpu_long is the reference
    for name, m in metrics.items():
        row, gold = rows[name], m["gold_pairs"]["mean_by_label"]
        judge = m.get("judge_meta")
        for column, key in (("judge_accuracy", "accuracy"), ("judge_auc", "auc"), ("judge_kappa", "cohen_kappa")):
            assert row[column] == "" if judge is None else float(row[column]) == judge[key]
        assert float(row["composite_gold_yes"]) == gold["True"]["composite"]
        assert float(row["composite_gold_no"]) == gold["False"]["composite"]
        over = {v["probe"] for v in m["probe_violations"] if not v["probe"].startswith("control_")}
        assert int(row["probes_over_ceiling"]) == len(over) and set(filter(None, row["probes_over"].split(", "))) == over
        probes = {k: v for k, v in m["probe_max_composite"].items() if not k.startswith("control_")}
        assert float(row["max_probe_composite"]) == max(probes.values())
        assert probes[row["max_probe"]] == max(probes.values())
    commits = {p: json.loads((config.OUTPUTS_DIR / stage / p / "run.json").read_text())["git_commit"]
               for p in ("smoke", "cpu_long")}
    assert rows["smoke"]["flags"].startswith("different code: ") == (commits["smoke"] != commits["cpu_long"])
    assert "different profile: smoke vs cpu_long" in rows["smoke"]["flags"]
    assert f"warning: {stage}/no_judge is not comparable with cpu_long: different profile: smoke vs cpu_long" in err
    assert "comparison.png" in _written(tmp_path, stage)


def test_04_accuracy_per_task_and_candidate_unpaired_difference(tmp_path):
    stage = STAGE["04"]
    metrics = {"smoke": _copy(tmp_path, stage, "smoke"), "cpu_long": _copy(tmp_path, stage, "cpu_long")}
    assert cli.main(["compare", "--stage", "04", "--output-root", str(tmp_path)]) == 0
    rows = _table(tmp_path, stage)
    expected = [(v, t, c) for v, m in metrics.items() for t, by in m["tasks"].items() for c in by]
    assert [(r["variant"], r["task"], r["candidate"]) for r in rows] == expected
    for r in rows:
        s = metrics[r["variant"]]["tasks"][r["task"]][r["candidate"]]
        assert float(r["accuracy"]) == s["accuracy"] and int(r["n"]) == s["n"]
        assert (float(r["ci_low"]), float(r["ci_high"])) == (s["ci_low"], s["ci_high"])
        if r["variant"] == "smoke":
            assert r["diff_vs_reference"] == "" and r["pairing"] == ""
        else:
            ref = metrics["smoke"]["tasks"][r["task"]][r["candidate"]]
            assert float(r["diff_vs_reference"]) == s["accuracy"] - ref["accuracy"]
            assert r["pairing"].startswith("unpaired")
    grpo = next(r for r in rows if r["variant"] == "cpu_long" and r["candidate"] == "grpo")
    assert "different model: medix-vlm-135m+03_train_grpo/cpu_long/model vs medix-vlm-135m+03_train_grpo/smoke/model" \
        in grpo["pairing"]
    text = (tmp_path / stage / "comparison" / "comparison.md").read_text()
    assert "unpaired" in text and "different data: synthetic_text rows" in text
    assert _written(tmp_path, stage) == ["comparison.csv", "comparison.md", "comparison.png", "comparison.svg"]


def test_01_and_no_flag_between_identical_runs(tmp_path):
    stage = STAGE["01"]
    m = _copy(tmp_path, stage, "smoke")
    _copy(tmp_path, stage, "smoke", "again")
    assert cli.main(["compare", "--stage", "1", "--variants", "smoke,again", "--output-root", str(tmp_path)]) == 0
    rows = _table(tmp_path, stage)
    assert [int(r["train_rows"]) for r in rows] == [m["splits"]["train"]["rows"]] * 2
    assert [r["flags"] for r in rows] == ["", ""]
    assert "none: every variant is comparable" in (tmp_path / stage / "comparison" / "comparison.md").read_text()
    (tmp_path / stage / "again" / "run.json").unlink()  # no record of code, seed or data: flagged, not trusted
    assert cli.main(["compare", "--stage", "1", "--variants", "smoke,again", "--output-root", str(tmp_path)]) == 0
    flags = _table(tmp_path, stage)[1]["flags"]
    assert flags.startswith("different code: unknown vs ") and "run status: no run.json" in flags


def test_errors_name_the_bad_stage_or_variant_and_the_valid_ones(tmp_path, capsys):
    stage = STAGE["03"]
    _copy(tmp_path, stage, "smoke")
    _copy(tmp_path, stage, "cpu_long")
    assert cli.main(["compare", "--stage", "03", "--variants", "smoke,nope", "--output-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "variants with metrics: smoke, cpu_long" in err
    assert cli.main(["compare", "--stage", "05", "--output-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'05'" in err and ", ".join(config.STAGES.values()) in err
    assert cli.main(["compare", "--stage", "02", "--output-root", str(tmp_path)]) == 2
    assert f"no variant of {STAGE['02']}" in capsys.readouterr().err
    assert not (tmp_path / stage / "comparison").exists()
