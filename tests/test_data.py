"""The data stage: schema, offline synthesis, hygiene, training view, ontology readers and real-dataset loaders."""

import json
import warnings
from pathlib import Path

import datasets
import matplotlib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from medix_lib import data
from medix_lib.contract import MODALITIES, OutputContract

matplotlib.use("Agg")
FIX = Path(__file__).parent / "fixtures" / "data"
SMALL = dict(n_text=39, n_image=24, image_size=48, test_fraction=0.25)


@pytest.fixture(scope="module")
def small():
    return data.synthesize(seed=3, **SMALL)


# --- schema ------------------------------------------------------------------------------------------------------------


def test_schema_columns_and_features():
    assert tuple(data.FEATURES) == data.ROW_COLUMNS
    assert isinstance(data.FEATURES["image"], datasets.Image)


def test_validate_row_names_dataset_row_and_field():
    row = {"id": "r1", "question": "q", "answer": True, "modality": "CT_SCAN", "task_type": "open", "source": "s",
           "split": "train", "image": None, "choices": None}
    with pytest.raises(data.DataError, match=r"mine: row 'r1': field 'answer'"):
        data.validate_row(row, "mine")
    with pytest.raises(data.DataError, match="modality"):
        data.validate_row({**row, "answer": "a", "modality": "PHOTO"}, "mine")
    with pytest.raises(data.DataError, match="task_type"):
        data.validate_row({**row, "answer": "a", "task_type": "essay"}, "mine")


# --- synthesis ---------------------------------------------------------------------------------------------------------


def test_synthesize_schema_splits_and_modalities(small):
    assert set(small) == {"train", "test"}
    assert len(small["train"]) and len(small["test"])
    assert sum(len(ds) for ds in small.values()) == SMALL["n_text"] + SMALL["n_image"]
    for split, ds in small.items():
        assert ds.features == data.FEATURES
        for row in ds:
            data.validate_row(row, "synthetic")
            assert row["split"] == split
            assert row["modality"] in MODALITIES
            if row["image"] is not None:
                assert row["image"].mode == "RGB" and row["image"].size == (48, 48)
            if row["task_type"] == "yes_no":
                assert row["answer"] in ("yes", "no")
    ids = [i for ds in small.values() for i in ds["id"]]
    assert len(ids) == len(set(ids))


def test_synthesize_covers_every_text_family_and_several_image_modalities(small):
    families = {i.split("-")[1] for ds in small.values() for i in ds["id"]}
    text_families = {f for f in families if not f.startswith("image_")}
    assert len(text_families) == 13
    image_modalities = {m for ds in small.values() for m, img in zip(ds["modality"], data._has_image(ds)) if img}
    assert len(image_modalities) >= 6


def test_synthesize_is_reproducible(small):
    again = data.synthesize(seed=3, **SMALL)
    for split in small:
        a, b = small[split], again[split]
        assert a["id"] == b["id"] and a["question"] == b["question"] and a["answer"] == b["answer"]
        assert [x.tobytes() if x else None for x in a["image"]] == [x.tobytes() if x else None for x in b["image"]]
    other = data.synthesize(seed=4, **SMALL)
    assert set(other["train"]["id"]) != set(small["train"]["id"])


def test_synthesize_has_no_leakage_and_keeps_concepts_on_one_side(small):
    assert data.assert_no_leakage(small)["n_leaks"] == 0
    image_groups = {}
    for split, ds in small.items():
        for h in data._hashes(ds):
            if h is not None:
                image_groups.setdefault(h, set()).add(split)
    assert all(len(splits) == 1 for splits in image_groups.values())


def test_synthesize_sources_subset_and_unknown_source():
    dd = data.synthesize(seed=0, n_text=10, n_image=0, image_size=32, test_fraction=0.2, sources=["icd10"])
    assert {s for ds in dd.values() for s in ds["source"]} == {"synthetic/icd10"}
    with pytest.raises(ValueError, match="valid: hpo"):
        data.synthesize(seed=0, n_text=5, n_image=0, image_size=32, test_fraction=0.2, sources=["umls"])


def test_image_sources_read_modality_and_body_part_from_metadata():
    srcs = {s["key"]: s for s in data.image_sources()}
    assert srcs["dicom:RG1_UNCI"]["modality"] == "X_RAY"
    assert srcs["dicom:RG1_UNCI"]["facts"]["body_region"][0] == "chest"
    assert srcs["dicom:RG1_UNCI"]["facts"]["view"][0].startswith("posteroanterior")
    assert srcs["dicom:MR2_UNCI"]["facts"]["weighting"][0] == "T1-weighted"
    assert srcs["dicom:MR_small"]["facts"]["weighting"][0] == "T2-weighted"
    assert srcs["dicom:693_UNCI"]["facts"]["plane"][0] == "axial"
    assert srcs["skimage:retina"]["modality"] == "FUNDUS_PHOTOGRAPHY"
    assert {s["modality"] for s in srcs.values()} <= set(MODALITIES)


