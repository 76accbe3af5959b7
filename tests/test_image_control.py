"""Whether the picture matters: image tasks asked again with the picture replaced (blank, or another source's), the
controlled answers stored under their own key and compared item by item with the normal run; and held-out accuracy
by the rows' question family."""

import base64
import io
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from medix_lib import benchmarks, cli, data, evaluation, params
from medix_lib.config import ParamsError
from medix_lib.evaluation import image_control, served
from medix_lib.judge import Judge
from tests.judge_doubles import CandidateServer, StubServer

FIX = Path(__file__).parent / "fixtures" / "benchmarks"
VQA_RAD = FIX / "vqa_rad" / "original"


@pytest.fixture
def servers(monkeypatch, tmp_path):
    monkeypatch.setitem(served.SERVED, "backoff", 0.01)
    monkeypatch.setenv("MEDIX_JUDGE_CACHE", str(tmp_path / "judge_cache.sqlite"))
    candidate, judge = CandidateServer(), StubServer()
    yield candidate, judge
    candidate.close()
    judge.close()


def _evaluate(out, servers, control):
    """``evaluate`` of a served candidate on VQA-RAD's fixture (4 test rows, 3 pictures) with an image control."""
    candidate, judge = servers
    code = cli.main(["evaluate", "--model", "served-model", "--candidate-base-url", candidate.url, "--tasks",
                     "vqa_rad", "--source", f"vqa_rad={VQA_RAD}", "--judge", "stub-judge", "--judge-backend",
                     "openai", "--base-url", judge.url, "--output", str(out), "--no-system-prompt", "--image-control",
                     control])
    assert code == 0
    return json.loads((out / "report.json").read_text()), evaluation.ResultsStore(out / "results.sqlite")


def _sent(request: dict) -> tuple[str, Image.Image]:
    """What a served candidate was sent: the messages' text (JSON of every part but the picture) and the picture."""
    parts = request["messages"][-1]["content"]
    url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
    text = json.dumps([m if m is not request["messages"][-1] else
                       {**m, "content": [p for p in parts if p["type"] != "image_url"]} for m in request["messages"]])
    return text, Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def _responses(store, task):
    return {r["item"]: r for r in store.responses("model", task)}


@pytest.mark.parametrize("control", ["blank", "shuffled"])
def test_the_control_replaces_the_picture_and_nothing_else_under_its_own_key(tmp_path, servers, control):
    candidate, _ = servers
    out = tmp_path / "eval"
    _evaluate(out, servers, "none")
    normal = _responses(evaluation.ResultsStore(out / "results.sqlite"), "vqa_rad")
    assert len(normal) == len(candidate.requests) == 4
    report, store = _evaluate(out, servers, control)
    assert len(candidate.requests) == 8, "only the control was asked: the normal rows were already answered"
    assert _responses(store, "vqa_rad") == normal, "the normal rows are untouched"
    controlled = _responses(store, f"vqa_rad@{control}")
    assert set(controlled) == set(normal)
    assert all(controlled[i]["prompt"] == normal[i]["prompt"] for i in normal)

    before = dict(_sent(r) for r in candidate.requests[:4])
    after = dict(_sent(r) for r in candidate.requests[4:])
    assert set(after) == set(before), "every prompt byte for byte the normal run's"
    for text, picture in after.items():
        own = before[text]
        assert picture.tobytes() != own.tobytes()
        if control == "blank":
            assert (picture.size, picture.getextrema()) == (own.size, ((128, 128),) * 3)
        else:  # another row's picture, of another source (another file: other pixels in this fixture)
            assert any(picture.tobytes() == p.tobytes() for t, p in before.items() if t != text)
    if control == "shuffled":  # every test picture shown once, to another row
        assert Counter(p.tobytes() for p in after.values()) == Counter(p.tobytes() for p in before.values())

    reliance = report["picture_reliance"][control]
    assert reliance["tasks"]["vqa_rad"]["model"]["n"] == reliance["pooled"]["model"]["n"] == 4
    assert report["tasks"]["vqa_rad"]["model"]["n"] == 4, "the controlled rows count nowhere else"
    again, _ = _evaluate(out, servers, control)
    assert len(candidate.requests) == 8 and again == report, "a resumed run asks nothing again"


