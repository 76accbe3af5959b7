"""The data stage: schema, offline synthesis, hygiene, training view, ontology readers and the data card.
The published datasets' loaders are tested in tests/test_benchmarks.py."""

import json
from collections import Counter
from pathlib import Path

import datasets
import matplotlib
import pytest
from PIL import Image
from hypothesis import given, settings
from hypothesis import strategies as st

from medix_lib import benchmarks, data, params, plotting
from medix_lib.contract import MODALITIES, OutputContract
from medix_lib.text import normalise

matplotlib.use("Agg")
FIX = Path(__file__).parent / "fixtures" / "benchmarks"
SMALL = dict(n_text=39, n_image=24, image_size=48, test_fraction=0.25)


@pytest.fixture(scope="module")
def small():
    return data.synthesize(seed=3, **SMALL)[0]


# --- schema -----------------------------------------------------------------------------------------------------------


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


# --- synthesis --------------------------------------------------------------------------------------------------------


def test_synthesis_counts_the_distinct_pictures_of_each_split():
    _, stats = data.synthesize(seed=3, **SMALL)
    assert stats["pictures/train"] >= 2 and stats["pictures/test"] >= 1


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
    image_modalities = {m for ds in small.values() for m, img in zip(ds["modality"], data.has_image(ds)) if img}
    assert len(image_modalities) >= 6


def test_synthesize_is_reproducible(small):
    again = data.synthesize(seed=3, **SMALL)[0]
    for split in small:
        a, b = small[split], again[split]
        assert a["id"] == b["id"] and a["question"] == b["question"] and a["answer"] == b["answer"]
        assert [x.tobytes() if x else None for x in a["image"]] == [x.tobytes() if x else None for x in b["image"]]
    other = data.synthesize(seed=4, **SMALL)[0]
    assert set(other["train"]["id"]) != set(small["train"]["id"])


def test_synthesize_has_no_leakage_and_keeps_concepts_on_one_side(small):
    assert data.assert_no_leakage(small)["n_leaks"] == 0
    image_groups = {}
    for split, ds in small.items():
        for h in data.hygiene._hashes(ds):
            if h is not None:
                image_groups.setdefault(h, set()).add(split)
    assert all(len(splits) == 1 for splits in image_groups.values())


def test_synthesize_sources_subset_and_unknown_source():
    dd, stats = data.synthesize(seed=0, n_text=10, n_image=0, image_size=32, test_fraction=0.2, sources=["icd10"])
    assert {s for ds in dd.values() for s in ds["source"]} == {"synthetic/icd10"}
    assert sum(v for k, v in stats.items() if k.startswith("rows/")) == 10
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
    # the multi-vendor examples: an echocardiogram's region from its series description, colour from its pixels
    assert srcs["dicom:color-pl"]["facts"]["body_region"][0] == "heart"
    assert srcs["dicom:color-pl"]["facts"]["color"][0] == "color"
    assert srcs["dicom:examples_overlay"]["facts"]["body_region"][0] == "abdomen"
    per_modality = Counter(s["modality"] for s in srcs.values())
    assert per_modality["CT_SCAN"] >= 4 and per_modality["MRI_SCAN"] >= 5 and per_modality["ULTRASOUND"] >= 6


def test_no_two_pictures_of_the_pool_are_one_picture():
    """Test files re-encode pictures under other names: two such in the pool would put one picture on both sides of
    the split. No view of one source may be a near duplicate of a view of another."""
    import random

    from medix_lib.data import hygiene
    from medix_lib.data.images import image_source_objects, render_view

    hashes = {s.key: [hygiene.image_dhash(render_view(s, random.Random(i), 48, i == 0)[0]) for i in range(4)]
              for s in image_source_objects()[0]}
    keys = sorted(hashes)
    close = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]
             if min(hygiene.hamming_bits(x, y) for x in hashes[a] for y in hashes[b]) <= hygiene.NEAR_DUPLICATE_BITS]
    assert close == []


# --- hygiene ----------------------------------------------------------------------------------------------------------


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


def test_leakage_check_catches_resized_copies_of_train_images(small):
    """Each training picture saved again at twice its size and planted in test. The content-cropped dHash catches most
    such copies; at this 48-px test size a few pictures with little content (a lone cell, a gamma-camera strip) move
    past the threshold (a known limit of the check, measured here rather than hidden)."""
    rows = [r for r in small["train"] if r["image"] is not None]
    copies = [{**r, "id": f"copy-{i}", "split": "test", "image": r["image"].resize((96, 96))}
              for i, r in enumerate(rows)]
    planted = datasets.Dataset.from_list(copies, features=data.FEATURES)
    caught = data.leakage_report(datasets.DatasetDict({"train": small["train"], "test": planted}))["image_overlap"]
    assert caught >= 0.8 * len(rows)


