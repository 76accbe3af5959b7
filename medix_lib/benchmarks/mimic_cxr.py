"""MIMIC-CXR (Johnson et al. 2019): chest radiographs with free-text reports; two tasks scored with the 0-5 rubric.

- report generation: the image in, the report out;
- summarization (text only): the findings in, the impression out.

MIMIC-CXR is credentialed data (PhysioNet: account, training course, data use agreement). Nothing is downloaded
here; point the loader at your own copy. Layouts read by :func:`load_mimic_cxr`:

- the MediX-R1 evaluation set (``sahalshajim/medix-eval-sets`` config ``mimic_cxr``, split ``test``): ``report``,
  ``summary`` and ``image``, a PhysioNet URL of the MIMIC-CXR-JPG file (``.../files/p10/p10000032/s5.../<dicom>
  .jpg``). The images are not in the table: set ``image_root`` to a MIMIC-CXR-JPG copy (the folder holding
  ``files/``) or to one flat folder of the JPGs. Prompts follow the release: "Generate a detailed report based on
  the scan." and "Write a short summary of the following report. Report: ...".
- the PhysioNet releases themselves: a folder with ``mimic-cxr-2.0.0-split.csv.gz`` (``dicom_id``, ``study_id``,
  ``subject_id``, ``split`` = train / validate / test; from MIMIC-CXR-JPG), optionally
  ``mimic-cxr-2.0.0-metadata.csv.gz`` (``ViewPosition``: a PA view is preferred, then AP), the reports
  ``mimic-cxr-reports/files/p<NN>/p<subject>/s<study>.txt`` (MIMIC-CXR) and the images
  ``files/p<NN>/p<subject>/s<study>/<dicom_id>.jpg`` (here or under ``image_root``). The reference report is its
  FINDINGS and IMPRESSION sections; summarization maps FINDINGS to IMPRESSION. Studies lacking the sections a task
  needs are skipped (counted and warned).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ._common import (ImageFolders, MissingImageError, RowStream, locate, make_row, read_file, reference,
                      resolve_split, text)

TASKS = ("report", "summarization")
REPORT_PROMPT = "Generate a detailed report based on the scan."
SUMMARY_PROMPT = "Write a short summary of the following report."
HOW_TO_GET = (" (MIMIC-CXR-JPG is credentialed: create a PhysioNet account, complete its required training, sign "
              "the data use agreement of physionet.org/content/mimic-cxr-jpg/2.1.0/, download the files, e.g. "
              "wget -r -N -c -np --user <you> --ask-password https://physionet.org/files/mimic-cxr-jpg/2.1.0/, and "
              "set image_root to the folder holding files/)")
_SPLIT_FILES = ("mimic-cxr-2.0.0-split.csv.gz", "mimic-cxr-2.0.0-split.csv")
_META_FILES = ("mimic-cxr-2.0.0-metadata.csv.gz", "mimic-cxr-2.0.0-metadata.csv")
_SECTION = re.compile(r"^\s*([A-Z][A-Z /&-]+):", re.M)
_VIEW_RANK = {"PA": 0, "AP": 1}


def sections(report: str) -> dict[str, str]:
    """A report's upper-case headed sections, whitespace collapsed.

    >>> sections("FINAL REPORT\\n FINDINGS: Clear lungs.\\n IMPRESSION:  No acute\\n process.")
    {'FINDINGS': 'Clear lungs.', 'IMPRESSION': 'No acute process.'}
    """
    heads = list(_SECTION.finditer(report))
    return {m.group(1).strip(): " ".join(report[m.end():nxt.start() if nxt else None].split())
            for m, nxt in zip(heads, heads[1:] + [None], strict=True)}


def _first(root: Path, names) -> Path | None:
    return next((root / n for n in names if (root / n).is_file()), None)


def _studies(root: Path, split_file: Path, split_aliases: tuple[str, ...]):
    """One record per study of the split: ids, its best view's dicom and its report text."""
    views = {}
    if meta := _first(root, _META_FILES):
        views = {r["dicom_id"]: r.get("ViewPosition", "") for r in read_file(meta)}
    best: dict[str, dict] = {}
    for i, rec in enumerate(read_file(split_file)):
        ids = {f: text(rec, f, split_file.name, i) for f in ("dicom_id", "study_id", "subject_id", "split")}
        if ids["split"] not in split_aliases:
            continue
        rank = _VIEW_RANK.get(views.get(ids["dicom_id"], ""), 2)
        if ids["study_id"] not in best or rank < best[ids["study_id"]]["_rank"]:
            best[ids["study_id"]] = {**ids, "_rank": rank}
    reports = [d for d in (root / "mimic-cxr-reports", root) if (d / "files").is_dir()]
    for study, rec in best.items():
        subject = rec["subject_id"]
        rel = f"files/p{subject[:2]}/p{subject}/s{study}"
        report = next((d / f"{rel}.txt" for d in reports if (d / f"{rel}.txt").is_file()), None)
        if report is None:
            raise FileNotFoundError(f"mimic_cxr: study {study}: report {rel}.txt not found under "
                                    f"{', '.join(map(str, reports)) or root}; unpack mimic-cxr-reports.zip there")
        parts = sections(report.read_text(encoding="utf-8"))
        yield {"id": f"s{study}", "image": f"{rel}/{rec['dicom_id']}.jpg", "findings": parts.get("FINDINGS", ""),
               "impression": parts.get("IMPRESSION", "")}