def test_a_local_policy_gets_the_same_prompts_with_the_replaced_pictures(tmp_path, monkeypatch, counting):
    """The local path (``policy.generate``, its boundary recorded here): the same prompts, other pictures."""
    from medix_lib import policy

    seen = []

    class Recorder:
        is_vision = True

    def generate(model, prompts, images=None, **kwargs):
        seen.append((prompts, images))
        return [["<answer>attack</answer>"] for _ in prompts]

    monkeypatch.setattr(policy, "load", lambda name, adapter=None, *bounds: Recorder())
    monkeypatch.setattr(policy, "generate", generate)
    rows = list(benchmarks.load_task("vqa_rad", VQA_RAD))
    store = evaluation.ResultsStore(tmp_path / "results.sqlite")
    judge = Judge(backend="counting", model="m", threshold=0.5, terminology=False)
    summary = evaluation.evaluate(evaluation.Candidate("vlm", "medix-vlm-135m"), {"vqa_rad": lambda: rows}, [judge],
                                  store, evaluation.Protocol(image_control="blank"), progress=False)
    assert summary["vqa_rad"]["generated"] == summary["vqa_rad@blank"]["generated"] == len(rows)
    (prompts, pictures), (control_prompts, control_pictures) = seen
    assert control_prompts == prompts
    assert [[p.size for p in pics] for pics in control_pictures] == [[p.size for p in pics] for pics in pictures]
    assert all(p.getextrema() == ((128, 128),) * 3 for pics in control_pictures for p in pics)
    assert all(r["image"].getextrema() != ((128, 128),) * 3 for r in rows), "the rows keep their own pictures"


def test_a_question_about_several_pictures_is_asked_with_all_of_them_and_controlled_whole():
    """A release row of two views: two image parts in the prompt, both pictures in the served request in order, and
    the blank control greys both."""
    from medix_lib.contract import OutputContract
    from medix_lib.evaluation.protocol import prompt_messages

    views = [Image.new("RGB", (6, 6), "red"), Image.new("RGB", (6, 6), "blue")]
    row = {"id": "r", "question": "Which side?", "answer": "Left", "choices": None, "image": views[0],
           "extra_images": [views[1]]}
    messages = prompt_messages(row, OutputContract(), False, True, with_image=True)
    assert [p["type"] for p in messages[-1]["content"]] == ["image", "image", "text"]
    urls = [p["image_url"]["url"] for p in served.with_images(messages, data.pictures(row))[-1]["content"]
            if p["type"] == "image_url"]
    decoded = [Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))).convert("RGB").getpixel((0, 0))
               for u in urls]
    assert decoded == [(255, 0, 0), (0, 0, 255)]
    with pytest.raises(ValueError, match="more image parts than the pictures"):
        served.with_images(messages, views[:1])
    (blank,) = image_control.controlled_rows([row], "blank", seed=0)
    assert [p.getextrema() for p in data.pictures(blank)] == [((128, 128),) * 3] * 2


def test_shuffled_pictures_come_from_another_source_and_are_fixed_by_the_seed(tmp_path):
    """On rows notebook 01 synthesises (their ``image_source``: many views of one file share it) and on a real
    benchmark's rows (no source field: the pixels say which file)."""
    dataset, _ = data.synthesize(0, 0, 40, 32, 0.3)
    dataset.save_to_disk(str(tmp_path / "dataset"))
    synthetic = list(benchmarks.load_task("synthetic_image", tmp_path / "dataset"))
    assert all(r["family"].startswith("image_") and r["image_source"].startswith("synthetic/") for r in synthetic)
    for rows in (synthetic, list(benchmarks.load_task("vqa_rad", VQA_RAD))):
        shuffled = evaluation.controlled_rows(rows, "shuffled", seed=0)
        own = {r["id"]: r for r in rows}
        for r in shuffled:
            donor = next(o for o in rows if o["image"] is r["image"])
            assert image_control.image_identity(donor) != image_control.image_identity(own[r["id"]])
            assert {k: v for k, v in r.items() if k != "image"} == {k: v for k, v in own[r["id"]].items()
                                                                    if k != "image"}
        assert sorted(id(r["image"]) for r in shuffled) == sorted(id(r["image"]) for r in rows)
        again = evaluation.controlled_rows(rows, "shuffled", seed=0)
        assert [r["image"] is a["image"] for r, a in zip(shuffled, again)] == [True] * len(rows)
    one_source = list(benchmarks.load_task("synthetic_image", FIX / "synthetic" / "dataset"))  # both "hpo:CT_SCAN"
    with pytest.raises(ValueError, match="2 of them share one source .*use image_control 'blank'"):
        evaluation.controlled_rows(one_source, "shuffled", seed=0, task="synthetic_image")


