"""Tests of wsloc.io.images: every image kind loads to the same RGB array; errors name the file."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from wsloc.errors import ImageLoadError
from wsloc.io import image_size, load_image

H, W = 12, 16


def _rgb() -> np.ndarray:
    """A small synthetic RGB image with structure (gradients + a block), not symmetric."""
    y, x = np.mgrid[0:H, 0:W]
    a = np.zeros((H, W, 3), np.uint8)
    a[..., 0] = (x * 255 // (W - 1)).astype(np.uint8)
    a[..., 1] = (y * 255 // (H - 1)).astype(np.uint8)
    a[..., 2] = ((x + 2 * y) * 7 % 256).astype(np.uint8)
    a[2:5, 3:9] = (250, 10, 40)
    return a


def _gray() -> np.ndarray:
    return _rgb()[..., 1].copy()


def _as3(g: np.ndarray) -> np.ndarray:
    return np.stack([g, g, g], axis=2)


def _check_array(a: np.ndarray, shape) -> None:
    assert isinstance(a, np.ndarray)
    assert a.dtype == np.uint8
    assert a.shape == shape
    assert a.flags["C_CONTIGUOUS"]


# ----------------------------------------------------------------- lossless formats

@pytest.mark.parametrize("ext", ["png", "bmp", "tiff", "webp"])
def test_rgb_lossless_formats_exact(tmp_path, ext):
    a = _rgb()
    p = tmp_path / f"img.{ext}"
    kw = {"lossless": True} if ext == "webp" else {}
    Image.fromarray(a).save(p, **kw)
    out = load_image(p)
    _check_array(out, (H, W, 3))
    np.testing.assert_array_equal(out, a)
    assert image_size(p) == (W, H)


def test_rgb_jpeg_close(tmp_path):
    a = _rgb()
    p = tmp_path / "img.jpg"
    Image.fromarray(a).save(p, quality=100, subsampling=0)
    out = load_image(p)
    _check_array(out, (H, W, 3))
    assert np.abs(out.astype(int) - a).mean() < 3


def test_gray_png_expands_to_three_equal_channels(tmp_path):
    g = _gray()
    p = tmp_path / "g.png"
    Image.fromarray(g).save(p)
    assert Image.open(p).mode == "L"
    out = load_image(p)
    _check_array(out, (H, W, 3))
    np.testing.assert_array_equal(out, _as3(g))


def test_one_bit_png(tmp_path):
    b = _gray() > 128
    p = tmp_path / "b.png"
    Image.fromarray(b).convert("1").save(p)
    assert Image.open(p).mode == "1"
    out = load_image(p)
    np.testing.assert_array_equal(out, _as3(np.where(b, 255, 0).astype(np.uint8)))


def test_palette_gif_without_transparency(tmp_path):
    # 4 distinct colours so that the palette holds them exactly.
    a = np.zeros((H, W, 3), np.uint8)
    a[:, W // 2 :] = (255, 0, 0)
    a[H // 2 :, :] = (0, 0, 255)
    a[H // 2 :, W // 2 :] = (10, 200, 30)
    p = tmp_path / "p.gif"
    Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(p)
    assert Image.open(p).mode == "P"
    np.testing.assert_array_equal(load_image(p), a)


def test_palette_png_with_transparency_composited_on_white(tmp_path):
    idx = np.zeros((H, W), np.uint8)
    idx[:, W // 2 :] = 1
    idx[0, 0] = 2
    im = Image.fromarray(idx, mode="L").convert("P")
    im.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0] + [0] * (256 * 3 - 9))
    p = tmp_path / "pt.png"
    im.save(p, transparency=1)  # index 1 (blue) fully transparent
    re = Image.open(p)
    assert re.mode == "P" and "transparency" in re.info
    out = load_image(p)
    exp = np.zeros((H, W, 3), np.uint8)
    exp[:, : W // 2] = (255, 0, 0)
    exp[:, W // 2 :] = (255, 255, 255)  # transparent -> white, not blue
    exp[0, 0] = (0, 255, 0)
    np.testing.assert_array_equal(out, exp)


def test_rgba_alpha_composited_on_white(tmp_path):
    a = np.zeros((2, 3, 4), np.uint8)
    a[0, 0] = (100, 0, 200, 255)  # opaque: unchanged
    a[0, 1] = (100, 0, 200, 0)  # transparent: white
    a[0, 2] = (100, 0, 200, 128)  # half: 100*128/255 + 255*127/255 = 177.2 ...
    a[1, :] = (0, 0, 0, 51)  # 255 * 204/255 = 204
    p = tmp_path / "rgba.png"
    Image.fromarray(a, mode="RGBA").save(p)
    out = load_image(p)
    exp = np.array(
        [[[100, 0, 200], [255, 255, 255], [177, 127, 227]], [[204, 204, 204]] * 3], np.uint8
    )
    np.testing.assert_array_equal(out, exp)


def test_la_alpha_composited_on_white(tmp_path):
    a = np.array([[[10, 255], [10, 0], [0, 102]]], np.uint8)  # 255*153/255 = 153
    p = tmp_path / "la.png"
    Image.fromarray(a, mode="LA").save(p)
    assert Image.open(p).mode == "LA"
    np.testing.assert_array_equal(load_image(p)[0], [[10] * 3, [255] * 3, [153] * 3])


# ----------------------------------------------------------------- high bit depth / float

_V16 = np.array([[0, 128, 129, 257, 32767, 32896, 65535, 1000]], np.uint16)
# round(v / 257): 128/257=0.498 -> 0, 129/257=0.502 -> 1, 32767/257=127.498 -> 127,
# 32896 = 128*257 -> 128, 1000/257 = 3.89 -> 4. Clipping would give 255 for most.
_E16 = np.array([[0, 0, 1, 1, 127, 128, 255, 4]], np.uint8)


def test_16bit_png_scaled_by_257_with_rounding(tmp_path):
    p = tmp_path / "g16.png"
    Image.fromarray(_V16).save(p)
    assert Image.open(p).mode.startswith("I")
    out = load_image(p)
    _check_array(out, (1, 8, 3))
    np.testing.assert_array_equal(out, _as3(_E16))


def test_16bit_big_endian_tiff(tmp_path):
    p = tmp_path / "g16b.tif"
    Image.frombytes("I;16B", (8, 1), _V16.astype(">u2").tobytes()).save(p)
    assert Image.open(p).mode == "I;16B"
    np.testing.assert_array_equal(load_image(p), _as3(_E16))


def test_mode_I_tiff_treated_as_16bit(tmp_path):
    p = tmp_path / "i32.tif"
    Image.fromarray(_V16.astype(np.int32)).save(p)
    assert Image.open(p).mode == "I"
    np.testing.assert_array_equal(load_image(p), _as3(_E16))


def test_float_tiff_unit_range(tmp_path):
    p = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.0, 0.25, 1.0, 0.5019608]], np.float32)).save(p)
    assert Image.open(p).mode == "F"
    np.testing.assert_array_equal(load_image(p), _as3(np.array([[0, 64, 255, 128]], np.uint8)))


# ----------------------------------------------------------------- CMYK

def test_cmyk_jpeg_adobe_inverted(tmp_path):
    a = _rgb()
    p = tmp_path / "cmyk.jpg"
    Image.fromarray(a).convert("CMYK").save(p, quality=100)
    # Pillow writes CMYK JPEGs Photoshop-style: inverted, with an Adobe APP14 marker.
    assert b"Adobe" in p.read_bytes()
    assert Image.open(p).mode == "CMYK"
    out = load_image(p)
    _check_array(out, (H, W, 3))
    assert np.abs(out.astype(int) - a).mean() < 4
    # The inversion must be undone: a naive reading would give ~255 - a.
    assert np.abs(out.astype(int) - (255 - a.astype(int))).mean() > 60


def test_cmyk_tiff_exact(tmp_path):
    a = _rgb()
    p = tmp_path / "cmyk.tif"
    Image.fromarray(a).convert("CMYK").save(p)
    assert Image.open(p).mode == "CMYK"
    np.testing.assert_array_equal(load_image(p), a)


# ----------------------------------------------------------------- EXIF orientation

def _exif(orientation: int) -> Image.Exif:
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex


@pytest.mark.parametrize(
    "orientation,expected",
    [
        (1, lambda a: a),
        (3, lambda a: a[::-1, ::-1]),
        (6, lambda a: np.rot90(a, k=-1)),  # rotate 90 deg clockwise to display
        (8, lambda a: np.rot90(a, k=1)),  # rotate 90 deg counter-clockwise
        (2, lambda a: a[:, ::-1]),
    ],
)
def test_exif_orientation_png_exact(tmp_path, orientation, expected):
    a = _rgb()
    p = tmp_path / f"o{orientation}.png"
    Image.fromarray(a).save(p, exif=_exif(orientation))
    assert Image.open(p).getexif().get(0x0112) == orientation
    out = load_image(p)
    exp = expected(a)
    assert out.shape == exp.shape
    np.testing.assert_array_equal(out, exp)
    assert out.flags["C_CONTIGUOUS"]
    assert image_size(p) == (exp.shape[1], exp.shape[0])


def test_exif_orientation_jpeg(tmp_path):
    a = _rgb()
    p = tmp_path / "o6.jpg"
    Image.fromarray(a).save(p, quality=100, subsampling=0, exif=_exif(6))
    out = load_image(p)
    assert out.shape == (W, H, 3)
    exp = np.rot90(a, k=-1)
    assert np.abs(out.astype(int) - exp).mean() < 3
    # and clearly not the unrotated-then-cropped / counter-rotated image
    assert np.abs(out.astype(int) - np.rot90(a, k=1)).mean() > 20
    assert image_size(p) == (H, W)


# ----------------------------------------------------------------- errors

def _png_header(w: int, h: int, idat: bytes = b"") -> bytes:
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(idat)) + chunk(b"IEND", b"")


def _noise_png_bytes(fmt: str = "PNG") -> bytes:
    a = np.random.RandomState(0).randint(0, 256, (64, 64, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, fmt)
    return buf.getvalue()


def _assert_error(path, word, **kw):
    with pytest.raises(ImageLoadError) as ei:
        load_image(path, **kw)
    msg = str(ei.value)
    assert os.path.basename(os.fspath(path)) in msg
    assert word in msg.lower()
    assert ei.value.path == os.fspath(path)
    return ei.value


def test_missing_file(tmp_path):
    _assert_error(tmp_path / "nope.jpg", "not found")
    with pytest.raises(ImageLoadError, match="not found"):
        image_size(tmp_path / "nope.jpg")


def test_directory(tmp_path):
    d = tmp_path / "adir.png"
    d.mkdir()
    _assert_error(d, "directory")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    _assert_error(p, "empty")
    with pytest.raises(ImageLoadError, match="empty"):
        image_size(p)


def test_not_an_image(tmp_path):
    p = tmp_path / "text.jpg"
    p.write_text("this is not an image at all\n" * 10)
    _assert_error(p, "not an image")


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("JPEG", "jpg")])
def test_truncated(tmp_path, fmt, ext):
    data = _noise_png_bytes(fmt)
    p = tmp_path / f"trunc.{ext}"
    p.write_bytes(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    _assert_error(p, "truncated")
    # the header is intact: image_size still works, and nothing was changed globally
    assert image_size(p) == (64, 64)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_too_large_by_argument(tmp_path):
    p = tmp_path / "big.png"
    Image.fromarray(_rgb()).save(p)
    err = _assert_error(p, "too large", max_pixels=H * W - 1)
    assert "limit" in err.reason
    assert load_image(p, max_pixels=H * W).shape == (H, W, 3)


def test_too_large_decompression_bomb_header(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header(20000, 20000))  # 4e8 pixels: beyond Pillow's bomb limit
    _assert_error(p, "too large")
    p2 = tmp_path / "bomb2.png"
    p2.write_bytes(_png_header(12000, 12000))  # 1.44e8: under Pillow's error, over 1e8
    _assert_error(p2, "too large", max_pixels=100_000_000)


def test_zero_size(tmp_path):
    p = tmp_path / "zero.png"
    p.write_bytes(_png_header(0, 5))
    _assert_error(p, "zero-size")


def test_returns_fresh_writeable_array(tmp_path):
    p = tmp_path / "a.png"
    Image.fromarray(_rgb()).save(p)
    a = load_image(p)
    a[:] = 0  # must not raise (read-only view of Pillow memory would)
    assert load_image(p).any()
