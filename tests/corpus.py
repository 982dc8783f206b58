"""A hostile-input corpus, written by code at test time (never downloaded, never committed).

Issue 8 asks every odd file a group meeting can produce to go through the
library, the command line and the dashboard with a clear message and no
traceback. This module writes those files into a directory and describes what
each one should do::

    from tests.corpus import build_corpus

    corpus = build_corpus(tmp_path)                      # everything (imports torch)
    corpus = build_corpus(tmp_path, kinds={"image"})     # images only: PIL, fast
    for item in corpus.values():
        item.path          # the file (or folder, for kind "dataset")
        item.kind          # "image" | "checkpoint" | "log" | "dataset"
        item.expected      # "ok" or "error"
        item.keyword       # for errors: a word the one-line message contains (compare lowercased)
        item.model         # for checkpoints: the --model it is loaded into ("resnet18")
        item.classes       # for the good checkpoint: its class-names file
        item.details       # further expectations, e.g. {"size": (w, h)} of the decoded image

``build_corpus(directory, kinds=None, large=True)`` returns ``{name: CorpusItem}``
in a stable order; ``large=False`` leaves out the 8000x6000 photo (the one item
that costs ~0.15 GB while decoding). ``item.matches(message)`` checks an error
message against the keyword.

Everything is deterministic (fixed seeds), small on disk (the biggest files are
the two checkpoints: a 3-class ResNet-18, ~45 MB, and a SqueezeNet 1.1, ~5 MB)
and built in a couple of seconds.
"""

from __future__ import annotations

import io
import json
import random
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("image", "checkpoint", "log", "dataset")

#: The architecture the corpus checkpoints are tried against.
CHECKPOINT_MODEL = "resnet18"
#: The good checkpoint's classes; its fc bias makes GOOD_CLASS win for any input.
GOOD_CLASSES = ("cat", "dog", "rabbit")
GOOD_CLASS = "dog"


@dataclass(frozen=True)
class CorpusItem:
    """One generated input and what the product must do with it."""

    name: str
    path: Path
    kind: str
    expected: str  # "ok" | "error"
    keyword: str | None = None  # for errors: lowercase text the message must contain
    model: str | None = None
    classes: Path | None = None
    details: dict = field(default_factory=dict)
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.expected == "ok"

    def matches(self, message: str) -> bool:
        """Whether ``message`` is the clear one this item should get."""
        return self.keyword is None or self.keyword.lower() in message.lower()

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "kind": self.kind,
            "expected": self.expected,
            "keyword": self.keyword,
            "model": self.model,
            "classes": str(self.classes) if self.classes else None,
            "details": self.details,
            "note": self.note,
        }


