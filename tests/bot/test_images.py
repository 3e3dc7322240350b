"""bot.images: the safe decoder (against the shared bad-image fixtures), PNG out, A1111 parameters."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from bot import images
from bot.images import (
    ImageError,
    decode,
    encode_png,
    fit,
    format_parameters,
    parse_parameters,
    read_parameters,
)
from bot.jobs import Request
from tests.fixtures import FIXTURES

MB = 1024 * 1024
LIMITS = {"max_bytes": 20 * MB, "max_pixels": 40_000_000}


@pytest.fixture(scope="module")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="module")
def bad(fixtures: Path) -> Path:
    return fixtures / "bad_images"


def load(path: Path, **limits: int) -> Image.Image:
    return decode(path.read_bytes(), **{**LIMITS, **limits})


def png_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims a size in its header but holds (almost) no pixels: a bomb's shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def close(pixel: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 2) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


# --- every bad fixture ------------------------------------------------------------------------------


def test_empty_file_is_refused(bad: Path) -> None:
    with pytest.raises(ImageError, match=r"^That file is empty"):
        load(bad / "empty.png")


def test_text_file_is_not_an_image(bad: Path) -> None:
    with pytest.raises(ImageError) as caught:
        load(bad / "not_an_image.png")
    assert str(caught.value) == "That file isn't an image I can read (PNG, JPEG, WebP, GIF…)."


def test_truncated_jpeg_is_refused_not_half_grey(bad: Path) -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(ImageError, match="damaged or cut off"):
        load(bad / "truncated.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_bomb_is_refused_without_decoding(bad: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[object] = []
    original = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self) or original(self))
    data = (bad / "bomb_20000x20000.png").read_bytes()
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match=r"too large.*40 megapixels"):
            decode(data, **LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * MB  # 20000×20000 decoded would be 400 MB
    assert loads == []


def test_bomb_is_refused_even_with_a_generous_limit(bad: Path) -> None:
    # Pillow's own DecompressionBombError (over 2× its MAX_IMAGE_PIXELS) still becomes an ImageError.
    with pytest.raises(ImageError, match="too large"):
        load(bad / "bomb_20000x20000.png", max_pixels=10**12)


def test_tiny_image_is_refused_with_its_size(bad: Path) -> None:
    with pytest.raises(ImageError) as caught:
        load(bad / "tiny_4x4.png")
    assert str(caught.value) == "That image is too small (4×4); send at least 32×32."


def test_tiny_image_decodes_when_min_side_allows(bad: Path) -> None:
    image = load(bad / "tiny_4x4.png", min_side=4)
    assert (image.mode, image.size, image.getpixel((0, 0))) == ("RGB", (4, 4), (255, 255, 255))


def test_animated_gif_gives_its_first_frame(bad: Path) -> None:
    image = load(bad / "animated.gif")
    assert (image.mode, image.size) == ("RGB", (64, 64))
    assert image.getextrema() == ((255, 255), (0, 0), (0, 0))  # all red: frame 0, not green or blue


def test_cmyk_jpeg_becomes_rgb(bad: Path) -> None:
    image = load(bad / "cmyk.jpg")
    assert (image.mode, image.size) == ("RGB", (128, 96))
    assert close(image.getpixel((64, 48)), (255, 127, 0))  # C0 M50% Y100% K0: orange


def test_16_bit_gray_is_scaled_not_white(bad: Path) -> None:
    image = load(bad / "gray16.png")
    assert (image.mode, image.size) == ("RGB", (128, 96))
    r, g, b = image.getpixel((10, 10))
    assert r == g == b
    assert abs(r - 40000 / 257) <= 1  # 40000 of 65535 is about 61% grey, not clipped to 255


def test_rgba_is_flattened_onto_white(bad: Path) -> None:
    image = load(bad / "rgba.png")
    assert (image.mode, image.size) == ("RGB", (128, 96))
    alpha = 100 / 255  # the fixture is (10, 200, 30) at alpha 100 everywhere
    expected = tuple(round(c * alpha + 255 * (1 - alpha)) for c in (10, 200, 30))
    assert close(image.getpixel((5, 5)), expected)


# --- other inputs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"])
def test_good_images_decode_to_rgb(fixtures: Path, name: str) -> None:
    path = fixtures / "images" / name
    image = load(path)
    assert image.mode == "RGB"
    assert image.size == Image.open(path).size
    assert image.getextrema() != ((0, 0), (0, 0), (0, 0))


def test_byte_cap_names_the_limit_in_mb(fixtures: Path) -> None:
    data = (fixtures / "images" / "astronaut.png").read_bytes()  # about 0.75 MB
    with pytest.raises(ImageError) as caught:
        decode(data, max_bytes=MB // 2, max_pixels=10**8)
    assert str(caught.value) == "That file is too big (0.8 MB); the limit is 0.5 MB."
    with pytest.raises(ImageError, match=r"the limit is 20 MB\.$"):
        decode(b"\0" * (20 * MB + 1), **LIMITS)


def test_pixel_cap_is_checked_from_the_header() -> None:
    # 10000×5000 is under Pillow's own bomb threshold: our max_pixels must catch it, before any decode.
    with pytest.raises(ImageError) as caught:
        decode(png_header(10000, 5000), **LIMITS)
    assert str(caught.value) == "That image is too large (10000×5000); the limit is 40 megapixels."


def test_pillow_bomb_warning_becomes_an_error() -> None:
    # 10000×10000 is over Pillow's warning threshold (89 Mpx) but under our (raised) limit.
    assert 10000 * 10000 > Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match="too large"):
        decode(png_header(10000, 10000), max_bytes=MB, max_pixels=150_000_000)


def test_truncated_png_is_refused(fixtures: Path) -> None:
    data = (fixtures / "images" / "coffee.png").read_bytes()
    with pytest.raises(ImageError, match="damaged or cut off"):
        decode(data[: len(data) // 2], **LIMITS)


def test_unaccepted_formats_are_never_tried() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="PPM")
    with pytest.raises(ImageError, match="isn't an image I can read"):
        decode(buffer.getvalue(), **LIMITS)


def test_exif_orientation_is_applied() -> None:
    source = Image.new("RGB", (64, 32), (255, 0, 0))
    source.paste((0, 0, 255), (32, 0, 64, 32))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90° clockwise to display
    buffer = io.BytesIO()
    source.save(buffer, format="JPEG", exif=exif, quality=95)
    image = decode(buffer.getvalue(), **LIMITS)
    assert image.size == (32, 64)
    assert close(image.getpixel((16, 8)), (255, 0, 0), 8)  # the left side is now on top
    assert close(image.getpixel((16, 56)), (0, 0, 255), 8)


def test_fully_transparent_pixels_become_white() -> None:
    source = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    source.paste((0, 128, 0, 255), (0, 0, 32, 64))
    image = decode(png_bytes(source), **LIMITS)
    assert image.getpixel((48, 10)) == (255, 255, 255)
    assert image.getpixel((10, 10)) == (0, 128, 0)


def test_gray_with_alpha_is_flattened() -> None:
    image = decode(png_bytes(Image.new("LA", (40, 40), (0, 0))), **LIMITS)
    assert (image.mode, image.getpixel((0, 0))) == ("RGB", (255, 255, 255))


def test_palette_transparency_is_flattened() -> None:
    source = Image.new("P", (40, 40), 1)
    source.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    source.paste(0, (0, 0, 20, 40))
    image = decode(png_bytes(source, transparency=0), **LIMITS)
    assert image.getpixel((5, 5)) == (255, 255, 255)
    assert image.getpixel((30, 5)) == (200, 30, 30)


def test_animated_png_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (40, 40), colour) for colour in ("red", "lime", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:], duration=100)
    image = decode(buffer.getvalue(), **LIMITS)
    assert image.getpixel((20, 20)) == (255, 0, 0)


def test_animated_webp_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (40, 40), colour) for colour in ("red", "lime")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="WEBP", save_all=True, append_images=frames[1:], lossless=True)
    image = decode(buffer.getvalue(), **LIMITS)
    assert image.getpixel((20, 20)) == (255, 0, 0)


def test_messages_never_hold_a_traceback(bad: Path) -> None:
    for path in bad.iterdir():
        try:
            load(path)
        except ImageError as error:
            message = str(error)
            assert "\n" not in message and "Traceback" not in message and "Error" not in message


# --- PNG out ------------------------------------------------------------------------------------------


def test_encode_png_is_deterministic_and_lossless(fixtures: Path) -> None:
    image = load(fixtures / "images" / "chelsea.png")
    first = encode_png(image, "a cat\nSteps: 30, Seed: 1, Size: 8x8")
    assert first == encode_png(image.copy(), "a cat\nSteps: 30, Seed: 1, Size: 8x8")
    assert first.startswith(b"\x89PNG")
    again = Image.open(io.BytesIO(first))
    assert again.format == "PNG"
    assert again.convert("RGB").tobytes() == image.tobytes()


def test_encode_png_drops_source_metadata(fixtures: Path) -> None:
    image = load(fixtures / "images" / "astronaut.png")
    assert "icc_profile" in image.info
    data = encode_png(image)
    assert b"iCCP" not in data and b"tEXt" not in data and b"iTXt" not in data


def test_parameters_are_a_text_chunk_like_a1111() -> None:
    image = Image.new("RGB", (32, 32), "red")
    latin = encode_png(image, "a red square\nSteps: 20, Sampler: Euler a, CFG scale: 7.0")
    assert b"tEXtparameters\0a red square" in latin
    unicode = encode_png(image, "un carré rouge, 赤い四角")
    assert b"iTXtparameters\0" in unicode
    assert Image.open(io.BytesIO(unicode)).info["parameters"] == "un carré rouge, 赤い四角"


def test_encode_png_converts_modes_png_cannot_hold() -> None:
    data = encode_png(Image.new("CMYK", (32, 32), (0, 0, 0, 0)))
    assert Image.open(io.BytesIO(data)).mode == "RGB"


# --- reading parameters back --------------------------------------------------------------------------


def test_read_parameters_from_png() -> None:
    data = encode_png(Image.new("RGB", (32, 32)), "a prompt\nSteps: 1, Seed: 2, Size: 32x32")
    assert read_parameters(data) == "a prompt\nSteps: 1, Seed: 2, Size: 32x32"


def test_read_parameters_absent_or_unreadable_is_none(bad: Path, fixtures: Path) -> None:
    assert read_parameters(encode_png(Image.new("RGB", (32, 32)))) is None
    assert read_parameters((fixtures / "images" / "rocket.jpg").read_bytes()) is None
    for path in bad.iterdir():
        assert read_parameters(path.read_bytes()) is None
    assert read_parameters(b"") is None
    assert read_parameters(b"\x89PNG\r\n\x1a\n garbage") is None


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"UNICODE\0" + "a cat, ünïcode\nSteps: 20".encode("utf-16-be"), "a cat, ünïcode\nSteps: 20"),
        (b"UNICODE\0" + "little endian".encode("utf-16-le"), "little endian"),
        (b"ASCII\0\0\0plain ascii", "plain ascii"),
    ],
)
@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_read_parameters_from_exif_user_comment(raw: bytes, text: str, fmt: str) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = raw
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "blue").save(buffer, format=fmt, exif=exif)
    assert read_parameters(buffer.getvalue()) == text


# --- A1111 infotext -----------------------------------------------------------------------------------

REQUEST = Request(prompt="a watercolor painting of the harbor", model="fast", strength=0.55)
SETTINGS = {
    "seed": 42,
    "width": 512,
    "height": 768,
    "steps": 30,
    "guidance_scale": 7.0,
    "sampler": "Euler a",
    "model": "fast",
    "strength": 0.55,
}


def test_format_parameters_matches_a1111() -> None:
    text = format_parameters(REQUEST, **SETTINGS)
    assert text == (
        "a watercolor painting of the harbor\n"
        "Steps: 30, Sampler: Euler a, CFG scale: 7.0, Seed: 42, Size: 512x768, Model: fast, "
        "Denoising strength: 0.55"
    )


def test_format_parameters_with_negative_and_image_cfg() -> None:
    request = Request(
        prompt="make it snow",
        model="edit",
        strength=1.0,
        negative_prompt="blurry, text",
        image_guidance_scale=1.5,
    )
    text = format_parameters(request, **{**SETTINGS, "model": "edit", "strength": 1.0, "guidance_scale": 7})
    assert text == (
        "make it snow\nNegative prompt: blurry, text\n"
        "Steps: 30, Sampler: Euler a, CFG scale: 7.0, Image CFG scale: 1.5, Seed: 42, Size: 512x768, "
        "Model: edit, Denoising strength: 1.0"
    )


def test_format_parameters_quotes_values_with_commas() -> None:
    text = format_parameters(REQUEST, **{**SETTINGS, "sampler": "DPM++ 2M, Karras", "model": "a:b"})
    assert 'Sampler: "DPM++ 2M, Karras"' in text and 'Model: "a:b"' in text
    parsed = parse_parameters(text)
    assert parsed["sampler"] == "DPM++ 2M, Karras"
    assert parsed["model"] == "a:b"
    assert parsed["seed"] == 42


def test_parse_parameters_reads_a_real_a1111_text() -> None:
    text = (
        "masterpiece, a castle on a hill,\n(golden hour:1.2), <lora:detail:0.5>\n"
        "Negative prompt: lowres, bad anatomy,\nwatermark\n"
        "Steps: 28, Sampler: DPM++ 2M Karras, Schedule type: Karras, CFG scale: 6.5, Seed: 3922188181, "
        "Size: 832x1216, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Denoising strength: 0.45, "
        'Lora hashes: "detail: 62f5bd6b3c1e, other: 1234", Version: v1.10.1'
    )
    assert parse_parameters(text) == {
        "prompt": "masterpiece, a castle on a hill,\n(golden hour:1.2), <lora:detail:0.5>",
        "negative_prompt": "lowres, bad anatomy,\nwatermark",
        "num_inference_steps": 28,
        "sampler": "DPM++ 2M Karras",
        "guidance_scale": 6.5,
        "seed": 3922188181,
        "width": 832,
        "height": 1216,
        "model": "sd_xl_base_1.0",
        "strength": 0.45,
    }


def test_parse_parameters_is_tolerant() -> None:
    assert parse_parameters("") == {}
    assert parse_parameters("   \n ") == {}
    assert parse_parameters('{"3": {"class_type": "KSampler"}}') == {}  # a ComfyUI workflow
    assert parse_parameters("just a prompt, no settings") == {"prompt": "just a prompt, no settings"}
    # fewer than three settings: the last line is prompt text, as A1111 reads it
    assert parse_parameters("a cat\nSteps: 20, Seed: 1") == {"prompt": "a cat\nSteps: 20, Seed: 1"}
    # bad values are skipped, not raised; CRLF line ends and key case are forgiven
    parsed = parse_parameters("a cat\r\nsteps: many, Seed: 7, Size: big, cfg scale: 5")
    assert parsed == {"prompt": "a cat", "seed": 7, "guidance_scale": 5.0}
    assert parse_parameters("Steps: 10, Seed: 1, Size: 64x64") == {
        "prompt": "",
        "num_inference_steps": 10,
        "seed": 1,
        "width": 64,
        "height": 64,
    }


def test_parameters_round_trip_through_a_png() -> None:
    request = Request(
        prompt="a harbor, at dusk\nwith boats",
        model="fast",
        strength=0.55,
        negative_prompt="blurry, text: none",
        image_guidance_scale=1.25,
    )
    text = format_parameters(request, **{**SETTINGS, "guidance_scale": 6.5})
    data = encode_png(Image.new("RGB", (64, 96), "navy"), text)
    assert parse_parameters(read_parameters(data) or "") == {
        "prompt": "a harbor, at dusk\nwith boats",
        "negative_prompt": "blurry, text: none",
        "num_inference_steps": 30,
        "sampler": "Euler a",
        "guidance_scale": 6.5,
        "image_guidance_scale": 1.25,
        "seed": 42,
        "width": 512,
        "height": 768,
        "model": "fast",
        "strength": 0.55,
    }


# --- fit ----------------------------------------------------------------------------------------------


def test_fit_keeps_aspect_and_multiples() -> None:
    image = Image.new("RGB", (451, 300), "red")
    fitted = fit(image, 512)
    assert fitted.size == (512, 344)  # 300 × 512/451 = 340.6 → nearest multiple of 8
    assert fit(image, 770).size[0] == 768  # the longest side is rounded to the multiple too
    assert fit(Image.new("RGB", (300, 451)), 512, multiple=64).size == (320, 512)


def test_fit_never_goes_below_one_multiple() -> None:
    assert fit(Image.new("RGB", (4000, 40)), 512).size == (512, 8)


def test_fit_returns_the_same_image_when_it_already_fits() -> None:
    image = Image.new("RGB", (512, 344))
    assert fit(image, 512) is image


def test_fit_upscales_with_lanczos() -> None:
    image = Image.new("RGB", (100, 50), (10, 20, 30))
    fitted = fit(image, 400)
    assert fitted.size == (400, 200)
    assert fitted.getpixel((200, 100)) == (10, 20, 30)


def test_module_does_not_enable_truncated_loading() -> None:
    assert not hasattr(images, "LOAD_TRUNCATED_IMAGES")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# colour, size and hostile text -------------------------------------------------------------------


def _tagged(profile: bytes, name: str = "coffee.png") -> tuple[Image.Image, bytes]:
    """A photo converted into another RGB space and saved with that space's profile: (the sRGB
    original, the tagged PNG's bytes)."""
    from PIL import ImageCms

    from tests.fixtures import IMAGES

    original = Image.open(IMAGES / name).convert("RGB")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    converted = ImageCms.profileToProfile(original, srgb, ImageCms.ImageCmsProfile(io.BytesIO(profile)))
    buffer = io.BytesIO()
    converted.save(buffer, format="PNG", icc_profile=profile)
    return original, buffer.getvalue()


