"""Static checks of the numbered notebooks and their params files (no kernel, no model)."""

import json

import nbformat
import pytest

from medix_lib import config, params

STAGES = list(config.STAGES.values())


@pytest.mark.parametrize("stage", STAGES)
def test_notebook_is_valid_and_stripped(stage):
    path = config.notebook_path(stage)
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name}: strip outputs"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: exactly one parameters cell"
    assert nb.cells[0].cell_type == "markdown", f"{path.name}: open with markdown saying what and why"
    assert "cfg.write_metrics(" in code[-1].source, f"{path.name}: the last cell writes metrics.json via the helper"
    assert f'findings.show("{stage[:2]}", metrics)' in code[-1].source, f"{path.name}: and ends on what the run showed"
    assert "pipeline.environment()" in code[2].source, f"{path.name}: the cell after validation shows the versions"


@pytest.mark.parametrize("stage", STAGES)
def test_every_parameter_has_a_comment(stage):
    nb = nbformat.read(config.notebook_path(stage), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    for line in cell.source.splitlines():
        if "=" in line and not line.startswith("#"):
            assert "  # " in line, f"{stage}: parameter line without a comment: {line!r}"


@pytest.mark.parametrize("stage", STAGES)
def test_papermill_reads_every_parameter(stage):
    """Papermill parses the parameters cell line by line; a line it cannot parse (an "=" inside the comment is
    enough) makes it warn that the runner passed an unknown parameter."""
    from papermill.translators import PythonTranslator

    nb = nbformat.read(config.notebook_path(stage), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = [line.split("=", 1)[0].strip() for line in cell.source.splitlines() if "=" in line
                and not line.startswith("#")]
    assert [p.name for p in PythonTranslator.inspect(cell)] == assigned


@pytest.mark.parametrize("stage", STAGES)
def test_parameters_cell_mirrors_the_stage_defaults(stage):
    """medix_lib/params.py holds every default; the notebook shows the same values, so a student stepping through it
    in JupyterLab runs what `make demo` runs. On drift, paste params.parameters_cell(stage) into the cell."""
    nb = nbformat.read(config.notebook_path(stage), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert cell.source == params.parameters_cell(stage), f"{stage}: parameters cell drifted from medix_lib/params.py"
    params.from_notebook(stage, config.notebook_defaults(stage))  # and it validates


@pytest.mark.parametrize("stage,variant", [(s, v) for s in STAGES for v in config.available_variants(s)])
def test_every_params_file_validates(stage, variant):
    loaded = params.load(stage, variant)
    assert loaded.variant == variant
    json.dumps(loaded.to_dict())  # papermill must be able to inject every value


def test_no_library_code_reads_a_notebook_to_learn_a_default():
    library = [p for p in (config.REPO_ROOT / "medix_lib").rglob("*.py")]
    readers = [p.name for p in library if "notebook_defaults(" in p.read_text() and p.name != "config.py"]
    assert readers == []


@pytest.mark.parametrize("stage", STAGES)
def test_smoke_and_gpu_profiles_exist(stage):
    assert {"smoke", "gpu"} <= set(config.available_variants(stage))
