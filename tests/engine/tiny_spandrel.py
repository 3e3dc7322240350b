"""Random-weight models in the file layouts of the real checkpoints, for the upscale and face tests.

``build_compact`` writes a small Real-ESRGAN Compact (SRVGGNetCompact) the way
``realesr-general-x4v3.pth`` is stored: ``{"params": state_dict}`` with the ``body.N`` keys; with
``scale=1`` it is a 1× restoration model (spandrel's purpose "Restoration").
``build_gfpgan`` writes a GFPGANv1Clean the way ``GFPGANv1.4.pth`` is stored
(``{"params_ema": state_dict}``). spandrel hard-codes GFPGAN's sizes (512 px, 512 style features),
so it is full-size: 86 M parameters, stored in float16 (174 MB), a few seconds to build.
Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path


def build_compact(path: Path, scale: int = 4, num_feat: int = 16, num_conv: int = 4, seed: int = 0) -> Path:
    import torch
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=num_feat, num_conv=num_conv, upscale=scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params": model.state_dict()}, path)
    return path


def build_gfpgan(path: Path, seed: int = 0) -> Path:
    import torch
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(seed)
    # spandrel's GFPGAN loader builds exactly this (GFPGANv1Clean as in GFPGANv1.3/1.4)
    model = GFPGAN(
        out_size=512,
        num_style_feat=512,
        channel_multiplier=2,
        decoder_load_path=None,
        fix_decoder=False,
        num_mlp=8,
        input_is_latent=True,
        different_w=True,
        narrow=1,
        sft_half=True,
    )
    state = {key: value.half() if value.is_floating_point() else value for key, value in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params_ema": state}, path)
    return path
