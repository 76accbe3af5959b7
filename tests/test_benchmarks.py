"""Benchmark loaders and task registry, on tiny fixtures written in each published layout (see the fixtures' builder,
tests/fixtures/benchmarks/make_fixtures.py)."""

import json
import shutil
import warnings
from pathlib import Path

import datasets
import pytest
import yaml
from PIL import Image

from medix_lib import benchmarks as bm
from medix_lib import data
from medix_lib.benchmarks import _common, _mcq
from medix_lib.benchmarks.medix_r1 import load_medix_r1
from medix_lib.benchmarks.medmcqa import load_medmcqa
from medix_lib.benchmarks.medqa import load_medqa, load_usmle_sa
from medix_lib.benchmarks.mimic_cxr import load_mimic_cxr
from medix_lib.benchmarks.mmlu import load_mmlu
from medix_lib.benchmarks.mmmu import load_mmmu
from medix_lib.benchmarks.pmc_vqa import load_pmc_vqa
from medix_lib.benchmarks.pubmedqa import load_pubmedqa
from medix_lib.benchmarks.slake import load_slake
from medix_lib.benchmarks.vqa_rad import load_vqa_rad
from medix_lib.data import FEATURES, ROW_COLUMNS, ROW_EXTRAS, DataError

FIX = Path(__file__).parent / "fixtures" / "benchmarks"


