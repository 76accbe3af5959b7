"""How much of a picture's imaging modality the frozen tower can give away at all: a nearest-picture probe.

GRPO's modality reward can only teach the policy to name the modality of an unseen picture if the tower's features
put that picture near training pictures of the same modality. The probe measures exactly that, with no training:
every rendered view of a picture is matched (cosine of mean-pooled Lite0 features) to its nearest view of *another*
training picture. For the data stage's test pictures that is the real split; for each training picture it is
leave-one-picture-out. Its accuracy is a rough ceiling for held-out modality accuracy that the pictures support.
"""

from __future__ import annotations

from collections import Counter


def tower():
    """The VLM's vision tower alone (Lite0 ImageNet weights, eval mode): no language model is loaded."""
    from transformers import EfficientNetModel

    from medix_lib.vlm.model import lite0_config, lite0_state_dict

    model = EfficientNetModel(lite0_config())
    model.load_state_dict(lite0_state_dict(model), strict=True)
    return model.eval()


def features(images, batch_size: int = 16, progress: bool = True):
    """L2-normalised, spatially mean-pooled tower features, one row per image."""
    import torch
    from medix_lib.progress import bar as progress_bar

    from medix_lib.vlm.model import image_processor

    model, processor, rows = tower(), image_processor(), []
    with torch.no_grad():
        for start in progress_bar(range(0, len(images), batch_size), desc="tower features", progress=progress,
                                  leave=False):
            pixels = processor(list(images[start:start + batch_size]), return_tensors="pt")["pixel_values"]
            rows.append(model(pixels).last_hidden_state.mean(dim=(2, 3)))
    return torch.nn.functional.normalize(torch.cat(rows), dim=1)


def modality_probe(data_seed: int = 0, test_fraction: float = 0.2, sources=("pydicom", "skimage"),
                   views_per_picture: int = 8, seed: int = 0) -> dict:
    """Per picture of the data stage's split (its ``data_seed``, ``test_fraction`` and image ``sources``): modality,
    split, the share of its views whose nearest view of another *training* picture has the same modality, and which
    modalities those neighbours had. ``heldout`` averages the test pictures (the real split), ``leave_one_out`` the
    training pictures; ``chance`` is what always naming the commonest training modality scores on the test pictures.
    """
    from medix_lib.data.images import image_source_objects
    from medix_lib.vlm.alignment import data_split, views

    train_sources, test_keys = data_split(data_seed, test_fraction, sources)
    sources = train_sources + [s for s in image_source_objects()[0] if s.key in test_keys]
    drawn = views(sources, views_per_picture, seed)
    feats = features([image for image, _, _ in drawn])
    keys = [key for _, _, key in drawn]
    modality = {s.key: s.modality for s in sources}
    train = [i for i, key in enumerate(keys) if key not in test_keys]
    pictures = {}
    for source in sources:
        mine = [i for i, key in enumerate(keys) if key == source.key]
        others = [i for i in train if keys[i] != source.key]
        nearest = (feats[mine] @ feats[others].T).argmax(dim=1).tolist()
        found = Counter(modality[keys[others[j]]] for j in nearest)
        pictures[source.key] = {"modality": source.modality, "split": "test" if source.key in test_keys else "train",
                                "accuracy": found[source.modality] / len(mine), "nearest": dict(found.most_common())}

    def mean(split):
        scores = [p["accuracy"] for p in pictures.values() if p["split"] == split]
        return sum(scores) / len(scores) if scores else None

    commonest = Counter(modality[keys[i]] for i in train).most_common(1)[0][0]
    test = [p for p in pictures.values() if p["split"] == "test"]
    chance = sum(p["modality"] == commonest for p in test) / len(test) if test else None
    return {"views_per_picture": views_per_picture, "pictures": pictures, "heldout": mean("test"),
            "leave_one_out": mean("train"), "chance": chance, "commonest_training_modality": commonest}