def _mean_error(a: Image.Image, b: Image.Image) -> float:
    import numpy as np

    return float(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean())


@pytest.mark.parametrize("space", ["ADOBE_RGB", "COLORMATCH_RGB"])
def test_icc_tagged_images_are_converted_to_srgb(space: str) -> None:
    from tests.fixtures import icc

    colorants, gamma = getattr(icc, space)
    original, data = _tagged(icc.rgb_profile(space, colorants, gamma))
    ignored = Image.open(io.BytesIO(data)).convert("RGB")  # what dropping the profile shows
    assert _mean_error(ignored, original) > 5, "the test image really is in another colour space"
    assert _mean_error(decode(data, **LIMITS), original) < 1


def test_a_broken_icc_profile_is_dropped_not_fatal() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (10, 120, 200)).save(buffer, format="PNG", icc_profile=b"not a profile" * 20)
    assert decode(buffer.getvalue(), **LIMITS).getpixel((0, 0)) == (10, 120, 200)


def test_outputs_are_tagged_srgb() -> None:
    with Image.open(io.BytesIO(encode_png(Image.new("RGB", (8, 8))))) as image:
        assert image.info.get("srgb") == 0 and "icc_profile" not in image.info


def test_max_side_keeps_only_the_pixels_a_model_uses() -> None:
    from tests.fixtures.hostile import huge_jpeg

    image = decode(huge_jpeg(3000, 2000), **LIMITS, max_side=1536)
    assert image.size == (1536, 1024) and image.mode == "RGB"
    small = decode(huge_jpeg(600, 400), **LIMITS, max_side=1536)
    assert small.size == (600, 400), "never enlarged"