def test_an_unknown_control_is_refused_naming_the_valid_ones(tmp_path, capsys):
    valid = "'image_control'='grey'; valid values: 'none', 'blank', 'shuffled'"
    with pytest.raises(ParamsError, match=valid):
        params.load("04", "smoke", overrides={"image_control": "grey"})
    with pytest.raises(ValueError, match="unknown image control 'grey'; valid: none, blank, shuffled"):
        evaluation.Protocol(image_control="grey")
    assert cli.main(["evaluate", "--tasks", "vqa_rad", "--image-control", "grey", "--output", str(tmp_path)]) == 2
    assert valid in capsys.readouterr().err
    assert params.load("04", "smoke").protocol().image_control == "blank"  # the reference runs run it
    assert params.load("04", "cpu_long").protocol().image_control == "blank"


# --- the report: reliance on a toy store with known numbers, the family breakdown -----------------------------------


def _put(store, task, correct: dict[str, bool | None], families=None):
    """Responses and verdicts of model "m" on ``task``: item -> correct (None: the judge failed on it)."""
    store.put_responses("m", task, [
        {"item": i, "prompt": f"Question {i}?", "reference": "x", "choices": None, "response": "r", "answer": "a",
         "task_type": "open", "modality": "CT_SCAN", "family": (families or {}).get(i)} for i in correct])
    store.put_verdicts("m", task, "judge", "hash", 0, [
        {"item": i, "label": c, "error": "timeout" if c is None else None} for i, c in correct.items()])


def _toy_store(tmp_path):
    store = evaluation.ResultsStore(tmp_path / "results.sqlite")
    store.register("m", {"policy": "m"})
    # synthetic_image: 11 items, 8 right with the picture; without it 3 right of 9, i9 failed, i10 never asked
    _put(store, "synthetic_image", {f"i{k}": k < 8 for k in range(11)})
    _put(store, "synthetic_image@blank", {**{f"i{k}": k < 3 for k in range(9)}, "i9": None})
    # vqa_rad: 4 items, the same right answers both ways
    _put(store, "vqa_rad", {f"v{k}": k < 2 for k in range(4)})
    _put(store, "vqa_rad@blank", {f"v{k}": k < 2 for k in range(4)})
    return store


def test_picture_reliance_on_a_toy_store_with_known_numbers(tmp_path):
    store = _toy_store(tmp_path)
    result = evaluation.report(store, ["m"], ["synthetic_image", "vqa_rad"], "judge", "hash", 2000)
    assert result["tasks"]["synthetic_image"]["m"]["n"] == 11, "controlled rows never mix with the normal ones"
    assert set(result["picture_reliance"]) == {"blank"}
    synthetic = result["picture_reliance"]["blank"]["tasks"]["synthetic_image"]["m"]
    assert (synthetic["n"], synthetic["with"], synthetic["without"]) == (9, 8 / 9, 3 / 9)  # scored both ways
    assert synthetic["diff"] == pytest.approx(5 / 9) and 0 < synthetic["ci_low"] < 5 / 9 < synthetic["ci_high"]
    same = result["picture_reliance"]["blank"]["tasks"]["vqa_rad"]["m"]
    assert (same["n"], same["diff"], same["ci_low"], same["ci_high"]) == (4, 0.0, 0.0, 0.0)
    pooled = result["picture_reliance"]["blank"]["pooled"]["m"]
    assert (pooled["n"], pooled["with"], pooled["without"]) == (13, 10 / 13, 5 / 13)
    assert pooled["diff"] == pytest.approx(5 / 13)
    table = evaluation.reliance_table(result)
    assert table.loc[("blank", "all image tasks", "m"), "n"] == 13
    assert table.loc[("blank", "synthetic_image", "m"), "diff"] == round(5 / 9, 3)
    path = tmp_path / "responses.jsonl"
    assert evaluation.export_responses(store, ["m"], ["synthetic_image", "vqa_rad"], "judge", "hash", path) == 29
    tasks = Counter(json.loads(line)["task"] for line in path.read_text().splitlines())
    assert tasks == {"synthetic_image": 11, "synthetic_image@blank": 10, "vqa_rad": 4, "vqa_rad@blank": 4}