def run(stream):
    """Rows, stats and warning texts of one pass."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = list(stream)
    return rows, stream.stats, [str(w.message) for w in caught]


def letter(row):
    return "ABCDEFGHI"[row["choices"].index(row["answer"])]


# --- registry ---------------------------------------------------------------------------------------------------------

# Every task on a fixture in one of its layouts: (source, extra loader keywords).
TASK_FIXTURES = {
    **{f"mmlu_{s}": (FIX / "mmlu" / "hub", {}) for s in bm.MEDICAL_SUBJECTS},
    "mmlu_anatomy": (FIX / "mmlu" / "original", {}),
    "medmcqa": (FIX / "medmcqa" / "original", {}),
    "medqa": (FIX / "medqa" / "hf", {}),
    "usmle_sa": (FIX / "usmle_sa" / "hub", {}),
    "pubmedqa": (FIX / "pubmedqa" / "original", {}),
    "mimic_cxr_summarization": (FIX / "mimic_cxr" / "physionet", {}),
    "slake": (FIX / "slake" / "Slake1.0", {}),
    "vqa_rad": (FIX / "vqa_rad" / "original", {}),
    "pathvqa": (FIX / "pathvqa" / "hub", {}),
    "pmc_vqa": (FIX / "pmc_vqa" / "medix", {}),
    "pmc_vqa_hard": (FIX / "pmc_vqa" / "medix", {}),
    "mimic_cxr_report": (FIX / "mimic_cxr" / "medix", {"image_root": FIX / "mimic_cxr" / "physionet"}),
    "mmmu_medical": (FIX / "mmmu", {}),
    "synthetic_text": (FIX / "synthetic" / "dataset", {}),
    "synthetic_image": (FIX / "synthetic" / "dataset", {}),
}


def test_registry_has_the_papers_17_tasks_and_three_more():
    assert set(bm.PAPER_TASKS) == {
        "mmlu_clinical_knowledge", "mmlu_college_biology", "mmlu_college_medicine", "mmlu_medical_genetics",
        "mmlu_professional_medicine", "mmlu_anatomy", "medmcqa", "medqa", "usmle_sa", "pubmedqa",
        "mimic_cxr_summarization", "slake", "vqa_rad", "pathvqa", "pmc_vqa", "pmc_vqa_hard", "mimic_cxr_report"}
    assert set(bm.TASKS) - set(bm.PAPER_TASKS) == {"mmmu_medical", "synthetic_text", "synthetic_image"}
    for task in bm.TASKS.values():
        assert task.protocol in bm.PROTOCOLS and task.metric in bm.METRICS and task.modality in ("text", "image")
        assert (task.metric == "judge_rubric") == task.name.startswith("mimic_cxr") == task.needs_credentials
    assert bm.get_task("medmcqa").split == "validation" and bm.get_task("pubmedqa").protocol == "yes_no"
    assert bm.get_task("vqa_rad").family == "vqa_rad" and bm.get_task("usmle_sa").family == "medqa"


def test_unknown_task_lists_the_valid_names():
    with pytest.raises(KeyError, match="unknown task 'medqa_v2'; valid tasks: mmlu_clinical_knowledge, .*medqa, "):
        bm.get_task("medqa_v2")
    with pytest.raises(KeyError, match="valid tasks"):
        bm.load_task("vqarad")


def test_list_tasks_rows_for_the_table():
    rows = bm.list_tasks()
    assert [r["name"] for r in rows] == list(bm.TASKS)
    assert all(set(r) == {"name", "protocol", "modality", "source"} for r in rows)
    assert next(r for r in rows if r["name"] == "pmc_vqa_hard")["source"] == "sahalshajim/medix-eval-sets:pmc_vqa_hard"


@pytest.mark.parametrize("name", list(bm.TASKS))
def test_every_task_loads_schema_rows_from_a_fixture(name):
    source, kw = TASK_FIXTURES[name]
    rows, stats, _ = run(bm.load_task(name, source=source, image_size=16, **kw))
    assert rows and stats["rows"] == len(rows)
    task = bm.get_task(name)
    for row in rows:
        assert tuple(row)[:len(ROW_COLUMNS)] == ROW_COLUMNS and set(tuple(row)[len(ROW_COLUMNS):]) <= set(ROW_EXTRAS)
        assert row["split"] == ("train" if task.split == "train" else "test")
        assert (row["image"] is not None) == (task.modality == "image")
        if row["image"] is not None:
            assert row["image"].size == (16, 16) and row["image"].mode == "RGB"
        if row["task_type"] == "mcq":
            assert row["answer"] in row["choices"] and row["choices"].count(row["answer"]) == 1


def test_load_task_limit_and_to_dataset():
    stream = bm.load_task("vqa_rad", source=FIX / "vqa_rad" / "original", limit=2)
    assert len(list(stream)) == 2
    ds = stream.to_dataset()
    assert ds.features == FEATURES and len(ds) == 2 and ds[0]["image"].mode == "RGB"


# --- option dependence (MedQA / MMLU defect) --------------------------------------------------------------------------


@pytest.mark.parametrize("question,options,idx,dependent", [
    ("The exam is unremarkable except for a loud S4. Which artery is occluded?", ["RCA", "LAD"], 0, False),
    ("Labs are normal except for low iron. What is the most likely diagnosis?", ["IDA", "B12"], 0, False),
    ("A man has gout. Which of the following is NOT a cause of hyperuricemia?", ["a", "b"], 0, True),
    ("All of the following are carpal bones EXCEPT", ["Scaphoid", "Cuboid"], 1, True),
    ("All are true about vitamin B12 absorption except", ["x", "y"], 0, True),
    ("Which of the following statements is false?", ["x", "y"], 0, True),
    ("Which of the following drugs is not used in asthma?", ["x", "y"], 0, True),
    ("Which of the following is the most likely cause?", ["x", "y", "All of the above"], 2, True),
    ("Which of the following is the most likely cause?", ["x", "y", "Both A and B"], 2, True),
    ("Which of the following is the most likely cause?", ["Exceptional growth", "y"], 0, False),
    ("The patient is NOT allergic to penicillin. What is the best treatment?", ["x", "y"], 0, False),
])
def test_option_dependence_reads_the_question_sentence(question, options, idx, dependent):
    assert (_mcq.option_dependence(question, options, idx) is not None) is dependent


def test_medqa_keeps_case_histories_with_except_and_drops_real_not_questions():
    rows, stats, warned = run(load_medqa(FIX / "medqa" / "original" / "US" / "4_options", "test"))
    assert [r["answer"] for r in rows] == ["Right coronary artery"]  # "unremarkable except for" no longer drops it
    assert stats["skipped_option_dependent"] == 1 and any("NOT" in w and "skipped" in w for w in warned)
    rows, stats, _ = run(load_medqa(FIX / "medqa" / "original" / "US" / "4_options", "test",
                                    keep_option_dependent=True))
    assert len(rows) == 2 and stats["kept_option_dependent"] == 1
    assert rows[1]["choices"] == ["Tremor", "Hypothyroidism", "Hypokalemia", "Diabetes insipidus"]
    assert letter(rows[1]) == "C" and rows[1]["task_type"] == "mcq" and rows[1]["modality"] == "OTHER"


def test_medqa_hf_and_bigbio_layouts():
    rows, stats, _ = run(load_medqa(FIX / "medqa" / "hf", "test"))
    assert [r["id"] for r in rows] == ["medqa-test-00000"] and stats["skipped_option_dependent"] == 1
    assert rows[0]["answer"] == "Right coronary artery" and letter(rows[0]) == "B" and rows[0]["split"] == "test"
    for layout in ("bigbio_source", "bigbio_qa"):
        rows, _, _ = run(load_medqa(FIX / "medqa" / layout, "test"))
        assert rows[0]["answer"] == "Right coronary artery" and letter(rows[0]) == "B"


def test_medqa_four_option_task_rejects_the_five_option_file():
    with pytest.raises(DataError, match=r"medqa: row 0: field 'options': 5 options where this task has 4"):
        list(bm.load_task("medqa", source=FIX / "medqa" / "original" / "US" / "test.jsonl"))


def test_usmle_self_assessment_layouts():
    rows, _, _ = run(load_usmle_sa(FIX / "usmle_sa" / "hub", keep_option_dependent=True))
    assert rows[0]["answer"] == "Doxycycline" and len(rows[0]["choices"]) == 5 and letter(rows[0]) == "B"
    assert rows[1]["answer"] == "All of the above" and rows[0]["split"] == "train"
    rows, _, _ = run(load_usmle_sa(FIX / "usmle_sa" / "medalpaca"))
    assert [(r["id"], r["answer"]) for r in rows] == [("usmle_sa-step1-1", "Glucocerebrosidase"),
                                                       ("usmle_sa-step2-1", "MMR")]


# --- MMLU (root-folder defect) ----------------------------------------------------------------------------------------


def test_mmlu_original_release_from_its_root_folder():
    root = FIX / "mmlu" / "original"
    rows, stats, _ = run(load_mmlu(root, "test", "anatomy"))
    assert [r["answer"] for r in rows] == ["Fibula"] and stats["skipped_option_dependent"] == 1
    assert len(list(load_mmlu(root / "data", "test", "anatomy", keep_option_dependent=True))) == 2
    assert [r["split"] for r in load_mmlu(root, "val", "anatomy")] == ["test"]
    assert [r["id"] for r in load_mmlu(root, "dev", "anatomy")] == ["mmlu_anatomy-dev-0"]


def test_mmlu_hub_layout_per_subject_and_all_folder():
    rows, _, _ = run(load_mmlu(FIX / "mmlu" / "hub", "test", "anatomy", keep_option_dependent=True))
    assert [r["answer"] for r in rows] == ["Fibula", "Cuboid"] and letter(rows[1]) == "C"
    rows, stats, _ = run(load_mmlu(FIX / "mmlu" / "hub", "test", "clinical_knowledge"))
    assert [r["answer"] for r in rows] == ["60-100 bpm"] and stats["filtered_other_subject"] == 6
    with pytest.raises(ValueError, match="valid: anatomy"):
        load_mmlu(FIX / "mmlu" / "hub", "test", "astronomy")


# --- MedMCQA (JSON lines in .json, 0/1-based cop) ---------------------------------------------------------------------

MEDMCQA_ANSWERS = ["Ethosuximide", "Occurs in the duodenum", "Ileum"]


def test_medmcqa_original_release_json_lines_counted_from_one():
    rows, _, _ = run(load_medmcqa(FIX / "medmcqa" / "original", "validation", keep_option_dependent=True))
    assert [r["answer"] for r in rows] == MEDMCQA_ANSWERS and letter(rows[1]) == "D"
    rows, _, _ = run(load_medmcqa(FIX / "medmcqa" / "original" / "dev.json", "dev", keep_option_dependent=True))
    assert [r["answer"] for r in rows] == MEDMCQA_ANSWERS


def test_medmcqa_hub_copy_counted_from_zero():
    rows, stats, _ = run(load_medmcqa(FIX / "medmcqa" / "hub", "validation"))
    assert [r["answer"] for r in rows] == [MEDMCQA_ANSWERS[0], MEDMCQA_ANSWERS[2]]
    assert stats["skipped_option_dependent"] == 1  # "All are true ... except"


def test_medmcqa_renamed_release_file_is_decided_by_its_values(tmp_path):
    shutil.copy(FIX / "medmcqa" / "original" / "dev.json", tmp_path / "validation.jsonl")
    rows, _, _ = run(load_medmcqa(tmp_path, "validation", keep_option_dependent=True))
    assert [r["answer"] for r in rows] == MEDMCQA_ANSWERS  # not off by one


def test_medmcqa_undecidable_numbering_fails_clearly():
    source = FIX / "medmcqa" / "export_ambiguous"
    with pytest.raises(ValueError, match=r"cannot tell whether cop counts from 0 .* pass cop_base=0 or cop_base=1"):
        list(load_medmcqa(source, "validation"))
    assert [r["answer"] for r in load_medmcqa(source, "validation", cop_base=1)] == ["Ethosuximide"]


def test_medmcqa_hidden_test_answers_and_contradicting_values(tmp_path):
    rec = json.loads((FIX / "medmcqa" / "original" / "dev.json").read_text().splitlines()[0])
    (tmp_path / "test.jsonl").write_text(json.dumps({**rec, "cop": -1}) + "\n")
    with pytest.raises(DataError, match=r"medmcqa: row '6e2c-01': field 'cop': -1 marks a hidden answer"):
        list(load_medmcqa(tmp_path, "test", cop_base=0))
    (tmp_path / "dev.json").write_text(json.dumps({**rec, "cop": 0}) + "\n")
    with pytest.raises(DataError, match=r"field 'cop': 0 is outside 1..4"):
        list(load_medmcqa(tmp_path, "validation"))


# --- PubMedQA (labels stay strings) -----------------------------------------------------------------------------------


def test_pubmedqa_original_official_test_set_and_folds():
    rows, _, _ = run(load_pubmedqa(FIX / "pubmedqa" / "original", "test"))
    assert [(r["id"], r["answer"]) for r in rows] == [("pubmedqa-16418930", "no"), ("pubmedqa-9488747", "maybe")]
    assert all(r["choices"] == ["yes", "no", "maybe"] and r["task_type"] == "yes_no" for r in rows)
    assert rows[0]["question"] == "Context: Charts were compared.\nQuestion: Do two acuity charts differ in amblyopia?"
    assert [r["answer"] for r in load_pubmedqa(FIX / "pubmedqa" / "original", "dev")] == ["yes"]


def test_pubmedqa_hub_and_release_layouts():
    rows, _, _ = run(load_pubmedqa(FIX / "pubmedqa" / "hub", "train", config="pqa_labeled"))
    assert [r["answer"] for r in rows] == ["yes", "no", "maybe"] and rows[0]["id"] == "pubmedqa-21645374"
    rows, _, _ = run(load_pubmedqa(FIX / "pubmedqa" / "medix", "test"))
    assert [r["answer"] for r in rows] == ["no", "maybe"] and rows[1]["question"].startswith("Context: Eight infants")


def test_pubmedqa_labels_stay_strings_and_yaml_booleans_fail(tmp_path):
    row = next(iter(bm.load_task("pubmedqa", source=FIX / "pubmedqa" / "original")))
    assert [type(c) for c in row["choices"]] == [str, str, str] and type(row["answer"]) is str
    parsed = yaml.safe_load("QUESTION: Is it?\nCONTEXTS: [c]\nfinal_decision: yes\n")  # YAML 1.1: yes -> True
    assert parsed["final_decision"] is True
    (tmp_path / "test.jsonl").write_text(json.dumps({"pubid": 7, **parsed}) + "\n")
    with pytest.raises(DataError, match=r"pubmedqa: row 7: field 'final_decision': boolean True"):
        list(load_pubmedqa(tmp_path, "test"))


# --- splits -----------------------------------------------------------------------------------------------------------


def test_validate_split_is_an_evaluation_split_and_unknown_names_fail():
    rows, _, _ = run(load_slake(FIX / "slake" / "Slake1.0", "validate"))
    assert [(r["id"], r["split"]) for r in rows] == [("slake-13", "test")]
    rows, _, _ = run(load_mimic_cxr(FIX / "mimic_cxr" / "physionet", "validate", task="summarization"))
    assert [(r["id"], r["split"]) for r in rows] == [("mimic_cxr_summarization-s50000002", "test")]
    with pytest.raises(ValueError, match=r"slake: unknown split 'holdout'; known: train, validation \(validate"):
        load_slake(FIX / "slake" / "Slake1.0", "holdout")


# --- image datasets ---------------------------------------------------------------------------------------------------


def test_slake_english_rows_with_their_modality_field():
    rows, stats, _ = run(load_slake(FIX / "slake" / "Slake1.0", "test", image_size=20))
    assert [(r["id"], r["modality"]) for r in rows] == [("slake-11", "CT_SCAN"), ("slake-13", "X_RAY")]
    assert stats["filtered_language"] == 1 and rows[1]["task_type"] == "yes_no"
    assert all(isinstance(r["image"], Image.Image) and r["image"].size == (20, 20) for r in rows)


def test_missing_image_folder_raises_naming_the_folder_and_image_root(tmp_path):
    folder = FIX / "slake" / "hub_without_images"
    with pytest.raises(_common.MissingImageError,
                       match=rf"slake: row 11: field 'img_name': image file 'xmlab1/source.jpg' not found; "
                             rf"searched {folder / 'imgs'} \(no such folder\), {folder} \(1 entry\); set image_root="):
        list(load_slake(folder, "test"))
    shutil.copy(FIX / "pmc_vqa" / "v1" / "test_clean.csv", tmp_path)
    with pytest.raises(bm.MissingImageError,
                       match=rf"searched {tmp_path} \(1 entry\), {tmp_path / 'figures'} \(no such folder\)"
                             rf".*image_root"):
        list(load_pmc_vqa(tmp_path, "test"))
    assert len(list(load_pmc_vqa(tmp_path, "test", image_root=FIX / "pmc_vqa" / "v1"))) == 2
    with pytest.raises(FileNotFoundError, match="unzip imgs.zip from BoKelvin/SLAKE and set image_root"):
        list(load_slake("BoKelvin/SLAKE", "test"))


def test_unreadable_image_is_skipped_counted_and_warned(tmp_path):
    (tmp_path / "imgs" / "xmlab1").mkdir(parents=True)
    (tmp_path / "imgs" / "xmlab1" / "source.jpg").write_bytes(b"not an image")
    shutil.copytree(FIX / "slake" / "Slake1.0" / "imgs" / "xmlab2", tmp_path / "imgs" / "xmlab2")
    shutil.copy(FIX / "slake" / "Slake1.0" / "test.json", tmp_path)
    rows, stats, warned = run(load_slake(tmp_path, "test"))
    assert [r["id"] for r in rows] == ["slake-13"] and stats["skipped_corrupt_image"] == 1
    assert any("row 11" in w and "unreadable image" in w for w in warned)
    assert any("skipped {'skipped_corrupt_image': 1}" in w for w in warned)


def test_vqa_rad_original_modality_from_its_own_answers_never_from_negations():
    rows, stats, _ = run(load_vqa_rad(FIX / "vqa_rad" / "original", "test"))
    by_qid = {r["id"]: r for r in rows}
    assert list(by_qid) == ["vqa_rad-2", "vqa_rad-3", "vqa_rad-4", "vqa_rad-5"]  # phrase_type test_* only
    assert by_qid["vqa_rad-2"]["modality"] == "MRI_SCAN"  # the image's MODALITY answer, asked in train
    assert by_qid["vqa_rad-3"]["modality"] == "OTHER"  # "does this not represent? ultrasound" is no evidence
    assert by_qid["vqa_rad-4"]["modality"] == "CT_SCAN" and by_qid["vqa_rad-4"]["answer"] == "2"
    assert stats["modality_from_answers"] == 1 and stats["modality_inferred_from_question"] == 1
    assert stats["modality_unknown"] == 2
    assert [r["id"] for r in load_vqa_rad(FIX / "vqa_rad" / "original" / "VQA_RAD Dataset Public.json",
                                          "train")] == ["vqa_rad-1"]


def test_vqa_rad_hub_copy_modality_per_image():
    rows, _, _ = run(load_vqa_rad(FIX / "vqa_rad" / "hub", "test"))
    assert [r["modality"] for r in rows] == ["MRI_SCAN", "MRI_SCAN", "OTHER", "OTHER"]
    assert [r["task_type"] for r in rows] == ["yes_no", "open", "open", "yes_no"]


def test_pathvqa_hub_layout():
    rows, _, _ = run(bm.load_task("pathvqa", source=FIX / "pathvqa" / "hub"))
    assert {r["modality"] for r in rows} == {"MICROSCOPY"} and [r["answer"] for r in rows] == ["granulomas", "yes"]


def test_pmc_vqa_versions_and_release_sets():
    with pytest.raises(ValueError, match=r"several test files \(test.csv, test_clean.csv\).*version="):
        list(load_pmc_vqa(FIX / "pmc_vqa" / "v1", "test"))
    rows, _, _ = run(load_pmc_vqa(FIX / "pmc_vqa" / "v1", "test", version="1-clean"))
    assert [r["answer"] for r in rows] == ["MRI", "H&E"] and rows[0]["choices"] == ["CT", "MRI", "X-ray", "Ultrasound"]
    assert [r["modality"] for r in rows] == ["MRI_SCAN", "MICROSCOPY"] and letter(rows[0]) == "B"
    rows, _, _ = run(load_pmc_vqa(FIX / "pmc_vqa" / "v2" / "test_2.csv", "test"))
    assert rows[0]["answer"] == "Retina" and rows[0]["id"] == "pmc_vqa-0" and rows[0]["modality"] == "OTHER"
    rows, _, _ = run(load_pmc_vqa(FIX / "pmc_vqa" / "medix", "test"))
    assert rows[0]["answer"] == "Spleen" and rows[0]["task_type"] == "mcq" and rows[0]["modality"] == "CT_SCAN"
    rows, _, _ = run(load_pmc_vqa(FIX / "pmc_vqa" / "medix", "test", config="pmc_vqa_hard"))
    assert rows[0]["id"] == "pmc_vqa_hard-test-0" and rows[0]["choices"] is None and rows[0]["task_type"] == "open"


def test_mimic_cxr_physionet_layout_both_tasks():
    rows, stats, warned = run(load_mimic_cxr(FIX / "mimic_cxr" / "physionet", "test", task="report"))
    assert [r["id"] for r in rows] == ["mimic_cxr_report-s50000001", "mimic_cxr_report-s50000003"]
    assert rows[0]["answer"] == ("FINDINGS: The lungs are clear. No pleural effusion. "
                                 "IMPRESSION: No acute cardiopulmonary process.")
    assert rows[0]["image"].getpixel((0, 0)) != Image.new("RGB", (1, 1)).getpixel((0, 0))
    rows, stats, warned = run(load_mimic_cxr(FIX / "mimic_cxr" / "physionet", "test", task="summarization"))
    assert [r["answer"] for r in rows] == ["No acute cardiopulmonary process."] and rows[0]["image"] is None
    assert "Report:\nThe lungs are clear." in rows[0]["question"]
    assert stats["skipped_no_findings_or_impression"] == 1 and any("skipped" in w for w in warned)


def test_mimic_cxr_release_table_needs_the_credentialed_images(tmp_path):
    rows, _, _ = run(load_mimic_cxr(FIX / "mimic_cxr" / "medix", "test",
                                    image_root=FIX / "mimic_cxr" / "physionet"))
    assert rows[0]["question"] == "Generate a detailed report based on the scan." and rows[0]["modality"] == "X_RAY"
    shutil.copy(FIX / "mimic_cxr" / "physionet" / "files" / "p10" / "p10000001" / "s50000001" / "d1-pa.jpg", tmp_path)
    assert len(list(load_mimic_cxr(FIX / "mimic_cxr" / "medix", "test", image_root=tmp_path))) == 1  # flat folder
    missing = r"image file 'files/p10/p10000001/s50000001/d1-pa.jpg' not found.*PhysioNet account.*image_root"
    with pytest.raises(bm.MissingImageError, match=missing):
        list(load_mimic_cxr(FIX / "mimic_cxr" / "medix", "test"))
    with pytest.raises(FileNotFoundError, match="credentialed: create a PhysioNet account"):
        list(load_mimic_cxr("sahalshajim/medix-eval-sets", "test"))


def test_mmmu_medical_subjects_validation():
    rows, stats, warned = run(load_mmmu(FIX / "mmmu", "validation"))
    assert len(rows) == 6 and stats["multi_image_rows"] == 1 and any("only image_1" in w for w in warned)
    mc = rows[0]
    assert mc["answer"] == "Bone" and letter(mc) == "B" and mc["modality"] == "MICROSCOPY"
    opened = next(r for r in rows if r["task_type"] == "open")
    assert opened["answer"] == "pneumothorax" and opened["modality"] == "CT_SCAN" and opened["choices"] is None


def test_medix_r1_release_rows():
    rows, _, _ = run(load_medix_r1(FIX / "medix_r1", "test", image_size=8))
    assert [r["modality"] for r in rows] == ["X_RAY", "OTHER", "MRI_SCAN"] and rows[1]["image"] is None
    assert rows[0]["question"] == "Which lung is abnormal?" and rows[0]["source"] == "medix_r1/slake"
    assert rows[2]["task_type"] == "yes_no"


def test_medix_r1_rows_keep_every_picture_in_order_and_become_notebook_01s_dataset(tmp_path):
    rows, _, _ = run(load_medix_r1(FIX / "medix_r1", "train", image_size=8))
    assert [len(data.pictures(r)) for r in rows] == [2, 1, 0, 3]
    shades = [[p.getpixel((4, 4))[0] for p in data.pictures(r)] for r in rows]
    assert shades[0][0] < shades[0][1] and shades[3] == sorted(shades[3])  # the release's order, not the first only
    assert rows[0]["question"] == "Frontal and lateral views: which side is the effusion on?"
    dataset, stats = bm.release_dataset(FIX / "medix_r1", image_size=8)
    assert stats["train/rows"] == 4 and stats["train/rows_with_several_images"] == 2 and stats["test/rows"] == 3
    dataset.save_to_disk(str(tmp_path / "dataset"))
    saved = datasets.load_from_disk(str(tmp_path / "dataset"))["train"]
    assert [len(p) for p in data.row_pictures(saved)] == [2, 1, 0, 3]
    assert bm.release_dataset(FIX / "medix_r1", limit=1)[0]["train"].num_rows == 1


def test_synthetic_tasks_split_by_image_and_need_notebook_01(tmp_path):
    rows, stats, _ = run(bm.load_task("synthetic_image", source=FIX / "synthetic" / "dataset"))
    assert [r["id"] for r in rows] == ["syn-2", "syn-3"] and stats["filtered_other_kind"] == 1
    # the fixture's ids name no question family; its pictures' source is the package and the modality tag
    assert [(r["family"], r["image_source"]) for r in rows] == [(None, "hpo:CT_SCAN")] * 2
    rows, _, _ = run(bm.load_task("synthetic_text", source=FIX / "synthetic" / "dataset"))
    assert [r["id"] for r in rows] == ["syn-1"] and rows[0]["image"] is None and "image_source" not in rows[0]
    with pytest.raises(FileNotFoundError, match="run notebook 01"):
        list(bm.load_task("synthetic_text", source=tmp_path))


# --- readers ----------------------------------------------------------------------------------------------------------


def test_json_reader_shapes(tmp_path):
    (tmp_path / "lines.json").write_text('{"a": 1}\n{"a": 2}\n')
    (tmp_path / "array.json").write_text('[{"a": 1}]')
    (tmp_path / "mapping.json").write_text('{"k1": {"a": 1}}')
    (tmp_path / "broken.json").write_text('{"a": 1}\n{"a": \n')
    assert list(_common.read_json(tmp_path / "lines.json")) == [{"a": 1}, {"a": 2}]
    assert list(_common.read_json(tmp_path / "array.json")) == [{"a": 1}]
    assert list(_common.read_json(tmp_path / "mapping.json")) == [{"_key": "k1", "a": 1}]
    with pytest.raises(ValueError, match="broken.json: line 2: not a JSON record"):
        list(_common.read_json(tmp_path / "broken.json"))


def test_missing_split_file_lists_what_is_there_and_missing_fields_name_the_row(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"slake: no 'train' files in .*Slake1.0; looked for train.json"):
        list(load_slake(FIX / "slake" / "Slake1.0", "train"))
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": "q?", "image": None}) + "\n")
    with pytest.raises(DataError, match=r"pathvqa: row 'test-0': field 'answer': missing"):
        list(bm.load_task("pathvqa", source=tmp_path))


def test_hub_source_offline_fails_naming_the_dataset_and_the_local_alternative(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match=r"medqa: cannot stream 'GBaker/MedQA-USMLE-4-options-hf' .*source="):
        list(bm.load_task("medqa"))


# --- real public files: empty answers, denied modalities, option-dependent stems ---------------------------------


def _slake_rows():
    return json.loads((FIX / "slake" / "Slake1.0" / "test.json").read_text())


def test_slake_train_row_with_an_empty_answer_is_skipped_counted_and_named(tmp_path):
    # SLAKE's public train.json has one question whose answer is "": it must not stop the whole split
    rows = _slake_rows()
    (tmp_path / "train.json").write_text(json.dumps([rows[0], {**rows[0], "qid": 9835, "answer": ""}, rows[2]]))
    shutil.copytree(FIX / "slake" / "Slake1.0" / "imgs", tmp_path / "imgs")
    stream = load_slake(tmp_path, "train")
    got, stats, warned = run(stream)
    assert [r["id"] for r in got] == ["slake-11", "slake-13"] and stats["rows"] == 2
    assert stats["skipped_empty_answer"] == 1 and stream.empty_answer_ids == ["slake-9835"]
    assert any("row 'slake-9835': the reference answer is empty; skipped (1 so far)" in w for w in warned)
    assert any("skipped {'skipped_empty_answer': 1}" in w and "empty reference answer: 'slake-9835'" in w
               for w in warned)
    assert all(r["split"] == "train" for r in got)


def test_empty_or_null_reference_answers_are_skipped_by_every_loader(tmp_path):
    image = str(FIX / "slake" / "Slake1.0" / "imgs" / "xmlab1" / "source.jpg")
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"question": "What is shown?", "answer": a,
                                                             "image": image}) + "\n"
                                                 for a in ("granuloma", "", None, "  ")))
    stream = bm.load_task("pathvqa", source=tmp_path)
    got, stats, warned = run(stream)
    assert [r["id"] for r in got] == ["pathvqa-test-0"] and stats["skipped_empty_answer"] == 3
    assert stream.empty_answer_ids == ["pathvqa-test-1", "pathvqa-test-2", "pathvqa-test-3"]
    assert sum("the reference answer is empty" in w for w in warned) == 3
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": "What is shown?", "image": image}) + "\n")
    with pytest.raises(DataError, match=r"pathvqa: row 'test-0': field 'answer': missing"):  # a layout error
        list(bm.load_task("pathvqa", source=tmp_path))


def test_medix_r1_solution_with_a_tag_and_no_answer_is_skipped(tmp_path):
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(
        {"id": i, "problem": "What is shown?", "solution": s, "image": None, "source": "pubmedqa"}) + "\n"
        for i, s in enumerate(["<OTHER> yes", "<CT_SCAN> "])))
    stream = load_medix_r1(tmp_path, "test")
    got, stats, _ = run(stream)
    assert [r["answer"] for r in got] == ["yes"] and stream.empty_answer_ids == ["medix_r1-1"]


def test_absent_images_still_fail_loudly_naming_the_folder_even_beside_empty_answers(tmp_path):
    rows = _slake_rows()
    (tmp_path / "train.json").write_text(json.dumps([{**rows[0], "answer": ""}, rows[2]]))
    with pytest.raises(bm.MissingImageError,
                       match=rf"row 11: field 'img_name': image file 'xmlab1/source.jpg' not found; searched "
                             rf"{tmp_path / 'imgs'} \(no such folder\), {tmp_path} \(1 entry\); set image_root="):
        list(load_slake(tmp_path, "train"))
    (tmp_path / "imgs").mkdir()
    with pytest.raises(bm.MissingImageError, match=rf"searched {tmp_path / 'imgs'} \(0 entries\), {tmp_path} "
                                                   rf"\(2 entries\)"):
        list(load_slake(tmp_path, "train"))


def _rad(qid, image, qtype, question, answer):
    return {"image_case_url": "https://medpix.example/case", "evaluation": "given", "qid_linked_id": "x", "qid": qid,
            "image_name": image, "image_organ": "ABD", "question_type": qtype,
            "answer_type": "CLOSED", "phrase_type": "test_freeform", "question": question, "answer": answer}


def test_vqa_rad_modality_question_denied_by_its_answer_is_not_the_images_modality(tmp_path):
    from medix_lib.benchmarks.vqa_rad import IMAGE_FOLDER, ORIGINAL_JSON

    (tmp_path / ORIGINAL_JSON).write_text(json.dumps([
        _rad(10, "synpic300.jpg", "MODALITY", "Is this a CT image?", "no"),
        _rad(11, "synpic300.jpg", "PRES", "Is the liver enlarged?", "yes"),
        _rad(12, "synpic200.jpg", "MODALITY", "Is this an MRI?", "No, CT"),
        _rad(13, "synpic100.jpg", "OTHER", "Is this a CT image?", "yes"),  # mislabelled type: no image evidence
    ]))
    shutil.copytree(FIX / "vqa_rad" / "original" / IMAGE_FOLDER, tmp_path / IMAGE_FOLDER)
    rows, stats, _ = run(load_vqa_rad(tmp_path, "test"))
    assert {r["id"]: r["modality"] for r in rows} == {
        "vqa_rad-10": "OTHER",  # was CT_SCAN: the question's modality, although the answer says no
        "vqa_rad-11": "OTHER", "vqa_rad-12": "CT_SCAN", "vqa_rad-13": "CT_SCAN"}
    assert stats["modality_unknown"] == 2 and stats["modality_inferred_from_question"] == 2


@pytest.mark.parametrize("question,answer,modality", [
    ("Is this a CT image?", "yes", "CT_SCAN"),
    ("Is this a CT image?", "no", None),
    ("is this an mri?", "No", None),
    ("Is the image an MRI scan?", "no", None),
    ("Was this image taken with ultrasound?", "no", None),
    ("Is this a T2 weighted image?", "no", None),
    ("Is this a CT image?", "no, it is an MRI", "MRI_SCAN"),
    ("Is this an MRI?", "No, CT", "CT_SCAN"),
    ("Is this a chest x-ray?", "yes", "X_RAY"),
    ("Is there contrast in this CT?", "no", "CT_SCAN"),  # asks about contrast: the image is still a CT
    ("Is this a mass in the CT?", "no", "CT_SCAN"),
    ("How many kidneys are seen on this CT?", "2", "CT_SCAN"),
    ("Is the liver enlarged?", "no", None),
])
def test_vqa_rad_row_modality_yes_and_no(question, answer, modality):
    from medix_lib.benchmarks.vqa_rad import row_modality

    assert row_modality(question, answer) == modality


OPTION_DEPENDENT_STEMS = [
    "Which of these muscles is not innervated by the femoral nerve?",
    "Which of these is not a branch of the external carotid artery?",
    "A 45-year-old man has a productive cough. Which of these findings is not consistent with pneumonia?",
    "Which of the following statements about the brachial plexus is incorrect?",
    "Which of the following statements about DNA replication is true?",
    "Which one of the following statements concerning enzymes is correct?",
    "Which of the following statements is correct?",
    "Which of the following is true?",
    "Which of the following is false?",
    "Which of the following is true of the lymphatic system?",
    "Which of the following is correct regarding the cranial nerves?",
    "Which of the following is an incorrect statement about meiosis?",
    "All of the following are branches of the facial nerve EXCEPT",
    "All of the following are features of Horner syndrome except:",
    "The following are causes of hypercalcaemia, except",
    "Which is NOT a feature of nephrotic syndrome?",
    "Which is not a feature of nephrotic syndrome?",
    "Which of the following would not be expected in a patient with hyperthyroidism?",
    "Which of the following drugs does not cross the placenta?",
    "Which of the following drugs can't be given in pregnancy?",
    "Which of the following is least likely to cause hypokalaemia?",
    "Which of the following would be the least appropriate treatment?",
]
WELL_POSED_STEMS = [
    "Which of the following is the most likely diagnosis?",
    "A 60-year-old man has crushing chest pain. Which of the following is the most likely diagnosis?",
    "Labs are normal except for low ferritin. Which of the following is the most likely diagnosis?",
    "Which of the following is the correct diagnosis?",
    "Which of the following is the most appropriate next step in management?",
    "Which of the following best describes the mechanism of action of aspirin?",
    "Which of the following is most likely to be found in a patient who is not vaccinated?",
    "Which drug is most appropriate for a patient who cannot take aspirin?",
    "Which of these bones forms the lateral part of the ankle?",
    "Which of the following muscles is responsible for abduction of the arm?",
    "Which artery is occluded?",
    "What is the normal resting heart rate of an adult?",
    "The patient is NOT allergic to penicillin. What is the best treatment?",
    "A woman has a rash which is not itchy. What is the most likely diagnosis?",
]


@pytest.mark.parametrize("stem", OPTION_DEPENDENT_STEMS)
def test_option_dependent_stems_are_dropped(stem):
    assert _mcq.option_dependence(stem, ["w", "x", "y", "z"], 0) is not None


@pytest.mark.parametrize("stem", WELL_POSED_STEMS)
def test_well_posed_stems_are_kept(stem):
    assert _mcq.option_dependence(stem, ["w", "x", "y", "z"], 0) is None


def test_mmlu_drops_option_dependent_stems_from_the_original_release(tmp_path):
    import csv

    path = tmp_path / "data" / "test" / "anatomy_test.csv"
    path.parent.mkdir(parents=True)
    stems = [*OPTION_DEPENDENT_STEMS[:4], *WELL_POSED_STEMS[:3]]
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([[s, "Alpha", "Beta", "Gamma", "Delta", "B"] for s in stems])
    rows, stats, _ = run(load_mmlu(tmp_path, "test", subject="anatomy"))
    assert [r["question"] for r in rows] == WELL_POSED_STEMS[:3]
    assert stats["skipped_option_dependent"] == 4
    kept, stats, _ = run(load_mmlu(tmp_path, "test", subject="anatomy", keep_option_dependent=True))
    assert len(kept) == 7 and stats["kept_option_dependent"] == 4
