"""ONNX Runtime sessions for the kinds whose weights are ``.onnx`` files (style transfer, cut-outs).

No torch: these kinds run on any CPU (``DEVICE = "cpu"`` in each), with onnxruntime from the
``models`` extra. The weights come from ``remixbot weights install …`` (engine/weights).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from bot.models import ModelEntry

RUNTIME_MISSING = "needs onnxruntime: pip install 'remixbot[models]'"


def files_problem(entry: ModelEntry, names: tuple[str, ...], pack: str) -> str | None:
    """Why the entry's ``source`` folder cannot serve ``names`` (user-safe), or None. Loads nothing."""
    source = entry.source.strip()
    if not source:
        return f'misconfigured: {entry.name} needs source = "weights:{pack}" in models.toml'
    folder = Path(source).expanduser()
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        return f"needs weights: run `remixbot weights install {pack}` ({', '.join(missing)} not in {folder})"
    if importlib.util.find_spec("onnxruntime") is None:
        return RUNTIME_MISSING
    return None


def session(path: Path, threads: int = 0) -> Any:
    """An onnxruntime CPU session for ``path``; ``threads`` 0 lets onnxruntime pick."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