def test_deduplicate_removes_exact_and_normalised_duplicates(small):
    ds = small["train"]
    row = next(r for r in ds if r["image"] is None)
    noisy = {**row, "id": "dup", "question": "  " + row["question"].upper() + "!!"}
    doubled = datasets.concatenate_datasets([ds, datasets.Dataset.from_list([noisy], features=data.FEATURES)])
    kept, removed = data.deduplicate(doubled)
    assert removed == 1 and len(kept) == len(ds)


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=40))
def test_normalise_is_idempotent(text):
    once = normalise(text)
    assert normalise(once) == once


def test_to_grpo_multimodal_prompt_and_reward_columns(small):
    contract = OutputContract()
    out = data.to_grpo(small["train"], contract)
    for col in ("prompt", "answer", "modality", "question", "task_type", "id", "images"):
        assert col in out.column_names
    pictured = data.has_image(small["train"])
    for row, has in zip(out.select(range(len(out))), pictured):
        system, user = row["prompt"]
        assert system["role"] == "system" and system["content"][0]["text"] == contract.system_prompt()
        kinds = [p["type"] for p in user["content"]]
        assert kinds == (["image", "text"] if has else ["text"]) and len(row["images"]) == has
        assert user["content"][-1]["text"] == row["question"]
    # the pictures are the rows' own, moved as stored bytes
    first = pictured.index(True)
    assert out[first]["images"][0].tobytes() == small["train"][first]["image"].tobytes()


def _row(rid: str, n_pictures: int) -> dict:
    shades = [Image.new("RGB", (8, 8), (40 * k, 0, 0)) for k in range(n_pictures)]
    return data.validate_row({"id": rid, "question": f"q {rid}?", "answer": "a", "modality": "X_RAY",
                              "task_type": "open", "source": "s", "split": "train",
                              "image": data.encode_image(shades[0]) if shades else None, "choices": None,
                              "extra_images": [data.encode_image(x) for x in shades[1:]]})


def test_a_row_with_several_pictures_keeps_every_one_in_order_through_to_grpo():
    ds = datasets.Dataset.from_list([_row("t", 0), _row("one", 1), _row("three", 3)], features=data.FEATURES)
    out = data.to_grpo(ds, OutputContract())
    assert [len(x) for x in out["images"]] == [0, 1, 3]
    assert [[p["type"] for p in r[1]["content"]].count("image") for r in out["prompt"]] == [0, 1, 3]
    assert [img.getpixel((0, 0))[0] for img in out[2]["images"]] == [0, 40, 80]
    assert [[img.getpixel((0, 0))[0] for img in pics] for pics in data.row_pictures(ds)] == [[], [0], [0, 40, 80]]


def test_extra_images_without_a_first_image_is_refused_naming_the_row():
    row = {**_row("x", 0), "extra_images": [data.encode_image(Image.new("RGB", (2, 2)))]}
    with pytest.raises(data.DataError, match="row 'x'.*'extra_images'"):
        data.validate_row(row)


def test_to_grpo_text_only_uses_plain_strings_and_can_show_choices():
    ds = benchmarks.load_task("medqa", FIX / "medqa" / "hf").to_dataset()
    out = data.to_grpo(ds, OutputContract(reasoning_tag="think"), with_choices=True)
    system, user = out[0]["prompt"]
    assert "<think>" in system["content"]
    assert user["content"].endswith("C. Left anterior descending artery D. Left main artery")
    assert "images" not in out.column_names


# --- ontology readers -------------------------------------------------------------------------------------------------


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


# --- data card --------------------------------------------------------------------------------------------------------


def test_data_card_counts_and_figures(small):
    card = data.data_card(small)
    total = sum(len(ds) for ds in small.values())
    assert card["rows"] == total
    for key in ("by_source", "by_modality", "by_task_type"):
        assert sum(sum(v.values()) for v in card[key].values()) == total
    assert card["answer_words"]["max"] >= card["answer_words"]["median"] >= 1
    json.dumps(card)
    for fig in (plotting.data_counts(card), plotting.answer_lengths(small),
                plotting.image_examples(small["train"], n=4)):
        assert isinstance(fig, matplotlib.figure.Figure)
        matplotlib.pyplot.close(fig)


def test_synthesis_params_validate():
    params.SynthesisParams(n_text=10, n_image=5)
    with pytest.raises(ValueError, match="sources"):
        params.SynthesisParams(sources=["nope"])
    with pytest.raises(ValueError, match="test_fraction"):
        params.SynthesisParams(test_fraction=1.0)