# --- hygiene -----------------------------------------------------------------------------------------------------------


def test_leakage_check_catches_planted_text_and_image_leaks(small):
    train, test = small["train"], small["test"]
    text_row = next(r for r in train if r["image"] is None)
    image_row = next(r for r in train if r["image"] is not None)
    planted = datasets.concatenate_datasets([
        test, datasets.Dataset.from_list([{**text_row, "id": "leak-text", "split": "test"},
                                          {**image_row, "id": "leak-image", "split": "test",
                                           "question": "A new question about the same picture?"}],
                                         features=data.FEATURES)])
    report = data.leakage_report(datasets.DatasetDict({"train": train, "test": planted}))
    assert report["question_overlap"] >= 1
    assert report["image_overlap"] >= 1 and "leak-image" in report["examples"]["image_test_ids"]
    with pytest.raises(data.DataError, match="leakage"):
        data.assert_no_leakage(datasets.DatasetDict({"train": train, "test": planted}))


def test_leakage_check_catches_a_resized_copy_of_a_train_image(small):
    image_row = next(r for r in small["train"] if r["image"] is not None)
    copy = image_row["image"].resize((40, 40)).resize((48, 48))
    planted = datasets.Dataset.from_list([{**image_row, "id": "copy", "split": "test", "image": copy}],
                                         features=data.FEATURES)
    assert data.leakage_report(datasets.DatasetDict({"train": small["train"], "test": planted}))["image_overlap"] == 1


def test_deduplicate_removes_exact_and_normalised_duplicates(small):
    ds = small["train"]
    row = next(r for r in ds if r["image"] is None)
    noisy = {**row, "id": "dup", "question": "  " + row["question"].upper() + "!!"}
    doubled = datasets.concatenate_datasets([ds, datasets.Dataset.from_list([noisy], features=data.FEATURES)])
    kept, removed = data.deduplicate(doubled)
    assert removed == 1 and len(kept) == len(ds)


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=40))
def test_normalize_text_is_idempotent(text):
    once = data.normalize_text(text)
    assert data.normalize_text(once) == once


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(alphabet="abcdefgh ", min_size=1, max_size=12).filter(str.strip), min_size=2, max_size=5),
       st.integers(min_value=0, max_value=4))
def test_mcq_to_open_reference_is_the_option_text(options, idx):
    idx %= len(options)
    out = data.mcq_to_open("What is it?", options, idx)
    if out is not None:
        question, answer, choices = out
        assert answer == options[idx].strip() and answer in choices and "Choices" not in question


# --- training view -----------------------------------------------------------------------------------------------------


def test_to_grpo_multimodal_prompt_and_reward_columns(small):
    contract = OutputContract()
    out = data.to_grpo(small["train"], contract)
    for col in ("prompt", "answer", "modality", "question", "task_type", "id", "image"):
        assert col in out.column_names
    for row in out.select(range(len(out))):
        system, user = row["prompt"]
        assert system["role"] == "system" and system["content"][0]["text"] == contract.system_prompt()
        kinds = [p["type"] for p in user["content"]]
        assert kinds == (["image", "text"] if row["image"] is not None else ["text"])
        assert user["content"][-1]["text"] == row["question"]


def test_to_grpo_text_only_uses_plain_strings_and_can_show_choices():
    ds = data.load("medqa", FIX / "medqa", "test").to_dataset()
    out = data.to_grpo(ds, OutputContract(reasoning_tag="think"), with_choices=True)
    system, user = out[0]["prompt"]
    assert "<think>" in system["content"]
    assert user["content"].endswith("C. Right coronary artery D. Left main coronary artery")
    assert "image" not in out.column_names


# --- ontology readers and paraphrase pairs -----------------------------------------------------------------------------


def test_read_hpo_terms_synonyms_and_parents():
    terms = {t.id: t for t in data.read_hpo()}
    mi = terms["HP:0001658"]
    assert mi.name == "Myocardial infarction"
    assert "Heart attack" in mi.exact_synonyms
    assert any(s.kind == "layperson" for s in mi.synonyms)
    assert mi.parents and all(p in terms for p in mi.parents)
    assert mi.definition


def test_read_icd10_hierarchy():
    codes = {c.code: c for c in data.read_icd10()}
    assert codes["I21"].description == "Acute myocardial infarction"
    assert codes["I21"].parent == "I20-I25" and "I21.0" in codes["I21"].children
    assert codes["I21.0"].kind == "subcategory" and codes["I20-I25"].kind == "block"


