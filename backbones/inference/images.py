"""Decode user images robustly into RGB PIL images.

Photos come from phones, screenshots and scanners: EXIF-rotated JPEGs, PNGs with
alpha, palette GIFs, 16-bit TIFFs, CMYK JPEGs. Some files are not what their name
says, some are truncated, and some are built to exhaust memory. ``load_image``
either returns a plain 8-bit RGB image the models can use, or raises
:class:`ImageError` with a one-line reason.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from backbones.errors import ImageError

# PIL logs some refusals (e.g. a TIFF's absurd samples-per-pixel) at ERROR level; with no
# handler configured Python would print them on stderr beside our one-line message.
logging.getLogger("PIL").addHandler(logging.NullHandler())

#: Largest upload accepted, in bytes (checked before decoding).
MAX_IMAGE_BYTES = int(os.environ.get("BACKBONES_MAX_IMAGE_BYTES", 50 * 1024 * 1024))
#: Largest pixel count accepted (width x height): 8000x6000 photos pass, 40000x40000 bombs do not.
MAX_IMAGE_PIXELS = int(os.environ.get("BACKBONES_MAX_IMAGE_PIXELS", 64_000_000))

# Formats we decode, with the file name endings each is known by.
FORMAT_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "PNG": (".png",),
    "WEBP": (".webp",),
    "BMP": (".bmp", ".dib"),
    "GIF": (".gif",),
    "TIFF": (".tif", ".tiff"),
}
IMAGE_EXTENSIONS = tuple(ext for exts in FORMAT_EXTENSIONS.values() for ext in exts)

ImageSource = str | os.PathLike | bytes | BinaryIO


@dataclass(frozen=True)
class ImageInfo:
    """What was decoded: the format found by content, original mode and size."""

    name: str
    format: str
    mode: str
    width: int
    height: int
    frames: int = 1


def sniff_format(head: bytes) -> str | None:
    """Image format from the first bytes of a file, or None when it is none we read."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def _read_bytes(source: ImageSource, name: str) -> bytes:
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        elif isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.is_file():
                raise ImageError(f"{name}: no such file")
            size = path.stat().st_size
            if size > MAX_IMAGE_BYTES:
                raise ImageError(
                    f"{name}: file is {size / 2**20:.1f} MiB, larger than the "
                    f"{MAX_IMAGE_BYTES / 2**20:.0f} MiB limit for images"
                )
            data = path.read_bytes()
        else:
            data = source.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise ImageError(f"{name}: cannot read file ({exc.strerror or exc})") from exc
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(
            f"{name}: file is larger than the {MAX_IMAGE_BYTES / 2**20:.0f} MiB limit for images"
        )
    return data