def test_the_reliance_figure_shows_with_and_without_and_the_difference_by_its_interval(tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    from medix_lib import plotting

    result = evaluation.report(_toy_store(tmp_path), ["m"], ["synthetic_image", "vqa_rad"], "judge", "hash", 2000)
    fig = plotting.picture_reliance(result["picture_reliance"], "with and without the picture")
    bars, differences = fig.axes
    assert [round(c.patches[0].get_height(), 3) for c in bars.containers] == [round(10 / 13, 3), round(5 / 13, 3)]
    assert [t.get_text() for t in bars.get_xticklabels()] == ["m\nblank, n=13"]
    assert [t.get_text() for t in differences.get_yticklabels()] == [
        "m · blank\nall image tasks", "m · blank\nsynthetic_image", "m · blank\nvqa_rad"]
    pooled, synthetic, same = [to_hex(line.get_color()) for line in differences.lines if line.get_marker() == "o"]
    assert pooled == synthetic == to_hex(plotting.DIFFERENCE_COLORS["above"])
    assert same == to_hex(plotting.DIFFERENCE_COLORS["spans"])
    assert all(p.stat().st_size > 0 for p in plotting.save_figure(fig, tmp_path, "picture_reliance"))
    plt.close("all")


def test_accuracy_by_question_family_sums_to_each_task(tmp_path):
    store = evaluation.ResultsStore(tmp_path / "results.sqlite")
    store.register("m", {"policy": "m"})
    families = {"i0": "image_plane", "i1": "image_plane", "i2": "image_color", "i3": "image_modality_yes_no"}
    _put(store, "synthetic_image", {"i0": True, "i1": False, "i2": True, "i3": None, "i4": False}, families)
    result = evaluation.report(store, ["m"], ["synthetic_image"], "judge", "hash", 200)
    summary = result["tasks"]["synthetic_image"]["m"]
    by_family = summary["by_family"]
    assert list(by_family) == ["image_color", "image_modality_yes_no", "image_plane", "unknown"]
    assert sum(f["n"] for f in by_family.values()) == summary["n"] == 5
    assert sum(f["scored"] for f in by_family.values()) == summary["scored"] == 4
    assert {f: (s["n"], s["scored"], s["accuracy"]) for f, s in by_family.items() if f != "image_modality_yes_no"} \
        == {"image_color": (1, 1, 1.0), "image_plane": (2, 2, 0.5), "unknown": (1, 1, 0.0)}
    assert result["families"]["m"]["by_family"]["image_plane"]["n"] == 2
    table = evaluation.breakdown_table(result, by="family", tasks=["synthetic_image"])
    assert table.xs("synthetic_image")["n"].sum() == 5 and "all tasks" not in table.index.get_level_values("task")


def test_families_reach_the_store_from_the_rows_and_old_stores_gain_them(tmp_path, counting):
    """Responses stored before the family was kept get it from the task's rows on the next run (nothing generated);
    rows that name none stay ``unknown``."""
    dataset, _ = data.synthesize(0, 0, 40, 32, 0.3)
    dataset.save_to_disk(str(tmp_path / "dataset"))
    rows = list(benchmarks.load_task("synthetic_image", tmp_path / "dataset"))
    store = evaluation.ResultsStore(tmp_path / "results.sqlite")
    candidate, protocol = evaluation.Candidate("m", "medix-vlm-135m"), evaluation.Protocol()
    store.register("m", candidate.settings(protocol))
    store.put_responses("m", "synthetic_image", [
        {"item": r["id"], "prompt": r["question"], "reference": r["answer"], "choices": r["choices"],
         "response": "<answer>attack</answer>", "answer": "attack"} for r in rows])
    assert {r["family"] for r in store.responses("m", "synthetic_image")} == {None}
    judge = Judge(backend="counting", model="m", threshold=0.5, terminology=False)
    summary = evaluation.evaluate(candidate, {"synthetic_image": lambda: rows}, [judge], store, protocol,
                                  progress=False)
    assert summary["policy_loaded"] is False and "synthetic_image@blank" not in summary
    assert {r["item"]: r["family"] for r in store.responses("m", "synthetic_image")} == \
        {r["id"]: r["family"] for r in rows}
    result = evaluation.report(store, ["m"], ["synthetic_image"], evaluation.judge_key(judge), judge.prompt_hash, 200)
    by_family = result["tasks"]["synthetic_image"]["m"]["by_family"]
    assert {f: s["n"] for f, s in by_family.items()} == dict(Counter(r["family"] for r in rows))
    assert sum(s["n"] for s in by_family.values()) == len(rows)
