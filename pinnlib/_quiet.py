"""Import TensorFlow without its start-up chatter on the process's standard error.

TensorFlow's C++ runtime prints lines (oneDNN notices, "could not find cuda drivers", absl's
"all log messages before InitializeLog") while it loads, before ``TF_CPP_MIN_LOG_LEVEL`` can
act, and Jupyter shows them as red stderr output in every chapter. pinnlib loads TensorFlow
once with file descriptor 2 pointed at ``/dev/null``; Python errors still surface as
exceptions. Set ``PINNLIB_QUIET=0`` to see everything.
"""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or os.environ.get("PINNLIB_QUIET", "1") == "0":
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (some embedded interpreters)
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices()  # device discovery prints its own notices
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
