"""Images in and out: one safe decoder for every entry point, PNG out with A1111-style parameters.

``decode`` is the only way an uploaded file becomes pixels: it checks the byte size and the pixel
count from the header before any pixel is decoded, converts colours tagged with an ICC profile to
sRGB, and every failure becomes an ``ImageError`` whose text is safe to show in chat.
``encode_png`` writes sRGB-tagged PNGs with the ``parameters`` text chunk the way AUTOMATIC1111
does, so other tools (and ``read_parameters``) can read the settings back.

Everything here is CPU work: callers on an event loop run it in a thread. The ``parameters`` text
is capped (``MAX_PARAMETERS``) before it is parsed, and the parser is linear in its length.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import warnings
from collections.abc import Mapping
from typing import Any, cast

from PIL import Image, ImageCms, ImageOps, PngImagePlugin, UnidentifiedImageError

from bot.jobs import Request
from bot.loras import with_lora_tags
from bot.text import neutral

log = logging.getLogger(__name__)

# The formats an upload may be in. Others (EPS runs Ghostscript, for one) are never tried.
ACCEPTED_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP", "TIFF", "AVIF")

NOT_AN_IMAGE = "That file isn't an image I can read (PNG, JPEG, WebP, GIF…)."
DAMAGED = "That image looks damaged or cut off; try sending it again."

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_ICC_MODES = ("RGB", "RGBA", "CMYK", "L")  # the modes a profile is applied in (others are made RGB first)
MAX_PARAMETERS = 8 * 1024  # characters of a ``parameters`` text that are read; the rest is ignored


class ImageError(ValueError):
    """An image that can't be used; ``str(error)`` is a friendly message for the chat."""


def decode(
    data: bytes, *, max_bytes: int, max_pixels: int, min_side: int = 32, max_side: int | None = None
) -> Image.Image:
    """Decode an upload into an sRGB image, refusing anything unsafe or unusable first.

    ``max_side``: a larger image comes back scaled down to this longest side (a JPEG is decoded at
    a reduced scale straight away), so nobody keeps pixels that no model uses.
    """
    check_bytes(data, max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = open_image(data)
            check_dimensions(image.size, max_pixels=max_pixels, min_side=min_side)
            icc = image.info.get("icc_profile")
            if max_side is not None:
                image.draft(image.mode, (max_side, max_side))  # JPEG: decode at 1/2, 1/4, 1/8 when that still fits
            image.load()
            image = to_rgb(to_srgb(ImageOps.exif_transpose(image), icc))
            return shrink(image, max_side) if max_side is not None else image
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"That image is too large to open safely; the limit is {megapixels(max_pixels)}.") from error
    except UnidentifiedImageError as error:
        raise ImageError(NOT_AN_IMAGE) from error
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, EOFError… on bad data
        log.debug("image decode failed", exc_info=True)
        raise ImageError(DAMAGED) from error


def check_image(data: bytes, *, max_bytes: int, max_pixels: int, min_side: int = 32) -> tuple[int, int]:
    """The limits ``decode`` applies, from the header alone (for images we made, used again): the size."""
    check_bytes(data, max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            size: tuple[int, int] = open_image(data).size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"That image is too large to open safely; the limit is {megapixels(max_pixels)}.") from error
    except Exception as error:
        raise ImageError(NOT_AN_IMAGE) from error
    check_dimensions(size, max_pixels=max_pixels, min_side=min_side)
    return size


def check_bytes(data: bytes, max_bytes: int) -> None:
    """Refuse empty files and files over the byte cap."""
    if not data:
        raise ImageError("That file is empty; please send the image again.")
    if len(data) > max_bytes:
        raise ImageError(f"That file is too big ({mb(len(data))}); the limit is {mb(max_bytes)}.")


def open_image(data: bytes) -> Image.Image:
    """Read the header only (no pixels yet), trying the accepted formats alone."""
    Image.init()
    formats = [name for name in ACCEPTED_FORMATS if name in Image.OPEN]
    return Image.open(io.BytesIO(data), formats=formats)


def check_dimensions(size: tuple[int, int], *, max_pixels: int, min_side: int) -> None:
    """Refuse decompression bombs and thumbnails, from the header's size alone."""
    width, height = size
    if width * height > max_pixels:
        raise ImageError(f"That image is too large ({width}×{height}); the limit is {megapixels(max_pixels)}.")
    if min(width, height) < min_side:
        raise ImageError(f"That image is too small ({width}×{height}); send at least {min_side}×{min_side}.")


def mb(count: int) -> str:
    """A byte count as a short MB figure: 20 MB, 1.5 MB."""
    return f"{count / (1024 * 1024):.1f}".removesuffix(".0") + " MB"


def megapixels(count: int) -> str:
    return f"{count / 1_000_000:.1f}".removesuffix(".0") + " megapixels"


