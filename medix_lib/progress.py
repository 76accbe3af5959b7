"""Progress bars for people, quiet logs for rendered notebooks.

A bar in JupyterLab or a terminal tells a person how long to wait; in a notebook rendered by papermill every refresh of
it becomes a line of the committed log (notebook 02 carried 273 of them). The runner sets ``MEDIX_QUIET=1`` in the
kernel it starts, and everything that draws a bar asks :func:`enabled` first: medix's own loops through :func:`bar`,
third-party libraries (datasets, transformers, huggingface_hub) through their own switches in :func:`quiet_libraries`.
"""

from __future__ import annotations

import logging
import os
import warnings

QUIET_ENV = "MEDIX_QUIET"


def enabled(progress: bool = True) -> bool:
    """Whether to draw a bar: the caller's wish, unless this process renders a notebook headless.

    >>> os.environ.pop(QUIET_ENV, None) and None
    >>> enabled(), enabled(False)
    (True, False)
    >>> os.environ[QUIET_ENV] = "1"; enabled(); del os.environ[QUIET_ENV]
    False
    """
    return progress and os.environ.get(QUIET_ENV) != "1"


def bar(iterable=None, *, progress: bool = True, **kwargs):
    """``tqdm.auto.tqdm`` drawn only where :func:`enabled` says so."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not enabled(progress), **kwargs)


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(fragment in record.getMessage() for fragment in self.fragments)


def quiet_libraries() -> None:
    """Silence, at their source, library messages that tell a student nothing, and (when :func:`enabled` is false)
    the libraries' own progress bars. Called by every notebook's validation cell (``params.from_notebook``); idempotent.

    - transformers' deprecation notices raised from inside its own Trainer and TRL's calls (``gradient_checkpointing``,
      ``is_gradient_checkpointing``): nothing a caller of medix can act on.
    - huggingface_hub's "Repo card metadata block was not found" when PEFT writes an adapter's card (ours carries
      no YAML header on purpose).
    - transformers' "Requested pil backend is not available. Falling back to torchvision backend": it still loads the
      PIL class medix_lib.vlm asks for (see ``vlm.model.image_processor``).
    """
    warnings.filterwarnings("ignore", message=r".*(is_)?gradient_checkpointing.* is deprecated", category=FutureWarning)
    logging.getLogger("huggingface_hub.repocard").addFilter(_DropMessages("Repo card metadata block was not found"))
    logging.getLogger("transformers.models.auto.image_processing_auto").addFilter(
        _DropMessages("backend is not available. Falling back to"))
    if enabled():
        return
    import datasets
    import huggingface_hub.utils
    import transformers

    datasets.disable_progress_bars()
    huggingface_hub.utils.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
