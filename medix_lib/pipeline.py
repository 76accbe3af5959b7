"""Run the numbered notebooks headless with papermill, one output folder per (stage, variant).

Every params file is validated before the first notebook starts, so a typo in stage 04's YAML fails in a second, not
after an hour of training. Each run folder gets the rendered notebook, the notebook's own metrics.json and figures/,
and run.json: params, seed, package versions, git commit, timings and status.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from medix_lib import config, memory, models, params
from medix_lib import progress as progress_lib

RECORDED_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "sentence-transformers",
                     "papermill", "unsloth", "vllm")


class StageFailed(RuntimeError):
    """A notebook cell raised; the message names the notebook, the cell and the error."""


@dataclass
class PlannedRun:
    stage: str
    variant: str
    params: config.StageParams

    @property
    def output_dir(self) -> Path:
        return Path(self.params.output_dir)


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict:
    """What a rendered notebook's second cell shows: the code's commit, the device, threads and package versions, so a
    reader knows what produced the outputs below it."""
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    return {"git_commit": git_commit(), "device": device, "torch_threads": torch.get_num_threads(),
            "python": sys.version.split()[0], "packages": {k: v for k, v in package_versions().items() if v}}


def git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=config.REPO_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "medix_lib", "notebooks", "params"],
                               cwd=config.REPO_ROOT, capture_output=True, text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def parse_overrides(assignments: list[str]) -> dict[str, dict]:
    """``["03.max_steps=2", "04.max_eval_rows=4"]`` -> ``{"03_train_grpo": {"max_steps": 2}, ...}`` (YAML values).

    >>> parse_overrides(["3.max_steps=2", "03.rewards=[format]"])
    {'03_train_grpo': {'max_steps': 2, 'rewards': ['format']}}
    """
    import yaml

    overrides: dict[str, dict] = {}
    for assignment in assignments:
        target, sep, value = assignment.partition("=")
        stage, dot, key = target.partition(".")
        if not sep or not dot:
            raise config.ParamsError(f"--set {assignment!r}: expected STAGE.KEY=VALUE, e.g. 03.max_steps=2")
        overrides.setdefault(config.stage_name(stage), {})[key] = config.yaml_value(yaml.safe_load(value))
    return overrides


def plan(profile: str, only: list[str] | None = None, variants: list[str] | None = None,
         output_root: str | Path | None = None, overrides: dict[str, dict] | None = None) -> list[PlannedRun]:
    """Validate every (stage, variant) to run; raise ParamsError on the first bad one, before anything runs."""
    stages = [config.stage_name(s) for s in only] if only else list(config.STAGES.values())
    if variants and len(stages) != 1:
        raise config.ParamsError("--variants needs exactly one stage: add --only NN")
    runs = []
    for stage in stages:
        for variant in variants or [profile]:
            out = Path(output_root) / stage / variant if output_root else None
            runs.append(PlannedRun(stage, variant, params.load(stage, variant, out, (overrides or {}).get(stage))))
    return runs


def execute(run: PlannedRun, progress: bool = True) -> dict:
    import papermill as pm

    run.output_dir.mkdir(parents=True, exist_ok=True)
    record = {"stage": run.stage, "variant": run.variant, "params": run.params.to_dict(), "seed": run.params.seed,
              "packages": package_versions(), "python": sys.version.split()[0], "platform": platform.platform(),
              "git_commit": git_commit(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "status": "running"}
    record_path = run.output_dir / "run.json"
    record_path.write_text(json.dumps(record, indent=1))
    start = time.perf_counter()
    quiet = os.environ.get(progress_lib.QUIET_ENV)
    os.environ[progress_lib.QUIET_ENV] = "1"  # the kernel inherits it: no bar's refreshes in the committed notebook
    try:
        pm.execute_notebook(str(config.notebook_path(run.stage)), str(run.output_dir / "notebook.ipynb"),
                            parameters=run.params.to_dict(), kernel_name="python3", cwd=str(config.REPO_ROOT),
                            progress_bar=progress, request_save_on_cell_execute=True)
        record["status"] = "ok"
    except pm.PapermillExecutionError as err:
        record["status"] = "failed"
        record["error"] = f"cell {err.exec_count}: {err.ename}: {err.evalue}"
        raise StageFailed(f"{run.stage} [{run.variant}] failed in cell {err.exec_count} ({err.ename}: {err.evalue}); "
                          f"rendered notebook with the traceback: {run.output_dir / 'notebook.ipynb'}") from None
    finally:
        if quiet is None:
            os.environ.pop(progress_lib.QUIET_ENV)
        else:
            os.environ[progress_lib.QUIET_ENV] = quiet
        record["seconds"] = round(time.perf_counter() - start, 1)
        record_path.write_text(json.dumps(record, indent=1))
        scrub_machine_paths(run.output_dir, run.output_dir.parent.parent)
    return record


def scrub_machine_paths(run_dir: Path, output_root: Path) -> None:
    """Rewrite a run's rendered notebook and records without this machine's paths, so outputs can be committed and
    compared across machines: paths under the outputs root become relative to it, the repository's and the home
    folder's prefixes are dropped (warnings name ``.venv/lib/...``, ``~/.pyenv/...``), and a warning raised in a cell
    names ``<cell>`` instead of the kernel's temporary file (``/tmp/ipykernel_<pid>/<hash>.py``).

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "run.json").write_text(json.dumps(f"{tempfile.gettempdir()}/ipykernel_23146/1261979447.py:7: W"))
    >>> scrub_machine_paths(d, d); (d / "run.json").read_text()
    '"<cell>:7: W"'
    """
    prefixes = [(f"{Path(output_root).resolve()}/", ""), (f"{config.REPO_ROOT}/", ""), (f"{Path.home()}/", "~/")]
    kernel_cell = re.compile(re.escape(tempfile.gettempdir()) + r"/ipykernel_\d+/\d+\.py")
    for path in [run_dir / "notebook.ipynb", run_dir / "run.json", run_dir / "metrics.json"]:
        if not path.is_file():
            continue
        original = path.read_text()
        text = kernel_cell.sub("<cell>", original)
        for prefix, replacement in prefixes:
            text = text.replace(json.dumps(prefix)[1:-1], replacement).replace(prefix, replacement)
        if text != original:
            path.write_text(text)


def require_cuda(gpu_runs: list[PlannedRun]) -> None:
    """The gpu profile stops here, before any model loads, when torch sees no CUDA device: it would otherwise fall back
    to the CPU and fail deep inside a trainer after loading a 3B model in fp32. Then every stage's memory plan is
    printed and checked against the free GPU memory, so a stage whose models cannot fit stops the run before the
    first one starts (medix_lib.memory)."""
    if not gpu_runs:
        return
    import torch

    if not torch.cuda.is_available():
        raise config.ParamsError(
            f"the gpu profile ({', '.join(f'{r.stage} [{r.variant}]' for r in gpu_runs)}) needs a CUDA GPU, and torch "
            f"{torch.__version__} (CUDA build {torch.version.cuda}) sees none. Check nvidia-smi; a driver older than "
            f"this build needs a torch built for an older CUDA (requirements/gpu.txt pins one); or run the smoke "
            f"profile on CPU")
    memory.check(gpu_runs)


def run_pipeline(profile: str, only: list[str] | None = None, variants: list[str] | None = None,
                 output_root: str | Path | None = None, overrides: dict[str, dict] | None = None,
                 progress: bool = True) -> list[dict]:
    runs = plan(profile, only, variants, output_root, overrides)
    require_cuda([run for run in runs if run.params.profile == "gpu"])
    # Offline profile: never reach for a model hub, fail fast instead of hanging on a network timeout.
    if all(run.params.profile != "gpu" for run in runs):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Assemble the shipped models the stages use (base + shipped delta, seconds, once per machine) before the first
    # notebook starts, so a missing or altered weight file fails here, naming the model, not in a cell.
    for alias in sorted({value for run in runs for value in run.params.to_dict().values()
                         if isinstance(value, str) and models.is_assembled(value)}):
        for part in models.ensemble_members(alias) or (alias,):  # an ensemble: each member's weights
            print(f"preparing {part} from its shipped weights", flush=True)
            models.resolve_path(part)
    records = []
    for i, run in enumerate(runs, 1):
        print(f"[{i}/{len(runs)}] {run.stage} [{run.variant}] -> {run.output_dir}", flush=True)
        records.append(execute(run, progress))
        print(f"      ok in {records[-1]['seconds']} s", flush=True)
    return records