def to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """Colours tagged with an ICC profile converted to sRGB (perceptual intent); untagged ones as they are.

    A profile that can't be used (damaged, or not for the image's colour space) is dropped, as
    browsers do, and the pixels are read as sRGB.
    """
    if not icc:
        return image
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if image.mode not in _ICC_MODES:
            alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
            image = to_rgb(image) if not alpha else image.convert("RGBA")
        output = "RGBA" if image.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(image, profile, _SRGB, outputMode=output)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        log.debug("ICC profile not applied", exc_info=True)
        return image
    return converted if converted is not None else image


def shrink(image: Image.Image, max_side: int) -> Image.Image:
    """``image`` scaled down (aspect kept) so that its longest side is at most ``max_side``."""
    width, height = image.size
    if max(width, height) <= max_side:
        return image
    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode to RGB: 16-bit scaled to 8-bit, alpha and transparency flattened onto white."""
    if image.mode in _SIXTEEN_BIT or image.mode == "I":
        image = to_8bit(image)
    elif image.mode == "F":
        image = image.convert("L")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return flatten(image)
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def to_8bit(image: Image.Image) -> Image.Image:
    """A 16/32-bit grayscale image as 8-bit "L", scaling 0..65535 to 0..255 (not clipping)."""
    wide = image.convert("I")
    _, high = cast(tuple[int, int], wide.getextrema())  # one band: (low, high)
    if image.mode in _SIXTEEN_BIT or high > 255:
        wide = wide.point(lambda value: value * (1 / 257))
    return wide.convert("L")


def flatten(image: Image.Image) -> Image.Image:
    """Composite an image with alpha (or a transparent colour) onto white."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def encode_png(image: Image.Image, parameters: str | None = None) -> bytes:
    """PNG bytes tagged sRGB, deterministic for the same pixels and parameters; ``parameters`` as
    A1111 writes it. Pixels are taken to be sRGB already (``decode`` made them so)."""
    if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        image = image.convert("RGB")
    clean = image.copy()
    clean.info = {}  # no ICC profile, EXIF or transparency carried over from the source
    info = PngImagePlugin.PngInfo()
    info.add(b"sRGB", b"\x00")  # the sRGB chunk: colours are sRGB (perceptual intent)
    if parameters is not None:
        info.add_text("parameters", parameters)  # tEXt when Latin-1, else iTXt, like A1111
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", pnginfo=info, compress_level=6)
    return buffer.getvalue()


def read_parameters(data: bytes) -> str | None:
    """The ``parameters`` text of a PNG (or the EXIF UserComment of a JPEG/WebP), cut to
    ``MAX_PARAMETERS`` characters; None if absent."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = open_image(data)
            text = image.info.get("parameters")
            if text is None and image.format in ("JPEG", "MPO", "WEBP"):
                text = user_comment(image)
    except Exception:  # never raises: a file we can't read simply has no parameters
        log.debug("no parameters read", exc_info=True)
        return None
    return str(text)[:MAX_PARAMETERS] if text else None


def user_comment(image: Image.Image) -> str | None:
    """The EXIF UserComment, decoded from its 8-byte charset prefix (A1111 writes UNICODE)."""
    raw = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    if isinstance(raw, str):
        return raw.strip("\0") or None
    if not isinstance(raw, bytes):
        return None
    prefix, body = raw[:8], raw[8:]
    if prefix == b"UNICODE\0":
        text = body.decode(utf16_codec(body), errors="replace")
    elif prefix == b"ASCII\0\0\0":
        text = body.decode("ascii", errors="replace")
    else:
        text = raw.decode("utf-8", errors="replace")
    return text.strip("\0").strip() or None


def utf16_codec(body: bytes) -> str:
    """UTF-16 byte order of a UserComment: BE per the spec and piexif, LE from some Windows tools."""
    if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    even_zeros = body[0::2].count(0)
    odd_zeros = body[1::2].count(0)
    return "utf-16-le" if odd_zeros > even_zeros else "utf-16-be"


# A1111's infotext grammar (modules/infotext_utils.py): "Key: value, Key: "quoted, value", …".
_KEY = re.compile(r"\w[\w \-/]+")
_QUOTED = re.compile(r'"(?:\\.|[^\\"])+"')
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_NEGATIVE = "Negative prompt:"


def format_parameters(
    request: Request,
    *,
    seed: int,
    width: int,
    height: int,
    steps: int,
    guidance_scale: float,
    sampler: str,
    model: str,
    strength: float,
    lora_hashes: Mapping[str, str] | None = None,
) -> str:
    """The A1111 infotext: the prompt (with its ``<lora:…>`` tags), ``Negative prompt: …`` when there is
    one, then the settings (``Lora hashes`` when LoRAs were used)."""
    image_cfg = request.image_guidance_scale
    settings: dict[str, Any] = {
        "Steps": steps,
        "Sampler": sampler,
        "CFG scale": float(guidance_scale),
        "Image CFG scale": None if image_cfg is None else float(image_cfg),
        "Seed": seed,
        "Size": f"{width}x{height}",
        "Model": model,
        "Denoising strength": float(strength),
        "Lora hashes": ", ".join(f"{name}: {digest}" for name, digest in (lora_hashes or {}).items()) or None,
    }
    line = ", ".join(f"{key}: {quote(value)}" for key, value in settings.items() if value is not None)
    negative = f"\n{_NEGATIVE} {request.negative_prompt}" if request.negative_prompt else ""
    return f"{with_lora_tags(request.prompt, request.loras)}{negative}\n{line}".strip()


def quote(value: Any) -> str:
    """A1111's quoting: JSON-quote a value holding a comma, colon or newline."""
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return str(json.loads(text))
    except ValueError:
        return text


