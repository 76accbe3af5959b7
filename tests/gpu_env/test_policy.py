"""A mixed text + image batch through medix_lib.policy.generate with transformers 5.17's Qwen2.5-VL processor: the
processor refuses a batch where some rows have no image (the gpu profile's first-run crash in notebooks 03 and 04),
so generate must never hand it one."""

import pytest
from PIL import Image

from medix_lib import data, policy
from medix_lib.contract import OutputContract


def mixed_rows(n=4):
    import datasets

    rows = [{"id": str(i), "question": f"What is shown {i}?", "answer": "CT scan", "modality": "CT_SCAN",
             "task_type": "open", "source": "t", "split": "test", "choices": None, "extra_images": [],
             "image": Image.new("RGB", (96, 96), "gray") if i % 2 == 0 else None} for i in range(n)]
    return datasets.Dataset.from_list(rows, features=data.FEATURES)


def test_the_processor_refuses_a_batch_with_a_missing_image(tiny):
    from tests.gpu_env.tiny import vlm_processor

    proc = vlm_processor(tiny.vlm)
    prompts = data.to_grpo(mixed_rows(2), OutputContract())["prompt"]
    texts = [proc.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    with pytest.raises(TypeError):
        proc(text=texts, images=[[Image.new("RGB", (96, 96))], None], return_tensors="pt", padding=True)


def test_mixed_batch_generates_every_row_in_order_without_a_missing_image(tiny, processor_patch, monkeypatch):
    pol = policy.load(str(tiny.vlm))
    assert pol.is_vision
    seen = []
    call = type(pol.processing_class).__call__

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("images"))
        return call(self, *args, **kwargs)

    monkeypatch.setattr(type(pol.processing_class), "__call__", spy)
    rows = mixed_rows(6)
    prompts = data.to_grpo(rows, OutputContract())["prompt"]
    out = policy.generate(pol, prompts, images=rows["image"], max_new_tokens=4, batch_size=8, progress=False)
    assert len(out) == 6 and all(len(o) == 1 and isinstance(o[0], str) for o in out)
    assert seen and all(images and all(image is not None for image in images) for images in seen)
    alone = policy.generate(pol, prompts[1:2], images=rows["image"][1:2], max_new_tokens=4, progress=False)
    assert alone[0] == out[1]  # greedy: a text row's answer does not depend on its batch mates
