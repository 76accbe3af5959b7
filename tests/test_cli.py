"""The command line: ``python -m medix_lib judge`` on a JSONL file."""

import json

from medix_lib import cli


def test_cli_judge(stub, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"question": "q", "reference": "myocardial infarction", "prediction": p}
            for p in ["a heart attack", "angina", "a heart attack", "E500"]]
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
