"""The corpus's image kinds: broken, disguised, unusual and oversized images."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
from PIL import Image

from support import media_video as mv
from support.badmedia.kinds import ERROR, ODD_NAMES, SCORED, kind
from support.media import corrupt_jpeg_bytes, image_bytes, text_as_jpg_bytes, truncated_jpeg_bytes
from support.media_audio import tone_wav_bytes


def _pixels(seed: int, size: tuple[int, int] = (48, 36)) -> np.ndarray:
    """(height, width, 3) uint8 RGB: a smooth gradient with noise, so resizing has work to do."""
    rng = np.random.default_rng(seed)
    width, height = size
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    base = rng.uniform(40, 200, 3)
    image = base + 50 * np.stack([x, y, 1 - x], axis=-1) + rng.normal(0, 8, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@kind("image", ERROR, "empty")
def image_zero_byte(seed: int) -> dict[str, bytes]:
    return {"zero-byte.jpg": b""}


@kind("image", ERROR, "truncated JPEG")
def image_truncated_jpeg(seed: int) -> dict[str, bytes]:
    return {"truncated.jpg": truncated_jpeg_bytes(seed)}


@kind("image", ERROR, "truncated JPEG|corrupt")
def image_corrupt_jpeg(seed: int) -> dict[str, bytes]:
    return {"corrupt-scan.jpg": corrupt_jpeg_bytes(seed)}


@kind("image", ERROR, "truncated PNG")
def image_truncated_png(seed: int) -> dict[str, bytes]:
    png = image_bytes("PNG", (64, 48), seed)
    return {"truncated.png": png[: len(png) * 2 // 3]}


@kind("image", ERROR, "text")
def image_text_named_jpg(seed: int) -> dict[str, bytes]:
    return {"notes.jpg": text_as_jpg_bytes()}


@kind("image", ERROR, "MP4")
def image_mp4_named_jpg(seed: int) -> dict[str, bytes]:
    return {"clip.jpg": mv.video_bytes(lambda p: mv.write_video(p, "red-ball", 0.5, seed=seed))}


@kind("image", ERROR, "WAV")
def image_wav_named_png(seed: int) -> dict[str, bytes]:
    return {"sound.png": tone_wav_bytes(440.0, 0.2)}


@kind("image", SCORED)
def image_png_named_jpg(seed: int) -> dict[str, bytes]:
    return {"really-a-png.jpg": image_bytes("PNG", (40, 30), seed)}


@kind("image", SCORED)
def image_jpeg_named_txt(seed: int) -> dict[str, bytes]:
    return {"photo-without-image-extension.txt": image_bytes("JPEG", (40, 30), seed)}


@kind("image", SCORED)
def image_cmyk_jpeg(seed: int) -> dict[str, bytes]:
    # PIL writes Adobe-style (inverted) CMYK with an APP14 marker, as Photoshop does.
    return {"cmyk.jpg": _pil_bytes(Image.fromarray(_pixels(seed)).convert("CMYK"), "JPEG", quality=90)}


@kind("image", SCORED)
def image_16bit_png(seed: int) -> dict[str, bytes]:
    rgb16 = _pixels(seed).astype(np.uint16) * 257
    ok, png = cv2.imencode(".png", rgb16[..., ::-1])
    assert ok
    return {"16-bit-rgb.png": png.tobytes()}


@kind("image", SCORED)
def image_16bit_gray_png(seed: int) -> dict[str, bytes]:
    gray16 = (_pixels(seed)[..., 0].astype(np.uint16) * 257)
    ok, png = cv2.imencode(".png", gray16)
    assert ok
    return {"16-bit-gray.png": png.tobytes()}


@kind("image", SCORED)
def image_grayscale_jpeg(seed: int) -> dict[str, bytes]:
    return {"grayscale.jpg": _pil_bytes(Image.fromarray(_pixels(seed)).convert("L"), "JPEG")}


@kind("image", SCORED)
def image_grayscale_png(seed: int) -> dict[str, bytes]:
    return {"grayscale.png": _pil_bytes(Image.fromarray(_pixels(seed)).convert("L"), "PNG")}


@kind("image", SCORED)
def image_rgba_png(seed: int) -> dict[str, bytes]:
    rgba = np.dstack([_pixels(seed), np.linspace(0, 255, 48, dtype=np.uint8)[None, :].repeat(36, 0)])
    return {"rgba.png": _pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG")}


@kind("image", SCORED)
def image_gray_alpha_png(seed: int) -> dict[str, bytes]:
    return {"gray-alpha.png": _pil_bytes(Image.fromarray(_pixels(seed)).convert("LA"), "PNG")}


@kind("image", SCORED)
def image_palette_png(seed: int) -> dict[str, bytes]:
    return {"palette.png": _pil_bytes(Image.fromarray(_pixels(seed)).convert("P", palette=Image.ADAPTIVE), "PNG")}


@kind("image", SCORED)
def image_palette_transparent_png(seed: int) -> dict[str, bytes]:
    image = Image.fromarray(_pixels(seed)).convert("P", palette=Image.ADAPTIVE, colors=16)
    return {"palette-transparent.png": _pil_bytes(image, "PNG", transparency=0)}


@kind("image", SCORED)
def image_animated_gif(seed: int) -> dict[str, bytes]:
    frames = [Image.fromarray(_pixels(seed + i)).convert("P", palette=Image.ADAPTIVE) for i in range(4)]
    return {"animated.gif": _pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80,
                                       loop=0)}


def exif_rotated_jpeg_bytes(seed: int = 0, orientation: int = 6) -> bytes:
    """A 48x24 JPEG, left half red and right half blue as stored, with EXIF `orientation`.

    Orientation 6 means "rotate 90 degrees clockwise to display": displayed, it is 24x48
    with red on top.
    """
    stored = np.zeros((24, 48, 3), np.uint8)
    stored[:, :24] = (220, 30, 30)
    stored[:, 24:] = (30, 30, 220)
    stored = np.clip(stored.astype(int) + np.random.default_rng(seed).integers(-5, 6, stored.shape), 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _pil_bytes(Image.fromarray(stored.astype(np.uint8)), "JPEG", quality=95, exif=exif.tobytes())


@kind("image", SCORED)
def image_exif_rotated_jpeg(seed: int) -> dict[str, bytes]:
    return {"exif-orientation-6.jpg": exif_rotated_jpeg_bytes(seed)}


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares `width` x `height` RGB pixels (a decompression bomb's
    header, without the bomb: the data is one compressed row)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def jpeg_declaring(width: int, height: int, seed: int = 0) -> bytes:
    """A small real JPEG with its frame header (SOF0) patched to declare `width` x `height`."""
    data = bytearray(image_bytes("JPEG", (16, 16), seed))
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@kind("image", ERROR, "too large")
def image_bomb_png(seed: int) -> dict[str, bytes]:
    return {"bomb-60000x60000.png": png_declaring(60000, 60000)}


@kind("image", ERROR, "too large")
def image_bomb_jpeg(seed: int) -> dict[str, bytes]:
    # 256 MP: over PIL's own refusal threshold (2 x 89.5 MP) but under OpenCV's (1 GP).
    return {"bomb-16000x16000.jpg": jpeg_declaring(16000, 16000, seed)}


@kind("image", ERROR, "too large")
def image_large_declared_jpeg(seed: int) -> dict[str, bytes]:
    # 100 MP: PIL opens it (with a warning); our own 64 MP limit refuses it.
    return {"declared-10000x10000.jpg": jpeg_declaring(10000, 10000, seed)}


@kind("image", SCORED)
def image_1x1(seed: int) -> dict[str, bytes]:
    pixel = Image.fromarray(_pixels(seed, (1, 1)))
    return {"1x1.jpg": _pil_bytes(pixel, "JPEG"), "1x1.png": _pil_bytes(pixel, "PNG")}


@kind("image", SCORED)
def image_extreme_aspect(seed: int) -> dict[str, bytes]:
    return {"strip-2000x1.png": _pil_bytes(Image.fromarray(_pixels(seed, (2000, 1))), "PNG")}


@kind("image", SCORED)
def image_progressive_jpeg(seed: int) -> dict[str, bytes]:
    return {"progressive.jpg": _pil_bytes(Image.fromarray(_pixels(seed, (96, 64))), "JPEG", progressive=True)}


@kind("image", SCORED)
def image_jpeg_trailing_data(seed: int) -> dict[str, bytes]:
    # Data after the end-of-image marker, as in "motion photos" (a JPEG, then an MP4) or
    # camera trailers: the image is whole. The trailer holds a start-of-scan marker.
    trailer = b"\x00\x00\x00\x18ftypmp42" + b"\xff\xda\x00\x08" + np.random.default_rng(seed).bytes(300)
    return {"motion-photo.jpg": image_bytes("JPEG", (40, 30), seed) + trailer}


@kind("image", SCORED)
def image_other_formats(seed: int) -> dict[str, bytes]:
    image = Image.fromarray(_pixels(seed))
    return {"other.bmp": _pil_bytes(image, "BMP"), "other.webp": _pil_bytes(image, "WEBP"),
            "other.tiff": _pil_bytes(image, "TIFF")}


@kind("image", SCORED)
def image_odd_key_names(seed: int) -> dict[str, bytes]:
    return {f"names/{pattern.format(n=seed)}.jpg": image_bytes("JPEG", (24, 24), seed + i)
            for i, pattern in enumerate(ODD_NAMES.values())}
