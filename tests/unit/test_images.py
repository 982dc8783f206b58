"""Robust image decoding: every format and mode to plain RGB, every bad kind to its own ImageError."""

from __future__ import annotations

import io
import random
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backbones.errors import ImageError
from backbones.inference.images import load_image, load_image_with_info
from tests import corpus


def rgb_at(img: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.asarray(img)[y, x])


def close(a, b, tol: int = 6) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b))


# ----------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    "fmt, ext, options",
    [
        ("JPEG", ".jpg", {"quality": 95}),
        ("PNG", ".png", {}),
        ("WEBP", ".webp", {"lossless": True}),
        ("BMP", ".bmp", {}),
        ("GIF", ".gif", {}),
        ("TIFF", ".tiff", {}),
    ],
)
def test_each_format_decodes_to_rgb_of_the_right_size(tmp_path, fmt, ext, options):
    src = corpus.sample_image(37, 23)  # odd sizes catch width/height swaps
    path = tmp_path / f"photo{ext}"
    path.write_bytes(corpus.encode(src, fmt, **options))
    img, info = load_image_with_info(path)
    assert img.mode == "RGB"
    assert img.size == (37, 23)
    assert info.format == fmt
    assert (info.width, info.height) == (37, 23)
    # The yellow block at (10..17, 6..10) survives every codec (GIF quantises a little).
    assert close(rgb_at(img, 12, 8), (250, 250, 20), tol=40)


def test_path_bytes_and_file_object_give_the_same_image(tmp_path):
    data = corpus.encode(corpus.sample_image(), "PNG")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    from_path = np.asarray(load_image(path))
    assert np.array_equal(from_path, np.asarray(load_image(data, name="a.png")))
    assert np.array_equal(from_path, np.asarray(load_image(io.BytesIO(data), name="a.png")))


def test_animated_gif_gives_its_first_frame():
    img, info = load_image_with_info(corpus.animated_gif(), name="anim.gif")
    assert info.frames == 3
    assert img.size == (30, 20)
    assert rgb_at(img, 5, 5) == (255, 0, 0)  # frame 0 is red; frame 1 green, frame 2 blue


def test_exif_orientation_6_is_applied():
    # Stored 60x30 with a red block in its stored top-left; orientation 6 = rotate 90 degrees
    # clockwise to display, so the picture is 30x60 and the block ends up top-right.
    raw = Image.open(io.BytesIO(corpus.exif_rotated_jpeg()))
    assert raw.size == (60, 30)
    assert raw.getexif()[0x0112] == 6
    img = load_image(corpus.exif_rotated_jpeg(), name="phone.jpg")
    assert img.size == (30, 60)
    assert close(rgb_at(img, 27, 2), (255, 0, 0), tol=12)  # top-right: red
    for x, y in ((2, 2), (2, 57), (27, 57)):  # the other three corners stay black
        assert close(rgb_at(img, x, y), (0, 0, 0), tol=12)


# ----------------------------------------------------------------------------- modes


def test_fully_transparent_rgba_becomes_pure_white():
    data = corpus.encode(Image.new("RGBA", (9, 7), (12, 34, 56, 0)), "PNG")
    arr = np.asarray(load_image(data, name="clear.png"))
    assert arr.shape == (7, 9, 3)
    assert (arr == 255).all()


def test_half_transparent_rgba_is_composited_on_white():
    # 50% black over white: 255 * (1 - 128/255) = 127.
    data = corpus.encode(Image.new("RGBA", (4, 4), (0, 0, 0, 128)), "PNG")
    assert close(rgb_at(load_image(data, name="half.png"), 1, 1), (127, 127, 127), tol=1)


def test_la_grayscale_with_alpha_is_composited_on_white():
    data = corpus.encode(Image.new("LA", (4, 4), (0, 0)), "PNG")
    assert rgb_at(load_image(data, name="la.png"), 0, 0) == (255, 255, 255)


def test_palette_png_with_transparency():
    img, info = load_image_with_info(corpus.palette_transparent_png(), name="p.png")
    assert info.mode == "P"
    assert rgb_at(img, 0, 0) == (0, 0, 255)  # palette index 1
    assert rgb_at(img, 5, 5) == (255, 255, 255)  # index 0 is transparent -> white, not red