# ----------------------------------------------------------------------------- image bytes


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode(img, fmt: str, **options) -> bytes:
    """``img`` (a PIL image) encoded as ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def sample_image(width: int = 64, height: int = 48):
    """A small RGB picture with structure (gradients and a block), so codecs have work to do."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1)
    arr[height // 4 : height // 2, width // 4 : width // 2] = (250, 250, 20)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def bomb_png(width: int = 40000, height: int = 40000) -> bytes:
    """A valid PNG header claiming ``width`` x ``height`` with a few bytes of data.

    The IHDR is crafted by hand (with a correct CRC), so readers learn the size
    without anything being allocated.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def bad_crc_png() -> bytes:
    """A PNG whose image-data (IDAT) checksum is wrong, as after a damaged transfer."""
    data = bytearray(encode(sample_image(), "PNG"))
    at = data.find(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    data[at + 4 + length] ^= 0xFF  # first byte of the IDAT CRC
    return bytes(data)


def truncated_jpeg() -> bytes:
    data = encode(sample_image(128, 96), "JPEG", quality=90)
    return data[: len(data) // 2]


def sixteen_bit_png() -> bytes:
    """A 16-bit grayscale PNG (mode I;16) with known values 0, 257, 32768, 65535 in the top row."""
    import numpy as np
    from PIL import Image

    arr = np.full((24, 32), 32768, dtype=np.uint16)
    arr[0, :4] = (0, 257, 32768, 65535)
    return encode(Image.fromarray(arr), "PNG")


def cmyk_jpeg() -> bytes:
    """A CMYK JPEG of magenta + yellow ink (C, M, Y, K = 0, 255, 255, 0): it decodes to red."""
    from PIL import Image

    return encode(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG", quality=95)


def palette_transparent_png() -> bytes:
    """A palette PNG: index 0 transparent, index 1 blue; the top-left pixel is blue."""
    from PIL import Image

    img = Image.new("P", (20, 10), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    img.putpixel((0, 0), 1)
    return encode(img, "PNG", transparency=0)


def animated_gif() -> bytes:
    """Three frames, red then green then blue; the first frame is red."""
    from PIL import Image

    frames = [Image.new("RGB", (30, 20), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated_jpeg() -> bytes:
    """A 60x30 JPEG stored sideways with EXIF Orientation=6 and a red block in its stored top-left.

    Displayed (rotated 90 degrees clockwise) it is 30x60 with the red block top-right.
    """
    from PIL import Image

    img = Image.new("RGB", (60, 30), (0, 0, 0))
    img.paste((255, 0, 0), (0, 0, 12, 12))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


def large_jpeg(width: int = 8000, height: int = 6000) -> bytes:
    """A big photo-sized JPEG that is mostly one colour, so it is cheap to write (~0.3 MB)."""
    from PIL import Image

    img = Image.new("L", (width, height), 128)
    img.paste(200, (width // 4, height // 4, width // 2, height // 2))
    return encode(img.convert("RGB"), "JPEG", quality=70)


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def _image_items(root: Path, large: bool) -> list[CorpusItem]:
    from PIL import Image

    d = root / "images"
    rng = random.Random(8)
    binary = b"\x00\x01\x02junk" + bytes(rng.randrange(256) for _ in range(2048))
    items = [
        CorpusItem("zero_byte", _write(d / "zero_byte.jpg", b""), "image", "error", "empty"),
        CorpusItem(
            "text_renamed_jpg",
            _write(d / "notes.jpg", "epoch 1, loss 0.5\nthis is a text file someone renamed\n"),
            "image", "error", "not an image",
        ),
        CorpusItem("truncated_jpeg", _write(d / "truncated.jpg", truncated_jpeg()), "image", "error", "truncated"),
        CorpusItem("bad_crc_png", _write(d / "bad_crc.png", bad_crc_png()), "image", "error", "crc"),
        CorpusItem(
            "bomb_png", _write(d / "bomb.png", bomb_png()), "image", "error", "decompression bomb",
            note="PNG header claims 40000x40000",
        ),
        CorpusItem(
            "png_named_jpg", _write(d / "really_a_png.jpg", encode(sample_image(), "PNG")),
            "image", "error", "content is png",
        ),
        CorpusItem("binary_junk", _write(d / "data.bin", binary), "image", "error", "not an image"),
        CorpusItem(
            "html_page", _write(d / "page.html", "<!DOCTYPE html><html><body><img src=x></body></html>"),
            "image", "error", "html",
        ),
        CorpusItem(
            "svg_drawing",
            _write(d / "drawing.svg", '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'),
            "image", "error", "svg",
        ),
        CorpusItem(
            "sixteen_bit_png", _write(d / "sixteen_bit.png", sixteen_bit_png()), "image", "ok",
            details={"size": (32, 24), "top_row": (0, 1, 128, 255)},
        ),
        CorpusItem("cmyk_jpeg", _write(d / "cmyk.jpg", cmyk_jpeg()), "image", "ok",
            details={"size": (40, 30), "pixel_0_0": (255, 0, 0)},
        ),
        CorpusItem(
            "palette_transparent_png", _write(d / "palette_transparent.png", palette_transparent_png()),
            "image", "ok", details={"size": (20, 10), "pixel_0_0": (0, 0, 255), "pixel_5_5": (255, 255, 255)},
        ),
        CorpusItem(
            "animated_gif", _write(d / "animated.gif", animated_gif()), "image", "ok",
            details={"size": (30, 20), "pixel_0_0": (255, 0, 0), "frames": 3},
        ),
        CorpusItem(
            "exif_rotated_jpeg", _write(d / "exif_rotated.jpg", exif_rotated_jpeg()), "image", "ok",
            details={"size": (30, 60), "red_corner": "top-right"},
        ),
        CorpusItem(
            "one_pixel_png", _write(d / "one_pixel.png", encode(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG")),
            "image", "ok", details={"size": (1, 1), "pixel_0_0": (9, 99, 199)},
        ),
    ]
    if large:
        items.append(
            CorpusItem(
                "large_8000x6000_jpeg", _write(d / "large_8000x6000.jpg", large_jpeg()), "image", "ok",
                details={"size": (8000, 6000)}, note="48 megapixels: under the 64 MP limit",
            )
        )
    return items


# ----------------------------------------------------------------------------- checkpoints


class Payload:
    """Pickles into a call of ``os.system``: unpickling it would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch '{self.marker}'",))


def payload_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint whose pickle runs a shell command when loaded without ``weights_only``."""
    import torch

    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "hook": Payload(marker)}, path)
    return path


def safetensors_zip_polyglot(path: Path, state: dict, marker: Path) -> Path:
    """A file that is at once a valid safetensors file holding ``state`` and a torch.save zip whose pickle runs
    ``touch marker`` under ``torch.load(weights_only=False)`` (issue 21, finding 1).

    The 8-byte safetensors length is the zip magic ``PK\\x03\\x04`` plus four zero bytes (a 64 MiB header padded
    with spaces); the zip (its members carry absolute offsets) fills the end of the last tensor's bytes, where
    torch's zip reader finds its directory. Writes about 65 MB.
    """
    import zipfile as zf

    import torch

    n = int.from_bytes(b"PK\x03\x04\0\0\0\0", "little")
    base = 8 + n
    evil = io.BytesIO()
    torch.save({"state_dict": {}, "hook": Payload(marker)}, evil)
    members = zf.ZipFile(io.BytesIO(evil.getvalue()))
    names = list(state)
    blobs = [state[k].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() for k in names]
    body_before_last = sum(len(b) for b in blobs[:-1])

    def zip_at(start: int) -> bytes:
        buf = io.BytesIO()
        buf.write(b"\0" * start)
        with zf.ZipFile(buf, "a", zf.ZIP_STORED) as z:  # appending to non-zip data: offsets count it
            for info in members.infolist():
                z.writestr(info.filename, members.read(info.filename))
        return buf.getvalue()[start:]

    size = len(zip_at(base))
    if size > len(blobs[-1]):
        raise ValueError("the last tensor is too small to hold the zip")
    start = base + body_before_last + len(blobs[-1]) - size
    payload = zip_at(start)
    offsets, pos = {}, 0
    for k, b in zip(names, blobs):
        offsets[k] = [pos, pos + len(b)]
        pos += len(b)
    dtypes = {torch.float32: "F32", torch.int64: "I64", torch.float16: "F16", torch.uint8: "U8"}
    header = {k: {"dtype": dtypes[state[k].dtype], "shape": list(state[k].shape), "data_offsets": offsets[k]} for k in names}
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(n.to_bytes(8, "little"))
        f.write(text + b" " * (n - len(text)))
        for b in blobs[:-1]:
            f.write(b)
        f.write(blobs[-1][: len(blobs[-1]) - len(payload)])
        f.write(payload)
    return path


def good_checkpoint(path: Path, *, winner: int = GOOD_CLASSES.index(GOOD_CLASS)) -> Path:
    """A 3-class ResNet-18 saved from ``nn.DataParallel`` (keys "module."), fc bias favouring ``winner``."""
    import torch
    import torchvision
    from torch import nn

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=len(GOOD_CLASSES))
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.fill_(-10.0)
        model.fc.bias[winner] = 10.0
    torch.save(nn.DataParallel(model).state_dict(), path)
    return path


def lying_safetensors(path: Path, *, lie: str) -> Path:
    """A safetensors file whose header lies: ``lie="offsets"`` (past the end) or ``"length"`` (header too long)."""
    header = json.dumps({"fc.weight": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}).encode()
    body = bytes(64)
    if lie == "offsets":
        header = json.dumps({"fc.weight": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}})
        header = header.encode()
        data = struct.pack("<Q", len(header)) + header + body
    elif lie == "length":
        data = struct.pack("<Q", 10**9) + header + body
    else:
        raise ValueError(lie)
    return _write(path, data)


def _checkpoint_items(root: Path) -> list[CorpusItem]:
    import torch
    import torchvision

    d = root / "checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    marker = root / "PAYLOAD_RAN"
    good = good_checkpoint(d / "flowers_dataparallel.pth")
    classes = _write(d / "classes.txt", "\n".join(GOOD_CLASSES) + "\n")
    wrong_count = _write(d / "two_classes.txt", "cat\ndog\n")
    small = d / "small.pth"
    torch.save({"model": {"fc.weight": torch.randn(3, 512), "fc.bias": torch.randn(3)}}, small)
    truncated = _write(d / "truncated.pth", small.read_bytes()[: small.stat().st_size // 2])
    small.unlink()
    torch.manual_seed(0)
    other = d / "squeezenet_for_resnet.pth"
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), other)
    m = CHECKPOINT_MODEL
    return [
        CorpusItem(
            "good_checkpoint", good, "checkpoint", "ok", model=m, classes=classes,
            details={"top": GOOD_CLASS, "num_classes": len(GOOD_CLASSES)},
            note="3-class ResNet-18 saved from nn.DataParallel",
        ),
        CorpusItem(
            "wrong_class_count", good, "checkpoint", "error", "3 classes", model=m, classes=wrong_count,
            note="3-class checkpoint with a 2-name class file",
        ),
        CorpusItem(
            "payload_pickle", payload_checkpoint(d / "payload.pth", marker), "checkpoint", "error", "refused",
            model=m, details={"marker": str(marker)}, note="unpickling runs os.system; the marker must never appear",
        ),
        CorpusItem("truncated_checkpoint", truncated, "checkpoint", "error", "truncated", model=m),
        CorpusItem(
            "other_architecture", other, "checkpoint", "error", "does not fit", model=m,
            note="SqueezeNet 1.1 weights for a ResNet-18",
        ),
        CorpusItem(
            "lying_offsets_safetensors", lying_safetensors(d / "lying_offsets.safetensors", lie="offsets"),
            "checkpoint", "error", "lies", model=m,
        ),
        CorpusItem(
            "lying_length_safetensors", lying_safetensors(d / "lying_length.safetensors", lie="length"),
            "checkpoint", "error", "header claims", model=m,
        ),
    ]


# ----------------------------------------------------------------------------- logs and datasets

SEED_LOG_LINES = (
    "epoch 1,\tloss 2.1052,\ttrain accuracy 0.312,\ttest accuracy 0.405,\tuse time 62.638",
    "epoch 2,\tloss 1.4420,\ttrain accuracy 0.521,\ttest accuracy 0.566,\tuse time 61.907",
    "epoch 3,\tloss 0.9117,\ttrain accuracy 0.688,\ttest accuracy 0.640,\tuse time 62.011",
)


def junk_log() -> bytes:
    """The seed notes' log format with lines of binary junk between them (no NUL bytes).

    Terminal escapes, carriage returns and non-UTF-8 bytes, as a progress bar or
    a wrong encoding leaves them: the epoch lines must still be read.
    """
    rng = random.Random(7)
    junk = bytes(rng.randrange(128, 256) for _ in range(160))
    parts = [b"training VGG19 on animals\n", junk + b"\n"]
    for i, line in enumerate(SEED_LOG_LINES):
        parts.append(line.encode() + b"\n")
        parts.append(b"\x1b[2K\r" + junk[i * 40 : i * 40 + 40] + b"\n")
    return b"".join(parts)


def many_headings_log(headings: int = 20_000) -> bytes:
    """A Markdown document of ``headings`` runs, one epoch each (20,000: about 1.8 MB, issue 21)."""
    return "".join(f"## Run {i}\n\nepoch 1, loss 0.5000, train accuracy 0.800, test accuracy 0.700, use time 1.5\n\n"
                   for i in range(headings)).encode()


#: Right-to-left override and friends: "\u202egol.exe" shows as "exe.log" (issue 21); dropped from names.
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"

#: Names a visitor can give a checkpoint or a photo that a shell would run if unquoted (issue 21).
SHELL_QUOTABLE_NAMES = (
    "mine $(touch MARKER) x",
    "a`touch MARKER`b",
    "x; touch MARKER",
    "it's \"$(touch MARKER)\" 'q'",
    "-- --rm $HOME ${IFS} * ~ !! \\ & | > MARKER",
)
#: Names no script line can carry even quoted: written as placeholders, kept in settings.json.
SHELL_UNWRITABLE_NAMES = (
    "new\nline; touch MARKER",
    "car\rriage $(touch MARKER)",
    "\u202egnp.exe $(touch MARKER)",
    "zero\u200bwidth",
    "nul\x00byte",
    "esc\x1b[2Jape",
)
#: A password holding every character a URL splits on.
URL_SECRET = "hun/ter2@x:y"
#: Results database names that are not a file, sqlite:///, postgresql:// or valid libpq keywords
#: (issue 21): each refused in one line without the password, creating nothing.
REFUSED_DATABASE_URLS = (
    f"postgresql:/{URL_SECRET}",
    f"postgresql:{URL_SECRET}",
    f"mysql://lens:{URL_SECRET}@db/lens",
    f"http://lens:{URL_SECRET}@db/lens",
    f"results:{URL_SECRET}",
    f"postgresql://lens:{URL_SECRET}@127.0.0.1:1/lens",
    "postgresql://lens:hu@nter2@127.0.0.1:1/lens",
    f"host=127.0.0.1 dbname=lens passwd={URL_SECRET}",
    "host=127.0.0.1 dbname=lens password=hunter 2",
    "a=b.sqlite",
    "sqlite:/x.sqlite",
    "  ",
)
#: MLflow tracking URIs that name no folder or server honestly, and the words of their refusal.
REFUSED_TRACKING_URIS = (
    ("mlflow.lab:5000", "did you mean http://mlflow.lab:5000?"),
    ("127.0.0.1:5000/base", "did you mean http://127.0.0.1:5000/base?"),
    ("http:/127.0.0.1:5000", "has no host: use http://HOST:PORT"),
    ("file:relative", "is not an absolute file URI"),
    ("file://otherhost/abs", "is not an absolute file URI"),
    ("nosuchscheme:thing", "refused the export"),
)


def _log_items(root: Path) -> list[CorpusItem]:
    d = root / "logs"
    rng = random.Random(9)
    garbage = bytes(rng.randrange(256) for _ in range(4096))
    bidi_log = "\n".join(["# \u202egol.exe" + BIDI_CONTROLS, *SEED_LOG_LINES]) + "\n"
    return [
        CorpusItem(
            "log_twenty_thousand_headings", _write(d / "many_headings.md", many_headings_log()), "log", "ok",
            details={"runs": 50, "notice": "20,000 runs in one log; only the first 50 are read (19,950 dropped)"},
            note="1.8 MB, 20,000 headings: 50 runs and a notice, not 20,000 name fields",
        ),
        CorpusItem(
            "log_bidi_run_name", _write(d / "\u202ebidi.log", bidi_log.encode()), "log", "ok",
            details={"epochs": 3, "test_acc": (0.405, 0.566, 0.640), "name": "gol.exe"},
            note="right-to-left override in the heading and file name: dropped from the run name",
        ),
        CorpusItem(
            "log_with_binary_junk", _write(d / "vgg19_junk.log", junk_log()), "log", "ok",
            details={"epochs": 3, "test_acc": (0.405, 0.566, 0.640)},
        ),
        CorpusItem(
            "log_all_binary", _write(d / "garbage.log", b"\x00" + garbage), "log", "error", "binary",
            note="random bytes: refused, not parsed into nonsense",
        ),
    ]


def _dataset_items(root: Path) -> list[CorpusItem]:
    from PIL import Image

    d = root / "dataset_unreadable"
    good = 0
    for label, colour in (("daisy", (240, 240, 40)), ("palace", (150, 40, 40))):
        for i in range(2):
            img = sample_image(48, 40)
            img.paste(colour, (0, 0, 20 + i, 20))
            _write(d / label / f"ok_{i}.jpg", encode(img, "JPEG", quality=90))
            good += 1
    _write(d / "daisy" / "empty.jpg", b"")
    _write(d / "daisy" / "truncated.jpg", truncated_jpeg())
    _write(d / "palace" / "text.jpg", "not a photo\n")
    _write(d / "palace" / "bomb.png", bomb_png())
    _write(d / "palace" / "bad_crc.png", bad_crc_png())
    bad = 5
    _write(d / "palace" / "tiny.png", encode(Image.new("RGB", (1, 1), (150, 40, 40)), "PNG"))
    good += 1
    return [
        CorpusItem(
            "dataset_with_unreadable_files", d, "dataset", "ok",
            details={"n": good, "skipped": bad, "labels": ["daisy", "palace"]},
            note="ImageFolder: 5 readable images and 5 unreadable ones (skipped and counted)",
        )
    ]


_BUILDERS = {
    "image": _image_items,
    "checkpoint": _checkpoint_items,
    "log": _log_items,
    "dataset": _dataset_items,
}


def build_corpus(
    directory: str | Path, *, kinds: Iterable[str] | None = None, large: bool = True
) -> dict[str, CorpusItem]:
    """Write the corpus under ``directory`` and return ``{name: CorpusItem}``.

    ``kinds`` limits it to some of :data:`KINDS`; ``large=False`` skips the
    8000x6000 image.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    wanted = tuple(KINDS if kinds is None else kinds)
    unknown = set(wanted) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown corpus kinds {sorted(unknown)}; known: {KINDS}")
    items: dict[str, CorpusItem] = {}
    for kind in KINDS:
        if kind not in wanted:
            continue
        built = _BUILDERS[kind](root, large) if kind == "image" else _BUILDERS[kind](root)
        for item in built:
            items[item.name] = item
    return items


# ---------------------------------------------------------------- issue 21: hostile servers and cheap-looking uploads
# Not files of the corpus above but the same idea: what a hostile Hub, mirror or visitor sends, and a word of the
# one-line refusal. tests/unit/test_downloads.py and tests/unit/test_archives.py run them.

#: Hub answers (``tests.loopback.LoopbackServer.hf_etag`` / ``hf_commit``); ``{victim}`` is a file outside the cache.
HOSTILE_HUB_HEADERS = {
    "etag-path": ("etag", "../../../../../../{victim}", "etag"),
    "etag-quoted-path": ("etag", '"../../../../../../{victim}"', "etag"),
    "etag-short": ("etag", 'W/"0123"', "etag"),
    "etag-not-hex": ("etag", "g" * 64, "etag"),
    "commit-path": ("commit", "../../../../../../{victim}", "commit"),
    "commit-name": ("commit", "main", "commit"),
}

#: Mirror redirects (``fail("redirect", location=...)``): ``{name}`` the file, ``{other}`` another loopback port.
HOSTILE_REDIRECTS = {
    "ftp": ("ftp://127.0.0.1/{name}", r"redirected to a ftp: URL; only http and https are followed"),
    "file": ("file:///etc/passwd", r"redirected to a file: URL"),
    "other-loopback-port": ("http://127.0.0.1:{other}/{name}", r"redirected to an internal address \(127\.0\.0\.1:\d+\)"),
    "ipv6-loopback": ("http://[::1]:{other}/{name}", r"redirected to an internal address \(::1:\d+\)"),
    "loop": ("/{name}", r"HTTP 302"),  # to itself, again and again: urllib's loop limit
}


def tiny_files_zip(n: int, *, classes: int = 2) -> bytes:
    """A zip of ``n`` tiny (1x1) PNGs in ``classes`` class folders: a few kB per thousand files compressed, but one
    inode and a file-system block each once unpacked (finding 9 used 50,000)."""
    import zipfile

    from PIL import Image

    png = encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(n):
            archive.writestr(f"class_{i % classes}/{i:06d}.png", png)
    return buffer.getvalue()