def test_paraphrase_pairs_balanced_typed_and_deterministic():
    pairs = data.paraphrase_pairs(seed=1, n=80)
    assert len(pairs) == 80 and pairs == data.paraphrase_pairs(seed=1, n=80)
    assert sum(p["label"] for p in pairs) == 40
    types = {p["pair_type"] for p in pairs}
    assert {"sibling", "parent", "random"} <= types and types & {"exact_synonym", "layperson", "abbreviation"}
    assert all(p["label"] == (p["pair_type"] in {"exact_synonym", "layperson", "abbreviation"}) for p in pairs)
    assert all(p["a"] != p["b"] and p["concept"].startswith("HP:") for p in pairs)


# --- data card ---------------------------------------------------------------------------------------------------------


def test_data_card_counts_and_figures(small):
    card = data.data_card(small)
    total = sum(len(ds) for ds in small.values())
    assert card["rows"] == total
    for key in ("by_source", "by_modality", "by_task_type"):
        assert sum(sum(v.values()) for v in card[key].values()) == total
    assert card["answer_words"]["max"] >= card["answer_words"]["median"] >= 1
    json.dumps(card)
    for fig in (data.plot_counts(card), data.plot_answer_lengths(small), data.plot_examples(small["train"], n=4)):
        assert isinstance(fig, matplotlib.figure.Figure)
        matplotlib.pyplot.close(fig)


def test_synthesis_params_validate():
    base = dict(profile="smoke", variant="smoke", output_dir="/tmp/x", seed=0, n_text=10, n_image=5, image_size=64,
                test_fraction=0.2, sources=None, n_paraphrase_pairs=10, n_example_images=4)
    data.SynthesisParams(**base)
    with pytest.raises(ValueError, match="sources"):
        data.SynthesisParams(**{**base, "sources": ["nope"]})
    with pytest.raises(ValueError, match="test_fraction"):
        data.SynthesisParams(**{**base, "test_fraction": 1.0})


# --- loaders -----------------------------------------------------------------------------------------------------------