def test_palette_png_without_transparency_expands_the_palette():
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    assert rgb_at(load_image(corpus.encode(img, "PNG"), name="p.png"), 2, 2) == (10, 200, 30)


def test_sixteen_bit_png_is_scaled_to_eight_bits():
    img, info = load_image_with_info(corpus.sixteen_bit_png(), name="deep.png")
    assert info.mode.startswith("I")
    arr = np.asarray(img)
    # 65535 -> 255, 32768 -> 32768 / 65535 * 255 = 127.5 -> 128, 257 -> 1, 0 -> 0
    assert [int(v) for v in arr[0, :4, 0]] == [0, 1, 128, 255]
    assert (arr[0, :4, 0] == arr[0, :4, 1]).all() and (arr[0, :4, 1] == arr[0, :4, 2]).all()
    assert int(arr[10, 10, 0]) == 128


def test_sixteen_bit_tiff_is_scaled_to_eight_bits():
    arr16 = np.array([[0, 65535, 32768, 1000]], dtype=np.uint16)
    data = corpus.encode(Image.fromarray(arr16), "TIFF")
    arr = np.asarray(load_image(data, name="scan.tif"))
    assert [int(v) for v in arr[0, :, 0]] == [0, 255, 128, 4]  # 1000 / 65535 * 255 = 3.9 -> 4


def test_cmyk_jpeg_is_converted():
    img, info = load_image_with_info(corpus.cmyk_jpeg(), name="print.jpg")
    assert info.mode == "CMYK"
    assert img.mode == "RGB"
    assert close(rgb_at(img, 20, 15), (255, 0, 0), tol=8)  # magenta + yellow ink = red


def test_grayscale_jpeg_is_replicated_to_three_channels():
    data = corpus.encode(Image.new("L", (8, 8), 77), "JPEG", quality=95)
    assert close(rgb_at(load_image(data, name="gray.jpg"), 3, 3), (77, 77, 77), tol=1)


def test_one_bit_image_is_black_and_white():
    img = Image.new("1", (5, 3), 0)
    img.putpixel((4, 2), 1)
    out = load_image(corpus.encode(img, "PNG"), name="bw.png")
    assert rgb_at(out, 4, 2) == (255, 255, 255)
    assert rgb_at(out, 0, 0) == (0, 0, 0)