def _check_png_checksums(data: bytes, name: str) -> None:
    """Refuse a PNG whose chunk CRCs do not match.

    PIL checks the CRC of the chunks before the image data but not of IDAT
    itself, and reports a bad header CRC only as "cannot identify"; a damaged
    upload deserves its own message.
    """
    view = memoryview(data)
    pos = 8
    while pos + 12 <= len(data):
        length = int.from_bytes(view[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            return  # truncated: the decoder reports that
        kind = bytes(view[pos + 4 : pos + 8])
        if zlib.crc32(view[pos + 4 : end - 4]) != int.from_bytes(view[end - 4 : end], "big"):
            label = kind.decode("latin-1") if kind.isalpha() else repr(kind)
            raise ImageError(
                f"{name}: corrupt PNG file: checksum (CRC) mismatch in the {label} chunk; "
                "the file was damaged (re-export or re-send it)"
            )
        if kind == b"IEND":
            return
        pos = end


def _describe_non_image(data: bytes) -> str:
    head = data[:512]
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a PyTorch checkpoint?)"
    if head.startswith(b"\x80") and len(head) > 1 and head[1] in range(2, 6):
        return "a Python pickle"
    if head.lstrip().startswith((b"<svg", b"<?xml")):
        return "SVG/XML (vector images are not supported)"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unrecognised binary data"


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: alpha over white, 16-bit scaled, palette expanded."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit files decode to "I;16" or to 32-bit "I"; both hold 0..65535.
        peak = 65535.0 if (mode.startswith("I;16") or arr.max(initial=0) > 255) else 255.0
        arr = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scale = (hi - lo) or 1.0
        arr = np.nan_to_num((arr - lo) / scale * 255.0)
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return img
    # CMYK, YCbCr, LAB, L, 1, P: PIL's own conversions are correct for these.
    return img.convert("RGB")


def load_image_with_info(
    source: ImageSource,
    *,
    name: str | None = None,
    max_pixels: int | None = None,
) -> tuple[Image.Image, ImageInfo]:
    """Decode ``source`` (path, bytes or binary file) into an RGB image.

    ``name`` is used in messages and, when it has an image extension, must agree
    with the content (a PNG called ``.jpg`` is refused: it is usually a mistake or
    an attempt to smuggle another format past a filter).

    Raises :class:`ImageError` for empty, oversized, truncated, corrupt, bomb or
    non-image input.
    """
    if name is None:
        name = Path(source).name if isinstance(source, (str, os.PathLike)) else "image"
    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    data = _read_bytes(source, name)
    if not data:
        raise ImageError(f"{name}: file is empty (0 bytes)")
    found = sniff_format(data[:16])
    if found is None:
        raise ImageError(
            f"{name}: not an image: content is {_describe_non_image(data)}; "
            "expected JPEG, PNG, WebP, BMP, GIF or TIFF"
        )
    ext = Path(name).suffix.lower()
    if ext in IMAGE_EXTENSIONS and ext not in FORMAT_EXTENSIONS[found]:
        raise ImageError(
            f"{name}: file name says {ext} but the content is {found}; rename it to "
            f"{FORMAT_EXTENSIONS[found][0]} if that is what it is"
        )
    if found == "PNG":
        _check_png_checksums(data, name)
    try:
        with warnings.catch_warnings():
            # Damaged files make PIL warn (EXIF, TIFF tags); the outcome is reported once, below.
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width <= 0 or height <= 0:
                raise ImageError(f"{name}: image has no pixels ({width}x{height})")
            if width * height > limit:
                raise ImageError(
                    f"{name}: image is {width}x{height} = {width * height / 1e6:.0f} megapixels, "
                    f"over the {limit / 1e6:.0f} megapixel limit (decompression bomb refused)"
                )
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                img.seek(0)  # first frame of an animation
            # Decode fully now, inside the guard, so truncation surfaces here
            # (ImageFile.LOAD_TRUNCATED_IMAGES stays False: half a photo is refused).
            img.load()
            info = ImageInfo(name, found, img.mode, width, height, frames)
            # in_place: no full copy of an upright photo (a 48 MP image is 144 MB per copy).
            ImageOps.exif_transpose(img, in_place=True)
            rgb = _to_rgb(img)
            rgb.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        # PIL's own (higher) limit fired before ours could: report ours, not PIL's.
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(claimed.group(1)) / 1e6:.0f} megapixels" if claimed else "too many pixels"
        raise ImageError(
            f"{name}: image claims {size}, over the {limit / 1e6:.0f} megapixel limit (decompression bomb refused)"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: {found} header found but the file cannot be decoded") from exc
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, struct.error) as exc:
        detail = str(exc).split("\n")[0] or type(exc).__name__
        if "truncated" in detail.lower() or isinstance(exc, EOFError):
            raise ImageError(f"{name}: {found} file is truncated ({detail})") from exc
        raise ImageError(f"{name}: corrupt {found} file ({detail})") from exc
    except (IndexError, KeyError, TypeError, ZeroDivisionError, AttributeError) as exc:
        # PIL's format plugins index into damaged headers without checking (fuzzing finds
        # IndexError in GIF and TypeError in TIFF): still a bad file, not a crash.
        detail = str(exc).split("\n")[0] or "malformed header"
        raise ImageError(f"{name}: corrupt or truncated {found} file ({type(exc).__name__}: {detail})") from exc
    return rgb, info


def load_image(source: ImageSource, *, name: str | None = None, max_pixels: int | None = None) -> Image.Image:
    """Decode ``source`` into an 8-bit RGB ``PIL.Image`` (see :func:`load_image_with_info`)."""
    return load_image_with_info(source, name=name, max_pixels=max_pixels)[0]


#: Longest side of the working copy a long-lived cache keeps (larger photos are downscaled once, Lanczos).
PREVIEW_MAX_SIDE = 2048


def bounded_preview(img: Image.Image, max_side: int = PREVIEW_MAX_SIDE) -> Image.Image:
    """``img`` itself when it fits in ``max_side`` pixels, else a downscaled copy (aspect ratio kept).

    Every model's own resize works on 600 px or less, so predictions barely move; memory does: an 8000x8000
    photo is 192 MB as RGB and 12 MB as a preview.
    """
    if max(img.size) <= max_side:
        return img
    preview = img.copy()
    preview.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return preview


class DecodedImageCache:
    """Decoded images by content, least recently used out first, bounded in bytes (not in entries).

    A server keeps one for all sessions: 16 uploads of 8000x8000 PNGs must not hold 9 GB after the tabs are
    closed. Entries are previews (:func:`bounded_preview`); refused images are not cached.
    """

    def __init__(self, max_bytes: int):
        import threading
        from collections import OrderedDict

        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[str, tuple[Image.Image, ImageInfo, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, data: bytes, name: str) -> tuple[Image.Image, ImageInfo]:
        import hashlib

        key = hashlib.sha256(data).hexdigest() + "|" + name
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit[0], hit[1]
        image, info = load_image_with_info(data, name=name)
        image = bounded_preview(image)
        size = image.width * image.height * len(image.getbands())
        with self._lock:
            if key not in self._entries and size <= self.max_bytes:
                self._entries[key] = (image, info, size)
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, (_, _, dropped) = self._entries.popitem(last=False)
                    self._bytes -= dropped
        return image, info
