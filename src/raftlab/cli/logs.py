"""Terminal output of the CLI: one logging handler (``-v``/``-q``) and quiet third-party libraries.

Library code only logs (``logging.getLogger(__name__)``); this module, called once by the ``raftlab``
entry point, decides what reaches the terminal. Progress bars (tqdm) are separate and stay.
"""

from __future__ import annotations

import logging
import os
import warnings

#: Third-party loggers that report every request or load at INFO; shown only with -vv.
NOISY_LOGGERS = ("httpx", "httpcore", "openai", "urllib3", "transformers", "datasets", "accelerate", "peft",
                 "torch", "filelock", "uvicorn.access", "matplotlib", "PIL")

#: Library warnings with nothing for a raftlab user to act on (each names its cause).
QUIET_WARNINGS = (
    # peft saves resized embeddings when think tokens were added: intended
    r"Setting `save_embedding_layers` to `True`",
    # peft's get_peft_model reads transformers' deprecated `is_gradient_checkpointing` (a peft/transformers
    # version skew; nothing raftlab calls)
    r"`is_gradient_checkpointing` is deprecated",
)


def setup_logging(verbosity: int = 0, quiet: bool = False) -> None:
    """INFO for raftlab (``-v``: DEBUG; ``-q``: warnings only); third-party libraries at WARNING (``-vv``: all)."""
    level = logging.WARNING if quiet else logging.DEBUG if verbosity >= 1 else logging.INFO
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s" if verbosity < 1 else
                                           "%(asctime)s %(name)s %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if verbosity < 2 else logging.DEBUG)
    logging.getLogger("raftlab").setLevel(level)
    if verbosity < 2:
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' weight loading/saving bars
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        for pattern in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