def test_one_by_one_image_is_accepted():
    out = load_image(corpus.encode(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG"), name="dot.png")
    assert out.size == (1, 1)
    assert rgb_at(out, 0, 0) == (9, 99, 199)


def _proc_status_mib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(field + r":\s+(\d+)", text).group(1)) // 1024


def test_8000x6000_photo_is_accepted_with_sane_memory(tmp_path):
    # 48 megapixels is under the 64 MP limit. The RGB image is 8000 * 6000 * 3 bytes =
    # 137 MiB; a decoder making several full copies would show in the peak RSS (Linux
    # /proc: writing 5 to clear_refs resets the peak to the current RSS). No timing asserted.
    path = tmp_path / "big.jpg"
    path.write_bytes(corpus.large_jpeg())
    assert path.stat().st_size < 2_000_000
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = _proc_status_mib("VmRSS")
        measurable = _proc_status_mib("VmHWM") <= before + 5
    except (OSError, AttributeError):
        measurable = False
    img, info = load_image_with_info(path)
    assert (img.width, img.height, img.mode) == (8000, 6000, "RGB")
    assert (info.width, info.height) == (8000, 6000)
    if not measurable:
        pytest.skip("cannot reset the peak RSS here; size checked, memory not")
    grown = _proc_status_mib("VmHWM") - before
    assert grown < 2 * 137 + 50, f"decoding took {grown} MiB at peak"  # the image and at most one copy


# ----------------------------------------------------------------------------- bad input


def expect_error(source, name: str, *words: str) -> str:
    with pytest.raises(ImageError) as caught:
        load_image(source, name=name)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(name)
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    expect_error(path, "empty.jpg", "empty", "0 bytes")


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nowhere.jpg", "nowhere.jpg", "no such file")


def test_text_renamed_jpg():
    expect_error(b"hello, this is a text file\n", "notes.jpg", "not an image", "text")


def test_truncated_jpeg():
    expect_error(corpus.truncated_jpeg(), "cut.jpg", "truncated", "JPEG")


def test_truncated_png():
    data = corpus.encode(corpus.sample_image(200, 100), "PNG")
    expect_error(data[: len(data) // 2], "cut.png", "PNG")


def test_png_with_a_bad_crc_in_the_image_data():
    expect_error(corpus.bad_crc_png(), "damaged.png", "CRC", "IDAT")


def test_png_with_a_bad_crc_in_the_header():
    data = bytearray(corpus.encode(corpus.sample_image(), "PNG"))
    data[29] ^= 0xFF  # the IHDR chunk's CRC (8 signature + 4 length + 4 type + 13 data)
    expect_error(bytes(data), "damaged.png", "CRC", "IHDR")


def test_decompression_bomb_header_is_refused_without_allocating():
    data = corpus.bomb_png(40000, 40000)
    assert len(data) < 200
    assert struct.unpack(">II", data[16:24]) == (40000, 40000)  # the header really claims it
    message = expect_error(data, "bomb.png", "decompression bomb", "1600 megapixels", "64 megapixel")
    assert "178956970" not in message  # PIL's own limit is not ours


def test_image_just_over_our_pixel_limit_is_refused():
    # 10000 x 10000 = 100 MP: under PIL's own bomb error (179 MP), over ours (64 MP).
    expect_error(corpus.bomb_png(10000, 10000), "big.png", "10000x10000", "decompression bomb")


def test_pixel_limit_is_a_parameter():
    data = corpus.encode(Image.new("RGB", (20, 10)), "PNG")
    with pytest.raises(ImageError, match="megapixel limit"):
        load_image(data, name="a.png", max_pixels=100)
    assert load_image(data, name="a.png", max_pixels=200).size == (20, 10)


def test_png_named_jpg_is_refused():
    expect_error(corpus.encode(corpus.sample_image(), "PNG"), "photo.jpg", ".jpg", "content is PNG", "rename")


def test_jpeg_named_png_is_refused():
    expect_error(corpus.encode(corpus.sample_image(), "JPEG"), "photo.png", ".png", "content is JPEG")


def test_unknown_extension_is_judged_by_content():
    assert load_image(corpus.encode(corpus.sample_image(), "PNG"), name="upload.bin").size == (64, 48)


def test_non_image_binary():
    rng = random.Random(1)
    expect_error(b"\x00\x01" + bytes(rng.randrange(256) for _ in range(500)), "data.bin", "not an image", "binary")


def test_checkpoint_uploaded_as_image():
    expect_error(b"PK\x03\x04" + bytes(100), "model.jpg", "not an image", "zip")


def test_html_page():
    expect_error(b"<!DOCTYPE html><html><body>hi</body></html>", "page.jpg", "not an image", "HTML")


def test_svg_drawing():
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>'
    expect_error(svg, "drawing.png", "not an image", "SVG")


def test_each_bad_kind_gets_its_own_message():
    cases = {
        "empty.jpg": b"",
        "notes.jpg": b"plain text",
        "cut.jpg": corpus.truncated_jpeg(),
        "crc.png": corpus.bad_crc_png(),
        "bomb.png": corpus.bomb_png(),
        "mismatch.jpg": corpus.encode(corpus.sample_image(), "PNG"),
        "page.jpg": b"<html><body></body></html>",
        "drawing.jpg": b"<svg></svg>",
        "data.jpg": b"\x00\x01\x02\xff" * 50,
    }
    reasons = set()
    for name, data in cases.items():
        with pytest.raises(ImageError) as caught:
            load_image(data, name=name)
        reasons.add(str(caught.value).removeprefix(name))
    assert len(reasons) == len(cases)


def test_oversized_upload_is_refused_before_decoding(monkeypatch):
    import backbones.inference.images as images

    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 1000)
    expect_error(bytes(2000), "huge.jpg", "larger than", "limit")


# ----------------------------------------------------------------------------- corpus and fuzz


def test_corpus_images_through_the_library(tmp_path):
    items = corpus.build_corpus(tmp_path, kinds={"image"}, large=False)
    assert len(items) >= 15
    for item in items.values():
        if item.ok:
            img, info = load_image_with_info(item.path)
            assert img.mode == "RGB", item.name
            assert img.size == tuple(item.details["size"]), item.name
            if "pixel_0_0" in item.details:
                assert close(rgb_at(img, 0, 0), item.details["pixel_0_0"], tol=8), item.name
        else:
            with pytest.raises(ImageError) as caught:
                load_image(item.path)
            assert item.matches(str(caught.value)), (item.name, str(caught.value))


def _mutants(seed: int, count: int):
    rng = random.Random(seed)
    base = corpus.sample_image(40, 30)
    originals = {
        "jpg": corpus.encode(base, "JPEG", quality=85),
        "png": corpus.encode(base, "PNG"),
        "gif": corpus.animated_gif(),
        "webp": corpus.encode(base, "WEBP", quality=80),
        "tif": corpus.encode(base, "TIFF"),
        "bmp": corpus.encode(base, "BMP"),
    }
    for i in range(count):
        ext = rng.choice(sorted(originals))
        data = bytearray(originals[ext])
        how = rng.choice(("truncate", "flip", "flip", "splice", "zero_run"))
        if how == "truncate":
            data = data[: rng.randrange(1, len(data))]
        elif how == "flip":
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif how == "splice":
            a = rng.randrange(len(data))
            data[a:a] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        else:
            a = rng.randrange(len(data))
            data[a : a + rng.randint(1, 32)] = bytes(rng.randint(1, 32))
        yield f"mutant{i}_{how}.{ext}", bytes(data)


def test_fuzzed_files_give_an_image_or_an_image_error():
    outcomes = {"ok": 0, "error": 0}
    for name, data in _mutants(seed=2024, count=240):
        try:
            img = load_image(data, name=name)
        except ImageError as exc:
            message = str(exc)
            assert message and "\n" not in message, name
            outcomes["error"] += 1
        else:
            assert img.mode == "RGB" and img.width > 0 and img.height > 0, name
            outcomes["ok"] += 1
    # Both branches were exercised (a mutator that never breaks anything tests nothing).
    assert outcomes["ok"] > 10 and outcomes["error"] > 10, outcomes


@pytest.mark.parametrize("fmt, ext", [("JPEG", "jpg"), ("PNG", "png"), ("GIF", "gif"), ("WEBP", "webp"), ("TIFF", "tif")])
def test_a_cut_file_is_refused_unless_every_pixel_survived(fmt, ext):
    # An animated GIF cut after its first frame made PIL raise IndexError while counting
    # frames; a cut TIFF, TypeError. Sweep ~100 cut points per format: each is an
    # ImageError, or (a PNG missing only its end chunk) exactly the full picture.
    data = corpus.animated_gif() if fmt == "GIF" else corpus.encode(corpus.sample_image(40, 30), fmt)
    full = np.asarray(load_image(data, name=f"full.{ext}"))
    refused = 0
    for cut in range(1, len(data), max(1, len(data) // 100)):
        try:
            img = load_image(data[:cut], name=f"cut.{ext}")
        except ImageError:
            refused += 1
        else:
            assert np.array_equal(np.asarray(img), full), f"{fmt} cut at {cut} of {len(data)} gave partial pixels"
    assert refused >= 80


def test_decoded_image_cache_stays_within_its_byte_bound():
    import io as _io

    from PIL import Image as _Image

    from backbones.inference.images import PREVIEW_MAX_SIDE, DecodedImageCache

    cache = DecodedImageCache(max_bytes=10 * 1000 * 1000)  # two 2048x683 previews (4.2 MB each)
    for i in range(6):
        buf = _io.BytesIO()
        _Image.new("RGB", (3000, 1000), (i, 0, 0)).save(buf, format="PNG")
        image, info = cache.get(buf.getvalue(), f"big{i}.png")
        assert max(image.size) <= PREVIEW_MAX_SIDE and (info.width, info.height) == (3000, 1000)
        assert cache.nbytes <= cache.max_bytes
    assert len(cache) == 2  # the oldest were evicted
