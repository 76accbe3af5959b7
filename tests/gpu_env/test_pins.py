"""The tier tests what the GPU runs: requirements/gpu-cpu.txt is requirements/gpu.txt minus the CUDA-only wheels, and
this venv holds exactly those versions."""

import importlib.metadata
import re

import pytest

from medix_lib import config

CUDA_ONLY = {"torch", "torchvision", "xformers", "unsloth", "unsloth-zoo", "bitsandbytes"}
TEST_ONLY = {"pytest"}


def pins(name: str) -> dict[str, str]:
    out = {}
    for line in (config.REPO_ROOT / "requirements" / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            package, version = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^]]*\])?==(\S+)", line).groups()
            out[package.lower().replace("_", "-")] = version
    return out


@pytest.mark.any_env
def test_gpu_cpu_pins_mirror_the_gpu_pins():
    gpu, cpu = pins("gpu.txt"), pins("gpu-cpu.txt")
    assert {k: v for k, v in cpu.items() if k not in TEST_ONLY | {"torch"}} == {
        k: v for k, v in gpu.items() if k not in CUDA_ONLY}
    assert cpu["torch"] == "2.13.0"  # the local CPU wheel, as requirements/cpu.txt


@pytest.mark.any_env
def test_gpu_torch_is_a_cuda_12_build_from_pytorchs_index():
    text = (config.REPO_ROOT / "requirements" / "gpu.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cu126" in text
    gpu = pins("gpu.txt")
    assert gpu["torch"].endswith("+cu126") and gpu["torchvision"].endswith("+cu126")
    assert "vllm" not in gpu  # the judge server has its own environment (requirements/judge-server.txt)


def test_this_venv_holds_the_gpu_pins():
    wrong = {package: (version, importlib.metadata.version(package))
             for package, version in pins("gpu-cpu.txt").items()
             if importlib.metadata.version(package).split("+")[0] != version}
    assert not wrong, f"(pinned, installed): {wrong}; rerun `make gpu-env-cpu` after `rm -r .venv-gpu-cpu`"