def test_check_image_applies_the_limits_from_the_header() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (1000, 800)).save(buffer, format="PNG")
    assert images.check_image(buffer.getvalue(), max_bytes=MB, max_pixels=800_000) == (1000, 800)
    with pytest.raises(ImageError, match="too large"):
        images.check_image(buffer.getvalue(), max_bytes=MB, max_pixels=799_999)
    with pytest.raises(ImageError, match="too big"):
        images.check_image(buffer.getvalue(), max_bytes=100, max_pixels=800_000)


def test_parameters_text_is_capped_before_parsing() -> None:
    from tests.fixtures.hostile import text_bomb_png

    data = text_bomb_png()
    assert len(data) < 2000
    text = read_parameters(data)
    assert text is not None and len(text) == images.MAX_PARAMETERS
    assert parse_parameters("x\n" + "a" * 1_000_000)["prompt"] == "x\n" + "a" * (images.MAX_PARAMETERS - 2)


def test_settings_line_reads_quotes_and_skips_junk() -> None:
    line = 'junk, Steps: 20, Sampler: "DPM++ 2M, Karras", Model: "a:b", x: 1, Size: 512x768'
    assert images.settings_of(line) == [
        ("Steps", "20"),
        ("Sampler", '"DPM++ 2M, Karras"'),
        ("Model", '"a:b"'),
        ("Size", "512x768"),
    ]


def test_non_finite_numbers_in_parameters_are_ignored() -> None:
    parsed = parse_parameters("cat\nSteps: 20, CFG scale: nan, Denoising strength: inf, Seed: 3")
    assert "guidance_scale" not in parsed and "strength" not in parsed and parsed["seed"] == 3


def test_control_characters_in_parameters_are_removed() -> None:
    parsed = parse_parameters("a \x1b[31mred\x1b[0m cat\x07\nNegative prompt: ugly\u200b\nSteps: 20, Seed: 1, Model: x")
    assert parsed["prompt"] == "a red cat" and parsed["negative_prompt"] == "ugly"
