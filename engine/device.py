"""The engine's device: which one it runs on, how much of its memory models may hold, and the
process-wide torch settings the engine makes for it.

The engine picks its device the first time a job needs torch (``Engine._device_for``), and then,
once, calls ``configure_torch``: the one place where the process's torch state is set. Kinds never
set process-wide flags; what they change belongs to the models they load.

The setting made there: on CUDA, cuDNN's autotuner (``torch.backends.cudnn.benchmark``) is on, so
each convolution runs the fastest algorithm for its input shape. The first run at a new working
size pays for the search (users' sizes vary with their images' aspect ratios, but ``--size`` and the
models' multiples keep the set of shapes small). ``Engine(..., cudnn_benchmark=False)`` leaves
torch's default. Nothing is set on a CPU.
"""

from __future__ import annotations

import os

DEFAULT_BUDGET_SHARE = 0.8  # of the device's memory, when no REMIXBOT_MEMORY_BUDGET is set


def pick() -> str:
    """ "cuda" when torch sees a GPU, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def configure_torch(device: str, *, cudnn_benchmark: bool = True) -> None:
    """The process-wide torch settings for running models on ``device`` (see the module's docstring)."""
    if device.startswith("cuda") and cudnn_benchmark:
        import torch

        torch.backends.cudnn.benchmark = True


def default_budget(device: str) -> int | None:
    """80% of the device's memory: the GPU's for CUDA, else the machine's RAM (None if unknown)."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return None
        total: int = torch.cuda.get_device_properties(torch.device(device)).total_memory
        return int(total * DEFAULT_BUDGET_SHARE)
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return int(ram * DEFAULT_BUDGET_SHARE)
