"""Benchmark tasks: the MediX-R1 paper's 17 evaluation tasks, MMMU-Medical and this project's offline split.

Each task reads its dataset read-only from the dataset's own published layout - a local copy (file or folder) or a
hub id streamed with ``datasets`` when there is network - into schema rows (see ``medix_lib.data``). One module per
dataset family says exactly which layouts it reads. MCQ-origin rows keep their options in ``choices`` and the
correct option's text as ``answer``; the option letter is the answer's index in ``choices``.

>>> get_task("medmcqa").split, get_task("mimic_cxr_report").metric
('validation', 'judge_rubric')
>>> len(PAPER_TASKS)
17
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._common import MissingImageError, RowStream
from .medix_r1 import load_medix_r1, release_dataset
from .medmcqa import load_medmcqa
from .medqa import load_medqa, load_usmle_sa
from .mimic_cxr import load_mimic_cxr
from .mmlu import MEDICAL_SUBJECTS, load_mmlu
from .mmmu import load_mmmu
from .pathvqa import load_pathvqa
from .pmc_vqa import load_pmc_vqa
from .pubmedqa import load_pubmedqa
from .slake import load_slake
from .synthetic import load_synthetic
from .vqa_rad import load_vqa_rad

PROTOCOLS = ("open", "mcq", "yes_no", "report")
METRICS = ("judge", "judge_rubric")  # judge: majority of 3 binary verdicts; judge_rubric: 0-5 rubric / 5
MEDIX_EVAL_SETS = "sahalshajim/medix-eval-sets"  # the release's own copies of PubMedQA, PMC-VQA and MIMIC-CXR


@dataclass(frozen=True)
class Task:
    """One benchmark task: how to load it and how the evaluation protocol scores it."""

    name: str
    loader: Callable[..., RowStream]
    split: str  # default split, in the dataset's own naming
    protocol: str  # how the candidate is prompted: open | mcq ("Choices: A. ..." appended) | yes_no | report
    metric: str  # judge | judge_rubric
    modality: str  # text | image
    source: str | None  # default source handed to the loader: a hub id (or None: the loader's local default)
    data_from: str  # where the data comes from, for people: hub id and config, and the local layouts read
    needs_credentials: bool = False
    paper: bool = True  # one of the paper's 17 tasks (unweighted macro average)
    # answers are drawn from the prompt by design (a summary of the report given, a conclusion from the abstract
    # given): the evaluation's restates-prompt rule, which zeroes an answer made only of the prompt's words, is off
    answer_from_prompt: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.loader.__module__.rsplit(".", 1)[-1]


def _mmlu(subject: str) -> Task:
    return Task(f"mmlu_{subject}", load_mmlu, "test", "mcq", "judge", "text", "hails/mmlu_no_train",
                f"hails/mmlu_no_train:{subject} (cais/mmlu layout) or the original data/test/{subject}_test.csv",
                kwargs={"subject": subject, "keep_option_dependent": True})


_TASKS = [
    *(_mmlu(s) for s in ("clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
                         "professional_medicine", "anatomy")),
    Task("medmcqa", load_medmcqa, "validation", "mcq", "judge", "text", "openlifescienceai/medmcqa",
         "openlifescienceai/medmcqa, or the original release's dev.json", kwargs={"keep_option_dependent": True}),
    Task("medqa", load_medqa, "test", "mcq", "judge", "text", "GBaker/MedQA-USMLE-4-options-hf",
         "GBaker/MedQA-USMLE-4-options(-hf), or US/4_options/phrases_no_exclude_test.jsonl of the original release",
         kwargs={"n_options": 4, "keep_option_dependent": True}),
    Task("usmle_sa", load_usmle_sa, "train", "mcq", "judge", "text", "HuggingSara/usmle_self_assessment",
         "HuggingSara/usmle_self_assessment (one split, train), or medAlpaca's step{1,2,3}.json + solutions",
         kwargs={"keep_option_dependent": True}),
    Task("pubmedqa", load_pubmedqa, "test", "yes_no", "judge", "text", MEDIX_EVAL_SETS,
         f"{MEDIX_EVAL_SETS}:pubmedqa, or the original data/ori_pqal.json + test_ground_truth.json",
         answer_from_prompt=True, kwargs={"config": "pubmedqa"}),
    Task("mimic_cxr_summarization", load_mimic_cxr, "test", "report", "judge_rubric", "text", MEDIX_EVAL_SETS,
         f"{MEDIX_EVAL_SETS}:mimic_cxr, or PhysioNet mimic-cxr-reports + mimic-cxr-2.0.0-split.csv.gz",
         needs_credentials=True, answer_from_prompt=True, kwargs={"task": "summarization", "config": "mimic_cxr"}),
    Task("slake", load_slake, "test", "open", "judge", "image", "BoKelvin/SLAKE",
         "BoKelvin/SLAKE or Slake1.0 (test.json + imgs/; image_root when streaming)", kwargs={"language": "en"}),
    Task("vqa_rad", load_vqa_rad, "test", "open", "judge", "image", "flaviagiammarino/vqa-rad",
         "flaviagiammarino/vqa-rad, or 'VQA_RAD Dataset Public.json' + 'VQA_RAD Image Folder'"),
    Task("pathvqa", load_pathvqa, "test", "open", "judge", "image", "flaviagiammarino/path-vqa",
         "flaviagiammarino/path-vqa (parquet)"),
    Task("pmc_vqa", load_pmc_vqa, "test", "mcq", "judge", "image", MEDIX_EVAL_SETS,
         f"{MEDIX_EVAL_SETS}:pmc_vqa, or xmcmic/PMC-VQA test_clean.csv / test_2.csv + figures",
         kwargs={"config": "pmc_vqa", "keep_option_dependent": True}),
    Task("pmc_vqa_hard", load_pmc_vqa, "test", "open", "judge", "image", MEDIX_EVAL_SETS,
         f"{MEDIX_EVAL_SETS}:pmc_vqa_hard", kwargs={"config": "pmc_vqa_hard"}),
    Task("mimic_cxr_report", load_mimic_cxr, "test", "report", "judge_rubric", "image", MEDIX_EVAL_SETS,
         f"{MEDIX_EVAL_SETS}:mimic_cxr + MIMIC-CXR-JPG (image_root), or the PhysioNet folders",
         needs_credentials=True, kwargs={"task": "report", "config": "mimic_cxr"}),
    Task("mmmu_medical", load_mmmu, "validation", "mcq", "judge", "image", "MMMU/MMMU",
         "MMMU/MMMU, the five Health & Medicine subjects", paper=False),
    Task("synthetic_text", load_synthetic, "test", "open", "judge", "text", None,
         "outputs/01_synthesize_data/<variant>/dataset (notebook 01), rows without image", paper=False,
         kwargs={"kind": "text"}),
    Task("synthetic_image", load_synthetic, "test", "open", "judge", "image", None,
         "outputs/01_synthesize_data/<variant>/dataset (notebook 01), rows with image", paper=False,
         kwargs={"kind": "image"}),
]
TASKS: dict[str, Task] = {t.name: t for t in _TASKS}
PAPER_TASKS: tuple[str, ...] = tuple(t.name for t in _TASKS if t.paper)


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name lists the valid ones.

    >>> get_task("medqa_v2")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    KeyError: "unknown task 'medqa_v2'; valid tasks: mmlu_clinical_knowledge, mmlu_college_biology, ..."
    """
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[name]


def list_tasks() -> list[dict[str, str]]:
    """Rows of a ``--list-tasks`` table: name, protocol, modality and where the data comes from."""
    return [{"name": t.name, "protocol": t.protocol, "modality": t.modality, "source": t.data_from}
            for t in _TASKS]


def load_task(name: str, source: str | Path | None = None, split: str | None = None, limit: int | None = None,
              image_size: int | None = None, **kw) -> RowStream:
    """Rows of task ``name`` from ``source`` (default: the task's hub id or local default) and ``split``.

    ``image_size`` letterboxes images to a square (image tasks only; text tasks have none to size). Other keywords
    go to the family loader (``image_root``, ``config``, ``cop_base``, ...) over the task's own settings.
    """
    task = get_task(name)
    args = {**task.kwargs, **kw, "split": split or task.split, "limit": limit}
    if source is not None or task.source is not None:
        args["source"] = source if source is not None else task.source
    if task.modality == "image":
        args["image_size"] = image_size
    return task.loader(**args)


__all__ = ["METRICS", "MEDICAL_SUBJECTS", "MissingImageError", "PAPER_TASKS", "PROTOCOLS", "RowStream", "TASKS",
           "Task", "get_task", "list_tasks", "load_medix_r1", "load_task", "release_dataset"]