def _load(name, source, split, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stream = data.load(name, source, split, **kw)
        rows = list(stream)
    return rows, stream.stats, [str(w.message) for w in caught]


def test_load_unknown_name_lists_valid_names():
    with pytest.raises(KeyError, match="valid: medix_r1, medqa"):
        data.load("medqa_v2")


def test_medix_r1_release_rows_and_corrupt_image_counted():
    rows, stats, warned = _load("medix_r1", FIX / "medix_r1", "train", image_size=32)
    assert [r["id"] for r in rows] == ["medix_r1-slake_0001", "medix_r1-medqa_0002", "medix_r1-vqarad_0004"]
    assert [r["modality"] for r in rows] == ["X_RAY", "OTHER", "MRI_SCAN"]
    assert rows[0]["answer"] == "Right lung" and "<image>" not in rows[0]["question"]
    assert rows[0]["image"].mode == "RGB" and rows[0]["image"].size == (32, 32)  # the release stores RGBA
    assert rows[1]["image"] is None and rows[2]["task_type"] == "yes_no"
    assert rows[0]["source"] == "medix_r1/slake"
    assert stats["skipped_corrupt_image"] == 1
    assert any("pathvqa_0003" in w and "image" in w for w in warned)


def test_medix_r1_bad_modality_tag_names_row_and_field(tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text(json.dumps({"id": "x9", "image": [], "source": "s", "problem": "q", "solution": "<PHOTO> a"}) + "\n")
    with pytest.raises(data.DataError, match=r"medix_r1: row 'x9': field 'solution'.*unknown modality"):
        list(data.load("medix_r1", bad, "train"))
    bad.write_text(json.dumps({"id": "x10", "image": [], "source": "s", "problem": "q"}) + "\n")
    with pytest.raises(data.DataError, match=r"row 'x10': field 'solution': missing"):
        list(data.load("medix_r1", bad, "train"))


def test_medqa_mcq_converted_to_open_with_choices_kept():
    rows, stats, _ = _load("medqa", FIX / "medqa", "test")
    assert len(rows) == 2 and stats["skipped_option_dependent"] == 1  # the "EXCEPT" item needs its options
    r = rows[0]
    assert r["task_type"] == "mcq" and r["answer"] == "Right coronary artery" and len(r["choices"]) == 4
    assert "Left circumflex" not in r["question"] and r["split"] == "test"
    rows, _, _ = _load("medqa", FIX / "medqa", "test", keep_option_dependent=True)
    assert len(rows) == 3


def test_medmcqa_zero_based_cop_and_bad_cop(tmp_path):
    rows, stats, _ = _load("medmcqa", FIX / "medmcqa", "validation")
    assert [r["answer"] for r in rows] == ["Ethosuximide", "Ileum"] and stats["skipped_option_dependent"] == 1
    hidden = tmp_path / "test.jsonl"
    rec = json.loads((FIX / "medmcqa" / "validation.jsonl").read_text().splitlines()[1])
    hidden.write_text(json.dumps({**rec, "cop": -1}) + "\n")
    with pytest.raises(data.DataError, match=r"medmcqa: row '.*': field 'cop'"):
        list(data.load("medmcqa", hidden, "test"))


def test_pubmedqa_labels_stay_strings_in_both_layouts(tmp_path):
    rows, _, _ = _load("pubmedqa", FIX / "pubmedqa", "train")
    assert [r["answer"] for r in rows] == ["yes", "maybe"]
    assert all(r["task_type"] == "yes_no" and r["choices"] == ["yes", "no", "maybe"] for r in rows)
    assert rows[0]["question"].startswith("Context: Programmed cell death")
    rows, _, _ = _load("pubmedqa", FIX / "pubmedqa" / "ori_pqal.json", "test")
    assert rows[0]["id"] == "pubmedqa-12377809" and rows[0]["answer"] == "no" and rows[0]["split"] == "test"
    yaml_bool = tmp_path / "train.jsonl"
    yaml_bool.write_text(json.dumps({"pubid": 7, "question": "q?", "context": {"contexts": ["c"]},
                                     "final_decision": False}) + "\n")
    with pytest.raises(data.DataError, match=r"row 7: field 'final_decision': boolean"):
        list(data.load("pubmedqa", yaml_bool, "train"))


def test_mmlu_hub_and_original_csv_layouts():
    rows, _, _ = _load("mmlu", FIX / "mmlu", "test", subset="clinical_knowledge")
    assert [r["answer"] for r in rows] == ["ATP.", "60-100 bpm"] and rows[0]["source"] == "mmlu_clinical_knowledge"
    rows, _, _ = _load("mmlu", FIX / "mmlu" / "data" / "test" / "anatomy_test.csv", "test", subset="anatomy")
    assert [r["answer"] for r in rows] == ["Cranial", "Ulna and capitulum of the humerus"]
    with pytest.raises(ValueError, match="valid: anatomy"):
        data.load("mmlu", FIX / "mmlu", "test", subset="astronomy")


def test_vqa_rad_hub_and_original_layouts():
    rows, _, _ = _load("vqa_rad", FIX / "vqa_rad", "train")
    assert [r["task_type"] for r in rows] == ["yes_no", "open"]
    assert rows[1]["modality"] == "CT_SCAN" and rows[0]["modality"] == "OTHER"
    rows, stats, warned = _load("vqa_rad_original", FIX / "vqa_rad_original" / "VQA_RAD Dataset Public.json", "train")
    assert [r["id"] for r in rows] == ["vqa_rad-1", "vqa_rad-3"]
    assert stats["skipped_corrupt_image"] == 1 and any("row 2" in w for w in warned)
    assert rows[1]["modality"] == "MRI_SCAN"


def test_slake_english_only_with_modality_field():
    rows, stats, _ = _load("slake", FIX / "slake", "train", image_size=40)
    assert [r["id"] for r in rows] == ["slake-0", "slake-2"] and stats["filtered"] == 1
    assert [r["modality"] for r in rows] == ["MRI_SCAN", "X_RAY"]
    assert all(isinstance(r["image"], Image.Image) and r["image"].size == (40, 40) for r in rows)


def test_pathvqa_and_pmc_vqa():
    rows, _, _ = _load("pathvqa", FIX / "pathvqa", "train")
    assert {r["modality"] for r in rows} == {"MICROSCOPY"} and rows[1]["task_type"] == "yes_no"
    rows, _, _ = _load("pmc_vqa", FIX / "pmc_vqa", "test")
    assert [r["answer"] for r in rows] == ["MRI", "H&E"]
    assert rows[0]["choices"] == ["CT", "MRI", "X-ray", "Ultrasound"] and rows[0]["task_type"] == "mcq"


def test_loader_missing_field_names_dataset_row_and_field(tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text(json.dumps({"question": "q?", "image": None}) + "\n")
    with pytest.raises(data.DataError, match=r"pathvqa: row 'train-0': field 'answer': missing"):
        list(data.load("pathvqa", bad, "train"))


def test_loader_missing_split_file_lists_what_is_there():
    with pytest.raises(FileNotFoundError, match="no 'test' file"):
        list(data.load("slake", FIX / "slake", "test"))


def test_row_stream_is_lazy_and_limited():
    stream = data.load("medix_r1", FIX / "medix_r1", "train", limit=1)
    assert len(list(stream)) == 1
    assert stream.to_dataset().features == data.FEATURES
