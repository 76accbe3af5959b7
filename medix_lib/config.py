"""Parameters: YAML files in ``params/NN_slug/<variant>.yaml`` validated into a dataclass per notebook.

Defaults live in one place only - each notebook's ``parameters`` cell - so a student editing the notebook and a
researcher running papermill see the same values. A stage's dataclass declares types and checks; the runner merges
the notebook defaults with the YAML and validates the result before any model is loaded.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PARAMS_DIR = REPO_ROOT / "params"
OUTPUTS_DIR = REPO_ROOT / "outputs"

STAGES: dict[str, str] = {
    "01": "01_synthesize_data",
    "02": "02_design_rewards",
    "03": "03_train_grpo",
    "04": "04_evaluate_with_judge",
}
# Each stage's params dataclass lives beside the logic it configures; imported lazily so validating params never
# imports torch.
PARAMS_CLASSES: dict[str, str] = {
    "01_synthesize_data": "medix_lib.data:SynthesisParams",
    "02_design_rewards": "medix_lib.rewards:RewardDesignParams",
    "03_train_grpo": "medix_lib.training:TrainParams",
    "04_evaluate_with_judge": "medix_lib.evaluation:EvalParams",
}
# Set by the runner for every notebook; not part of the YAML files.
RUNNER_KEYS = ("variant", "output_dir")


class ParamsError(ValueError):
    """A params file or notebook parameter is wrong; the message names the key and the valid choices."""


def shown(path: Path) -> str:
    """A path as users should read it in messages: relative to the repository when inside it."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def stage_name(stage: str) -> str:
    """Accept '03', '3' or '03_train_grpo' and return the full stage name.

    >>> stage_name("3")
    '03_train_grpo'
    """
    key = stage.split("_")[0].zfill(2)
    if key not in STAGES or (("_" in stage) and stage != STAGES[key]):
        raise ParamsError(f"unknown stage {stage!r}; valid stages: {', '.join(STAGES.values())}")
    return STAGES[key]


def notebook_path(stage: str) -> Path:
    return NOTEBOOKS_DIR / f"{stage_name(stage)}.ipynb"


def available_variants(stage: str) -> list[str]:
    return sorted(p.stem for p in (PARAMS_DIR / stage_name(stage)).glob("*.yaml"))


def params_path(stage: str, variant: str) -> Path:
    path = PARAMS_DIR / stage_name(stage) / f"{variant}.yaml"
    if not path.is_file():
        raise ParamsError(
            f"no params file {shown(path)}; variants of {stage_name(stage)}: "
            f"{', '.join(available_variants(stage)) or '(none)'}"
        )
    return path


def notebook_defaults(stage: str) -> dict:
    """The assignments of the notebook's single ``parameters`` cell, evaluated as Python literals."""
    import nbformat

    nb = nbformat.read(notebook_path(stage), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParamsError(f"{notebook_path(stage).name} must have exactly one 'parameters' cell, found {len(cells)}")
    defaults = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            defaults[node.targets[0].id] = ast.literal_eval(node.value)
    return defaults


def params_class(stage: str) -> type:
    module, _, cls = PARAMS_CLASSES[stage_name(stage)].partition(":")
    return getattr(importlib.import_module(module), cls)


def _check_type(key: str, value, annotation) -> None:
    origin = typing.get_origin(annotation)
    if annotation is typing.Any:
        return
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        errors = []
        for option in options:
            try:
                _check_type(key, value, option)
                return
            except ParamsError as err:
                errors.append(str(err))
        raise ParamsError(errors[0] if len(errors) == 1 else f"parameter {key!r}={value!r} matches none of {options}")
    if annotation is type(None):
        if value is not None:
            raise ParamsError(f"parameter {key!r} must be null, got {value!r}")
        return
    if origin is typing.Literal:
        if value not in typing.get_args(annotation):
            raise ParamsError(f"parameter {key!r}={value!r}; valid values: {', '.join(map(repr, typing.get_args(annotation)))}")
        return
    base = origin or annotation
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return
    if base is int and isinstance(value, bool) or not isinstance(value, base):
        raise ParamsError(f"parameter {key!r} must be {getattr(base, '__name__', base)}, got {value!r}")
    if base in (list, tuple) and typing.get_args(annotation):
        for item in value:
            _check_type(key, item, typing.get_args(annotation)[0])
    if base is dict and typing.get_args(annotation):
        for item in value.values():
            _check_type(key, item, typing.get_args(annotation)[1])


@dataclass
class StageParams:
    """Fields every stage has; subclasses add their own and override ``check`` for cross-field rules."""

    profile: str  # a label for the compute profile ("smoke": offline CPU, "gpu": one CUDA GPU)
    variant: str
    output_dir: str
    seed: int

    def check(self) -> None:
        """Cross-field validation; raise ParamsError naming the key."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), hints[f.name])
        self.check()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def upstream(self, path: str) -> Path:
        """Resolve an earlier stage's output (``"01_synthesize_data/smoke/dataset"``) against this run's outputs
        root, so a pipeline written to another root (tests, ablation sweeps) reads its own upstream results."""
        return Path(path) if Path(path).is_absolute() else Path(self.output_dir).resolve().parents[1] / path


def build(stage: str, values: dict) -> StageParams:
    """Validate ``values`` (a notebook namespace or a merged dict) into the stage's dataclass."""
    cls = params_class(stage)
    names = [f.name for f in fields(cls)]
    if "output_dir" in values and not Path(values["output_dir"]).is_absolute():
        # A notebook opened in JupyterLab runs in notebooks/; outputs still belong under the repository root.
        values = {**values, "output_dir": str(REPO_ROOT / values["output_dir"])}
    missing = [n for n in names if n not in values]
    if missing:
        raise ParamsError(f"{stage_name(stage)}: missing parameter(s) {', '.join(missing)}")
    return cls(**{n: values[n] for n in names})


def from_notebook(stage: str, namespace: dict) -> StageParams:
    """Used in each notebook's validation cell: ``cfg = config.from_notebook("03", globals())``."""
    return build(stage, namespace)


def load(stage: str, variant: str, output_dir: str | Path | None = None,
         overrides: dict | None = None) -> StageParams:
    """Merge notebook defaults, ``params/<stage>/<variant>.yaml`` and ``overrides`` (e.g. ``--set``) and validate.
    Unknown keys fail here, naming the file and the valid keys."""
    stage = stage_name(stage)
    path = params_path(stage, variant)
    from_file = yaml.safe_load(path.read_text()) or {}
    if not isinstance(from_file, dict):
        raise ParamsError(f"{shown(path)} must be a mapping of parameter: value")
    defaults = notebook_defaults(stage)
    valid = sorted(k for k in defaults if k not in RUNNER_KEYS)
    for source, keys in ((str(shown(path)), from_file), ("--set", overrides or {})):
        for key in keys:
            if key not in valid:
                raise ParamsError(f"{source}: unknown parameter {key!r} for {stage}; valid: {', '.join(valid)}")
    merged = {**defaults, **from_file, **(overrides or {}), "variant": variant,
              "output_dir": str(output_dir or OUTPUTS_DIR / stage / variant)}
    try:
        return build(stage, merged)
    except ParamsError as err:
        raise ParamsError(f"{shown(path)}: {err}") from None

