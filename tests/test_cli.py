"""The command line: ``python -m medix_lib judge`` on a JSONL file; argument parsing; the judge's settings from a
params file."""

import dataclasses
import json

import pytest
import yaml

from medix_lib import cli, config, params
from medix_lib.judge import Judge


def test_cli_judge(stub, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"question": "q", "reference": "myocardial infarction", "prediction": p}
            for p in ["a heart attack", "angina", "a heart attack", "E500 flare"]]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    params = tmp_path / "judge.yaml"
    params.write_text(f"backend: openai\nmodel: stub-judge\nbase_url: {stub.url}\nmax_retries: 0\n")
    out = tmp_path / "verdicts.jsonl"
    assert cli.main(["judge", "--input", str(pairs), "--output", str(out), "--params", str(params),
                     "--cache", str(tmp_path / "c.sqlite")]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["label"] for g in got] == [True, False, True, None]
    assert {"question", "reference", "prediction", "label", "p_yes", "error", "cached", "judge",
            "prompt_hash"} <= set(got[0])
    assert "3 unique" in capsys.readouterr().err
    pairs.write_text('{"reference": "x"}\n')
    assert cli.main(["judge", "--input", str(pairs), "--output", str(out), "--params", str(params)]) == 2
    assert "line 1" in capsys.readouterr().err


# --- argument parsing and judge settings (fast: nothing is loaded) -------------------------------------------------


@pytest.mark.parametrize("argv,tasks", [
    (["--tasks", "medqa,pubmedqa"], ["medqa", "pubmedqa"]),
    (["--tasks", "medqa", "pubmedqa"], ["medqa", "pubmedqa"]),
    (["--tasks", "medqa,", "pubmedqa"], ["medqa", "pubmedqa"]),
    (["--tasks", "medqa", "pubmedqa,slake", "--limit", "2"], ["medqa", "pubmedqa", "slake"]),
    ([], None),
])
def test_evaluate_tasks_space_or_comma_separated(argv, tasks):
    args = cli.build_parser().parse_args(["evaluate", *argv])
    assert args.tasks == tasks


def test_evaluate_tasks_needs_a_name(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["evaluate", "--tasks", ","])
    assert "--tasks needs at least one name" in capsys.readouterr().err


def _stage_judge(stage, variant):
    """The init settings of the judge a stage's params file gives that stage (its first judge for 04)."""
    cfg = params.load(stage, variant)
    return _settings(cfg.judges()[0] if hasattr(cfg, "judges") else cfg.judge())


def _settings(judge):
    return {f.name: getattr(judge, f.name) for f in dataclasses.fields(Judge) if f.init and f.name != "cache_path"}


@pytest.mark.parametrize("stage,variant", [("04", "smoke"), ("04", "gpu"), ("02", "judge_question"), ("03", "gpu")])
def test_judge_takes_a_stage_params_file_and_makes_that_stages_judge(stage, variant):
    path = config.params_path(stage, variant)
    args = cli.build_parser().parse_args(["judge", "--input", "in.jsonl", "--output", "out.jsonl", "--params",
                                          str(path), "--no-cache"])
    kwargs = cli._judge_kwargs(args)  # smoke.yaml ("profile: smoke") used to fail: unknown judge setting 'profile'
    assert kwargs["cache_path"] is None
    assert _settings(Judge(**kwargs)) == _stage_judge(stage, variant)  # built without loading a model
    if (stage, variant) == ("04", "gpu"):
        assert kwargs["model"] == "Qwen/Qwen3-14B" and kwargs["threshold"] == 0.5
    flags = cli.build_parser().parse_args(["judge", "--input", "i", "--output", "o", "--params", str(path),
                                           "--model", "other", "--cache", "c.sqlite"])
    assert cli._judge_kwargs(flags)["model"] == "other" and cli._judge_kwargs(flags)["cache_path"] == "c.sqlite"


def test_every_shipped_params_file_is_accepted_by_judge():
    for path in sorted(config.PARAMS_DIR.glob("*/*.yaml")):
        settings = cli.judge_params(yaml.safe_load(path.read_text()) or {}, str(path))
        assert set(settings) <= {f.name for f in dataclasses.fields(Judge) if f.init}, path


def test_judge_params_ignore_other_stage_keys_and_fail_on_misspelled_judge_keys(tmp_path, capsys):
    stage_dir = tmp_path / "04_evaluate_with_judge"
    stage_dir.mkdir()
    ok = stage_dir / "mine.yaml"
    ok.write_text("profile: gpu\ntasks: [medqa]\njudge_rounds: 3\njudge_model: Qwen/Qwen3-14B\n")
    assert cli.judge_params(yaml.safe_load(ok.read_text()), str(ok))["model"] == "Qwen/Qwen3-14B"
    typo = stage_dir / "typo.yaml"
    typo.write_text("profile: smoke\njudge_modle: Qwen/Qwen3-14B\n")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['judge_modle'\] for 04_evaluate_with_judge"):
        cli.judge_params(yaml.safe_load(typo.read_text()), str(typo))
    elsewhere = tmp_path / "stage_like.yaml"  # outside params/: the stage is the first that has every key
    elsewhere.write_text("profile: smoke\njudge_modle: x\n")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['judge_modle'\] in a stage params file"):
        cli.judge_params(yaml.safe_load(elsewhere.read_text()), str(elsewhere))
    with pytest.raises(ValueError, match=r"unknown judge setting\(s\) \['modle'\]"):
        cli.judge_params({"modle": "x"}, "judge.yaml")
    assert cli.judge_params({"model": "m", "threshold": 0.7}, "judge.yaml") == {"model": "m", "threshold": 0.7}
    # the command itself fails with exit status 2, naming the key, before reading its input or loading a model
    assert cli.main(["judge", "--input", str(tmp_path / "absent.jsonl"), "--output", str(tmp_path / "o.jsonl"),
                     "--params", str(typo)]) == 2
    assert "judge_modle" in capsys.readouterr().err