# A1111 key (lower case) → our field name and type.
_FIELDS: dict[str, tuple[str, type]] = {
    "steps": ("num_inference_steps", int),
    "sampler": ("sampler", str),
    "cfg scale": ("guidance_scale", float),
    "image cfg scale": ("image_guidance_scale", float),
    "seed": ("seed", int),
    "model": ("model", str),
    "denoising strength": ("strength", float),
}


def parse_parameters(text: str) -> dict[str, Any]:
    """A1111/ComfyUI infotext → ``prompt``, ``negative_prompt``, ``seed``… (only the keys found).

    Reads at most ``MAX_PARAMETERS`` characters, in time linear in their length; the prompts come
    back neutralised (``bot.text.neutral``).
    """
    text = neutral(text[:MAX_PARAMETERS]).strip()
    if not text or text.startswith("{"):  # empty, or a ComfyUI workflow JSON: no prompt to reuse
        return {}
    *lines, last = text.split("\n")
    pairs = settings_of(last)
    if len(pairs) < 3:
        lines.append(last)
        pairs = []
    result: dict[str, Any] = split_prompts(lines)
    for key, raw in pairs:
        result.update(parse_setting(key.lower(), unquote(raw)))
    return result


def settings_of(line: str) -> list[tuple[str, str]]:
    """The ``Key: value`` pairs of an infotext's settings line, in one pass over it.

    A value is a JSON-quoted string (commas allowed inside) or runs to the next comma; a key is
    word characters, spaces, ``-`` and ``/`` (what precedes the colon after the last comma).
    """
    pairs: list[tuple[str, str]] = []
    start, end = 0, len(line)
    unclosed = end  # past an opening quote with no closing one, no quoted value is looked for again
    while start < end:
        colon = line.find(":", start)
        if colon < 0:
            break
        key = line[max(start, line.rfind(",", start, colon) + 1) : colon].strip()
        value_start = colon + 1
        while value_start < end and line[value_start] == " ":
            value_start += 1
        stop = -1
        if line.startswith('"', value_start) and value_start < unclosed:
            quoted = _QUOTED.match(line, value_start)
            stop = quoted.end() - 1 if quoted else -1
            unclosed = unclosed if quoted else value_start
        comma = line.find(",", stop + 1 if stop >= 0 else value_start)
        value_end = stop + 1 if stop >= 0 else (comma if comma >= 0 else end)
        if _KEY.fullmatch(key):
            pairs.append((key, line[value_start:value_end].strip()))
        start = comma + 1 if comma >= 0 else end
    return pairs


def split_prompts(lines: list[str]) -> dict[str, Any]:
    """The prompt lines, then the ``Negative prompt:`` lines."""
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        if not negative and line.startswith(_NEGATIVE):
            negative.append(line[len(_NEGATIVE) :].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    result: dict[str, Any] = {"prompt": "\n".join(prompt).strip()}
    if negative:
        result["negative_prompt"] = "\n".join(negative).strip()
    return result


def parse_setting(key: str, value: str) -> dict[str, Any]:
    """One ``Key: value`` pair as our fields; nothing when the key is unknown or the value bad."""
    if key == "size":
        match = _SIZE.match(value)
        return {"width": int(match[1]), "height": int(match[2])} if match else {}
    if key not in _FIELDS:
        return {}
    name, kind = _FIELDS[key]
    try:
        parsed = kind(value)
    except ValueError:
        return {}
    if isinstance(parsed, float) and not math.isfinite(parsed):
        return {}  # NaN and infinities are no settings
    return {name: parsed}


def fit(image: Image.Image, size: int, multiple: int = 8) -> Image.Image:
    """Resize keeping the aspect ratio: longest side ``size``, both sides multiples of ``multiple``."""
    width, height = image.size
    longest = round_to(size, multiple)
    scale = longest / max(width, height)
    target = (round_to(width * scale, multiple), round_to(height * scale, multiple))
    if target == image.size:
        return image
    return image.resize(target, Image.Resampling.LANCZOS)


def round_to(value: float, multiple: int) -> int:
    """The nearest multiple (halves round up), at least one multiple."""
    return max(multiple, int(value / multiple + 0.5) * multiple)
