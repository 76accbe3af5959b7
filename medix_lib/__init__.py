"""medix: open-ended medical reinforcement learning (the MediX-R1 method), notebook-driven.

Modules are named after the method: ``data`` (01), ``rewards`` and ``judge`` (02), ``training`` (03),
``evaluation`` (04); ``contract`` is the policy's output format, ``models`` the lazy offline-safe loaders,
``config`` the validated params, ``pipeline`` the papermill runner, ``plotting`` the one figure style.
"""

import warnings

__version__ = "0.1.0"

# tqdm's hint that ipywidgets is missing fires when the first library imports tqdm.auto, before any medix code can run
# in a notebook: its bars fall back to text, which is all a notebook needs (see medix_lib.progress).
warnings.filterwarnings("ignore", message="IProgress not found")