def _open(images: ImageFolders, url: str, rid, image_size, stats):
    """A PhysioNet URL or relative path, looked up as ``files/p../..`` (a mirror), then by file name (a flat folder)."""
    rel = url[url.rindex("files/"):] if "files/" in url else url
    try:
        path = images.resolve(rel, rid, "image")
    except MissingImageError as err:
        try:
            path = images.resolve(Path(rel).name, rid, "image")
        except MissingImageError:
            raise err from None
    return images.open(str(path), rid, "image", image_size, stats)


def load_mimic_cxr(source: str | Path = "sahalshajim/medix-eval-sets", split: str = "test", task: str = "report",
                   image_size: int | None = None, limit: int | None = None, image_root: str | Path | None = None,
                   config: str | None = "mimic_cxr") -> RowStream:
    """MIMIC-CXR report generation (``task="report"``) or summarization from a layout in the module docstring."""
    if task not in TASKS:
        raise ValueError(f"mimic_cxr: unknown task {task!r}; valid: {', '.join(TASKS)}")
    name = f"mimic_cxr_{task}"
    sp = resolve_split(name, split)

    def make(stats: Counter):
        path = Path(source).expanduser()
        split_file = _first(path, _SPLIT_FILES) if path.is_dir() else None
        if split_file:
            records, root = _studies(path, split_file, sp.aliases), path
        else:
            found = locate(name, source, sp, ("{config}/{split}-*.parquet", "{split}-*.parquet", "{split}.parquet",
                                              "{split}.jsonl", "{split}.json"), config)
            records, root = found.records(), found.root
        if task == "report" and image_root is None and root is None:
            raise FileNotFoundError(f"{name}: the table names PhysioNet image files it does not hold; set "
                                    f"image_root{HOW_TO_GET}")
        images = ImageFolders.under(name, image_root, root, ("",), HOW_TO_GET)
        for i, rec in enumerate(records):
            rid = rec.get("id", f"{sp.name}-{i}")
            if "findings" in rec:  # PhysioNet layout
                findings, impression = rec["findings"], rec["impression"]
                report = " ".join(f"{k}: {v}" for k, v in (("FINDINGS", findings), ("IMPRESSION", impression)) if v)
                summary = impression if findings else ""
            else:
                report, summary = reference(rec, "report", name, rid), reference(rec, "summary", name, rid)
            if task == "summarization":
                source_text = findings if "findings" in rec else report
                if not summary or not source_text:
                    stats["skipped_no_findings_or_impression"] += 1
                    continue
                yield make_row(name, rid, sp, f"{SUMMARY_PROMPT}\n\nReport:\n{source_text}", summary, "X_RAY",
                               "report")
                continue
            if not report:
                stats["skipped_no_findings_or_impression"] += 1
                continue
            ok, img = _open(images, text(rec, "image", name, rid), rid, image_size, stats)
            if ok:
                yield make_row(name, rid, sp, REPORT_PROMPT, report, "X_RAY", "report", img)

    return RowStream(name, make, limit)
