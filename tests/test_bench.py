"""The performance harness runs in its quick mode (so it cannot rot) and writes every section; it asserts what was
measured, never how fast."""

import json
import subprocess
import sys

import pytest

from medix_lib import config


@pytest.mark.slow
def test_bench_quick_writes_every_section(tmp_path):
    done = subprocess.run([sys.executable, "-m", "medix_lib", "bench", "--quick", "--output", str(tmp_path)],
                          capture_output=True, text=True, cwd=config.REPO_ROOT, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "bench.json").read_text())
    assert {"machine", "judge_local", "judge_http", "reward", "scaling", "evaluation_resume", "pipeline"} <= set(result)
    local = result["judge_local"]
    assert local["layer_cold"]["model_calls"] < local["release_model_calls"]  # rules, dedupe: fewer model calls
    assert local["layer_later_step"]["model_calls"] == local["layer_cold"]["model_calls"]  # a cache of its own
    assert local["layer_warm"]["model_calls"] == 0 and local["layer_warm"]["cache_hits"] > 0
    assert set(result["judge_http"]["throughput"]) == {"1", "8", "64"}
    assert all(v["failures"] == 0 for v in result["judge_http"]["throughput"].values())
    assert set(result["reward"]["seconds_per_component"]) == {"accuracy", "semantic", "modality", "format"}
    rerun = result["evaluation_resume"]["rerun"]
    assert rerun == {**rerun, "policy_loaded": False, "generated": 0, "judge_model_calls": 0}
    assert result["machine"]["load_1min"] >= 0 and (tmp_path / "figures" / "bench_summary.png").exists()
    assert "judge, " in done.stdout and "evaluation of 4 rows" in done.stdout
