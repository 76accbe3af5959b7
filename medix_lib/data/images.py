"""Image questions from real pictures that install offline: the bundled DICOM test files (pydicom, pydicom-data)
and scikit-image's fundus and microscopy photos, with modality, region, view, plane and properties read from their own
metadata, rendered into deterministic views (frame, display window, crop, and a flip only where no anatomy or
laterality is mirrored)."""

from __future__ import annotations

import functools
import random
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from medix_lib.data.schema import Candidate
from medix_lib.text import lower_first

def letterbox(image: Image.Image, size: int) -> Image.Image:
    """RGB, square ``size`` x ``size``, aspect kept with black padding (a stretched whole-body scan misleads).

    >>> letterbox(Image.new("L", (40, 10)), 8).size
    (8, 8)
    """
    image = image.convert("RGB")
    scale = size / max(image.size)
    w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    canvas = Image.new("RGB", (size, size))
    canvas.paste(image.resize((w, h), Image.BILINEAR), ((size - w) // 2, (size - h) // 2))
    return canvas


_MODALITY_OF_DICOM = {
    "CT": "CT_SCAN", "MR": "MRI_SCAN", "CR": "X_RAY", "DX": "X_RAY", "US": "ULTRASOUND", "MG": "MAMMOGRAPHY",
    "XA": "ANGIOGRAPHY", "RF": "FLUOROSCOPY", "PT": "PET_SCAN", "OP": "FUNDUS_PHOTOGRAPHY", "OPT": "OCT_SCAN",
    "ES": "ENDOSCOPY", "XC": "CLINICAL_PHOTOGRAPHY", "SM": "MICROSCOPY",
    # The 16 tags have no planar-scintigraphy tag; gamma-camera imaging is closest to SPECT.
    "NM": "SPECT",
}
_MODALITY_WORDS = {
    "CT": "computed tomography (CT)", "MR": "magnetic resonance imaging (MRI)", "CR": "plain radiography (X-ray)",
    "DX": "plain radiography (X-ray)", "US": "ultrasound", "NM": "nuclear medicine gamma-camera imaging (scintigraphy)",
}
_MODALITY_SHORT = {
    "CT_SCAN": "CT scan", "MRI_SCAN": "MRI scan", "X_RAY": "radiograph", "ULTRASOUND": "ultrasound image",
    "SPECT": "nuclear medicine scan", "FUNDUS_PHOTOGRAPHY": "fundus photograph", "MICROSCOPY": "microscopy image",
    "GRAPHICS": "computer-generated image",
}
_ANATOMY_WORDS = [
    (r"\bshoulder", "shoulder"), (r"\btibia|\bankle|\bleg\b", "lower leg"), (r"\bthorax|\bchest|\blung", "chest"),
    (r"\babdomen|\bliver", "abdomen"), (r"\bhead\b|\bbrain", "head"), (r"\bknee", "knee"), (r"\bpelvis", "pelvis"),
    (r"whole body", "whole body"), (r"echocardiogra|\bheart\b|\bcardiac", "heart"),
]
_CT_WINDOWS = {  # name: (level, width) in Hounsfield units
    "soft-tissue": (40, 400), "lung": (-600, 1500), "bone": (400, 1800), "brain": (40, 80),
}
_PATIENT_POSITIONS = {
    "HFS": "head first, supine", "HFP": "head first, prone", "FFS": "feet first, supine", "FFP": "feet first, prone",
}

# Which bundled DICOM files are distinct pictures (the other test files are re-encodings of these, synthetic test
# patterns, or segmentation/dose objects) and which tag holds a clinical finding. Everything else comes from the tags.
_DICOM_FILES: dict[str, dict[str, str]] = {
    "CT_small.dcm": {}, "693_UNCI.dcm": {}, "J2K_pixelrep_mismatch.dcm": {},
    "MR_small.dcm": {}, "MR2_UNCI.dcm": {}, "MR-SIEMENS-DICOM-WithOverlays.dcm": {}, "emri_small.dcm": {},
    "RG1_UNCI.dcm": {}, "RG3_UNCI.dcm": {"finding_tag": "StudyDescription"},
    "US1_UNCI.dcm": {}, "OBXXXX1A.dcm": {}, "examples_ybr_color.dcm": {},
    "JPEG2000_UNC.dcm": {"study_tag": "StudyDescription"},
    # distinct pictures among the test files' multi-vendor examples (more per modality, so alignment can generalise;
    # examples_rgb_color is US1_UNCI again, 5 of 256 dHash bits apart)
    "eCT_Supplemental.dcm": {}, "examples_overlay.dcm": {}, "examples_palette.dcm": {}, "gdcm-US-ALOKA-16.dcm": {},
    "color-pl.dcm": {},
}


@dataclass
class ImageSource:
    key: str  # the concept group: every view of one picture stays on one side of the split
    modality: str
    frames: list[np.ndarray]  # float32 HxW (Hounsfield units for CT) or uint8 HxWx3
    facts: dict[str, tuple[str, str]]  # question kind -> (answer, task type)
    hounsfield: bool = False
    flip_ok: bool = False  # only where no anatomy or laterality convention is broken by mirroring
    origin: str = ""


def _downsample(arr: np.ndarray, max_side: int) -> np.ndarray:
    h, w = arr.shape[:2]
    if max(h, w) <= max_side:
        return arr
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if arr.ndim == 2:
        return np.asarray(Image.fromarray(arr.astype(np.float32), mode="F").resize(size, Image.BILINEAR))
    return np.asarray(Image.fromarray(arr).resize(size, Image.BILINEAR))


def _plane(iop) -> str | None:
    if not iop or len(iop) != 6:
        return None
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    axis = int(np.argmax(np.abs(normal)))
    name = ("sagittal", "coronal", "axial")[axis]
    return name if abs(normal[axis]) >= 0.9 * np.linalg.norm(normal) else f"oblique {name}"


def _mr_weighting(ds) -> str | None:
    text = " ".join(str(ds.get(k, "") or "") for k in ("ProtocolName", "SeriesDescription", "SequenceName")).lower()
    if re.search(r"\bt1|t1w", text):
        return "T1-weighted"
    if re.search(r"\bt2|t2w", text):
        return "T2-weighted"
    tr, te = ds.get("RepetitionTime"), ds.get("EchoTime")
    if tr is None or te is None:
        return None
    tr, te = float(tr), float(te)
    if tr < 800 and te < 30:
        return "T1-weighted"
    if tr > 2000 and te > 80:
        return "T2-weighted"
    if tr > 2000 and te < 30:
        return "proton-density-weighted"
    return None


def _dicom_source(name: str, extra: dict[str, str]) -> ImageSource | None:
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_color_lut

    path = get_testdata_file(name)
    if path is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    code = str(ds.get("Modality", ""))
    if code not in _MODALITY_OF_DICOM:
        return None
    frames_n = int(ds.get("NumberOfFrames", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    per_frame = list(pixels) if frames_n > 1 else [pixels]
    hounsfield = code == "CT"
    frames = []
    for f in per_frame:
        if f.ndim == 2:
            slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
            f = f.astype(np.float32) * slope + intercept
            if photometric == "MONOCHROME1":  # MONOCHROME1 stores white as low values
                f = f.max() - f
        else:
            f = np.clip(f, 0, 255).astype(np.uint8) if f.dtype != np.uint8 else f
        frames.append(_downsample(f, 512))
    facts: dict[str, tuple[str, str]] = {"modality": (_MODALITY_WORDS[code], "open")}
    descriptions = " ".join(str(ds.get(k, "") or "") for k in ("StudyDescription", "SeriesDescription",
                                                                "ProtocolName", "BodyPartExamined"))
    anatomy = next((word for pat, word in _ANATOMY_WORDS if re.search(pat, descriptions, re.I)), None)
    if anatomy:
        facts["body_region"] = (anatomy, "open")
    view = str(ds.get("ViewPosition", "") or "")
    if view in ("PA", "AP"):
        facts["view"] = ({"PA": "posteroanterior (PA)", "AP": "anteroposterior (AP)"}[view] + " projection", "open")
    plane = _plane(ds.get("ImageOrientationPatient"))
    if plane and code in ("CT", "MR"):
        facts["plane"] = (plane, "open")
    if code == "MR" and (weighting := _mr_weighting(ds)):
        facts["weighting"] = (weighting, "open")
    agent = str(ds.get("ContrastBolusAgent", "") or "").strip()
    if agent:
        facts["contrast"] = ("yes", "yes_no")
    elif re.search(r"\bplain\b|non.?contrast", descriptions, re.I):
        facts["contrast"] = ("no", "yes_no")
    position = str(ds.get("PatientPosition", "") or "")
    if position in _PATIENT_POSITIONS and code in ("CT", "MR", "NM"):
        facts["position"] = (_PATIENT_POSITIONS[position], "open")
    laterality = str(ds.get("Laterality", "") or ds.get("ImageLaterality", "") or "")
    if laterality in ("L", "R"):
        facts["laterality"] = ({"L": "left", "R": "right"}[laterality], "open")
    if tag := extra.get("finding_tag"):
        facts["finding"] = (lower_first(str(ds.get(tag))), "open")
    if tag := extra.get("study_tag"):
        facts["study"] = (str(ds.get(tag)).lower() + " scintigraphy", "open")
    color = frames[0].ndim == 3 and float(np.abs(np.diff(frames[0].astype(np.int16), axis=2)).mean()) > 2
    facts["color"] = ("color" if color else "grayscale", "open")
    stem = Path(name).stem
    return ImageSource(f"dicom:{stem}", _MODALITY_OF_DICOM[code], frames, facts, hounsfield, False, f"pydicom:{name}")


def _skimage_sources() -> list[ImageSource]:
    from skimage import data as skdata

    def src(key, modality, array, facts, flip_ok):
        arr = array if array.ndim == 3 else array.astype(np.float32)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        return ImageSource(f"skimage:{key}", modality, [_downsample(arr, 512)], facts, False, flip_ok,
                            f"skimage.data.{key}")

    return [
        # Docstrings of scikit-image's data module are the metadata: what each picture shows and where it came from.
        src("retina", "FUNDUS_PHOTOGRAPHY", skdata.retina(), {
            "modality": ("fundus photography", "open"), "laterality": ("left eye", "open"),
            "finding": ("normal fundus", "open"), "color": ("color", "open"),
            "body_region": ("retina (eye)", "open")}, False),
        src("microaneurysms", "FUNDUS_PHOTOGRAPHY", skdata.microaneurysms(), {
            "modality": ("fundus photography (green channel)", "open"),
            "finding": ("retinal microaneurysms (diabetic retinopathy)", "open"), "color": ("grayscale", "open"),
            "body_region": ("retina (eye)", "open")}, False),
        src("immunohistochemistry", "MICROSCOPY", skdata.immunohistochemistry(), {
            "modality": ("brightfield light microscopy", "open"),
            "stain": ("immunohistochemistry with DAB (brown) and hematoxylin counterstain", "open"),
            "tissue": ("colonic glands (colon)", "open"), "color": ("color", "open")}, True),
        src("cell", "MICROSCOPY", skdata.cell(), {
            "modality": ("quantitative phase microscopy (digital holography)", "open"),
            "finding": ("a single cell floating in saline", "open"), "color": ("grayscale", "open")}, True),
        src("shepp_logan_phantom", "GRAPHICS", skdata.shepp_logan_phantom(), {
            "modality": ("computer-generated Shepp-Logan head phantom (synthetic image)", "open"),
            "finding": ("Shepp-Logan phantom, a synthetic model of a head cross-section used to test CT "
                        "reconstruction", "open"), "color": ("grayscale", "open")}, True),
    ]


_IMAGE_TEMPLATES: dict[str, list[str]] = {
    "modality": ["What imaging modality was used to acquire this image?",
                 "Which imaging technique produced this image?",
                 "Name the imaging modality shown.", "What type of medical image is this?"],
    "modality_yes_no": ["Is this image {candidate}?", "Is this {candidate}?"],
    "body_region": ["Which body region is shown in this image?", "What part of the body is imaged here?",
                    "Which anatomical region does this image cover?"],
    "view": ["What radiographic projection is this?", "Which view was used for this radiograph?",
             "Was this radiograph taken in AP or PA projection?"],
    "plane": ["In which plane was this image acquired?", "What is the imaging plane of this slice?",
              "Is this slice axial, coronal or sagittal?"],
    "weighting": ["What is the MRI weighting of this image?", "Which MRI sequence weighting is shown?",
                  "Is this a T1-, T2- or proton-density-weighted image?"],
    "contrast": ["Was intravenous contrast given for this scan?", "Is this a contrast-enhanced study?"],
    "position": ["How was the patient positioned for this scan?", "What was the patient position during acquisition?"],
    "laterality": ["Which side is imaged?", "Is the left or the right side shown?"],
    "finding": ["What is shown in this image?", "What is the main finding in this image?",
                "Describe the key finding in this image."],
    "study": ["What kind of nuclear medicine study is this?", "Which scan type is shown?"],
    "stain": ["What staining technique was used on this specimen?", "Which stain is shown in this micrograph?"],
    "tissue": ["What tissue is shown in this micrograph?", "Which tissue is visible here?"],
    "color": ["Is this image in color or grayscale?", "Is this a color or a grayscale image?"],
    "window": ["Which display window is applied to this CT image?", "What CT window setting is used here?"],
}


@functools.lru_cache(maxsize=1)
def image_source_objects() -> tuple[tuple[ImageSource, ...], tuple[str, ...]]:
    sources, failed = [], []
    for name, extra in _DICOM_FILES.items():
        try:
            s = _dicom_source(name, extra)
        except Exception as err:  # a decoder plugin missing on this machine: skip that file, say so
            failed.append(f"{name}: {type(err).__name__}: {err}")
            continue
        if s is not None:
            sources.append(s)
    sources.extend(_skimage_sources())
    return tuple(sources), tuple(failed)


def image_sources() -> list[dict]:
    """What the image synthesiser draws from: key, modality, frames and the metadata facts it can ask about."""
    sources, failed = image_source_objects()
    for f in failed:
        warnings.warn(f"image source skipped: {f}", stacklevel=2)
    return [{"key": s.key, "modality": s.modality, "frames": len(s.frames), "facts": dict(s.facts), "origin": s.origin}
            for s in sources]


def render_view(src: ImageSource, rng: random.Random, size: int,
                canonical: bool) -> tuple[Image.Image, str, str | None]:
    """One view of a source: a frame, a display window, a crop and (where anatomy allows) a flip."""
    frame_idx = 0 if canonical else rng.randrange(len(src.frames))
    arr = src.frames[frame_idx]
    window = None
    if arr.ndim == 2:
        if src.hounsfield:
            window = "soft-tissue" if canonical else rng.choice(sorted(_CT_WINDOWS))
            level, width = _CT_WINDOWS[window]
            lo, hi = level - width / 2, level + width / 2
        else:
            p_lo, p_hi = (0.5, 99.5) if canonical else (rng.uniform(0, 3), rng.uniform(97, 100))
            lo, hi = np.percentile(arr, [p_lo, p_hi])
        arr = (np.clip((arr - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
    img = Image.fromarray(arr).convert("RGB")
    aug = [f"frame{frame_idx}", f"window={window}" if window else ""]
    if not canonical:
        sw, sh = rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0)
        w, h = max(8, int(img.width * sw)), max(8, int(img.height * sh))
        x, y = rng.randint(0, img.width - w), rng.randint(0, img.height - h)
        img = img.crop((x, y, x + w, y + h))
        aug.append(f"crop={x},{y},{w},{h}")
        if src.flip_ok and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
            aug.append("flip")
    return letterbox(img, size), ";".join(a for a in aug if a), window


def image_candidates(rng: random.Random, size: int, sources: list[ImageSource]) -> Iterator[Candidate]:
    """Round-robin over sources so every modality is represented, cycling each source's question kinds."""
    kinds = {}
    for s in sources:
        ks = [k for k in s.facts] + ["modality_yes_no"] + (["window"] if s.hounsfield else [])
        rng.shuffle(ks)
        kinds[s.key] = ks
    other_modalities = sorted({s.modality for s in sources})
    step = 0
    while True:
        for s in sources:
            ks = kinds[s.key]
            kind = ks[step % len(ks)]
            img, aug, window = render_view(s, rng, size, canonical=step == 0)
            template = rng.choice(_IMAGE_TEMPLATES[kind])
            choices = None
            if kind == "window":
                if window is None:
                    continue
                level, width = _CT_WINDOWS[window]
                answer, task = f"{window} window (level {level} HU, width {width} HU)", "open"
            elif kind == "modality_yes_no":
                truth = rng.random() < 0.5
                candidate = s.modality if truth else rng.choice([m for m in other_modalities if m != s.modality])
                noun = _MODALITY_SHORT.get(candidate, candidate.lower().replace("_", " "))
                article = "an" if noun[0] in "aeiou" or noun.startswith("MRI") else "a"
                template = template.format(candidate=f"{article} {noun}")
                answer, task, choices = ("yes" if truth else "no"), "yes_no", ["yes", "no"]
            else:
                answer, task = s.facts[kind]
                if task == "yes_no":
                    choices = ["yes", "no"]
            yield Candidate(f"image_{kind}", s.origin.split(":")[0].split(".")[0], s.key, template, answer,
                             task_type=task, modality=s.modality, image=img, aug=aug, choices=choices)
        step += 1


IMAGE_SOURCES: tuple[str, ...] = ("pydicom", "skimage")
