"""The machinery of parameters: stage names and paths, type checking, the ``StageParams`` base every stage's
dataclass extends (in :mod:`medix_lib.params`, which holds every default), and the helpers a notebook's last cells use
(``cfg.save_figure``, ``cfg.write_metrics``)."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path


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
    """The assignments of the notebook's single ``parameters`` cell, evaluated as Python literals (the notebooks
    mirror their stage's dataclass defaults; tests compare the two)."""
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


_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def yaml_value(value):
    """A value as YAML read it, with scientific notation YAML 1.1 leaves as text ("1e-4") read as a number.

    >>> yaml_value("1e-4"), yaml_value("1.0e-6"), yaml_value("smoke"), yaml_value([1, "2e3"])
    (0.0001, 1e-06, 'smoke', [1, 2000.0])
    """
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [yaml_value(v) for v in value]
    if isinstance(value, dict):
        return {k: yaml_value(v) for k, v in value.items()}
    return value


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
            valid = ", ".join(map(repr, typing.get_args(annotation)))
            raise ParamsError(f"parameter {key!r}={value!r}; valid values: {valid}")
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
    """Fields every stage has; subclasses add their own (each with its default) and override ``check`` for cross-field
    rules. Values are type-checked on construction, so a bad value fails before any model loads."""

    profile: str = "smoke"  # label of the compute profile ("smoke", "cpu_long": offline CPU; "gpu": one CUDA GPU)
    variant: str = "smoke"  # params file name; set by the runner
    output_dir: str = ""  # where this run writes; set by the runner (outputs/<stage>/<variant>)
    seed: int = 0  # seeds sampling, shuffling and initialisation

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
        return Path(path) if Path(path).is_absolute() else self.outputs_root() / path

    def outputs_root(self) -> Path:
        return Path(self.output_dir).resolve().parents[1]

    def relative(self, path: str | Path) -> str:
        """``path`` as written in committed outputs: relative to the outputs root (no machine paths)."""
        try:
            return str(Path(path).resolve().relative_to(self.outputs_root()))
        except ValueError:
            return str(path)

    def save_figure(self, fig, name: str) -> None:
        """``name.png`` and ``name.svg`` under this run's ``figures/``."""
        from medix_lib import plotting

        plotting.save_figure(fig, Path(self.output_dir) / "figures", name)

    def write_metrics(self, metrics: dict) -> dict:
        """The notebook's last step: ``metrics.json`` in this run's folder, with the variant and profile, numbers as
        plain JSON (numpy scalars and NaN included) and paths relative to the outputs root. Returns what it wrote."""
        out = {"variant": self.variant, "profile": self.profile, **metrics}
        text = json.dumps(out, indent=1, default=_json_default, allow_nan=True)
        Path(self.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(self.output_dir) / "metrics.json").write_text(text + "\n")
        return json.loads(text)


def _json_default(value):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy and torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"metrics value of type {type(value).__name__} is not JSON: {value!r}")
