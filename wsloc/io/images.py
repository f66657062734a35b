"""Robust image loading.

:func:`load_image` turns any image file Pillow can read into one uniform array:
``numpy.ndarray`` of shape ``(H, W, 3)``, dtype ``uint8``, RGB channel order, values
0..255, C-contiguous, with the EXIF orientation already applied (so ``H, W`` are the
size of the image *as displayed*).

Conversions (every one documented in :func:`load_image`):

* gray (``L``), 1-bit (``1``): the gray value is copied into R, G and B;
* alpha (``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La``, palette or gray/RGB with a
  ``transparency`` entry): composited onto a **white** background;
* palette (``P``): expanded through the palette;
* 16-bit integer (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``) and 32-bit integer
  (``I``, assumed to hold 16-bit data): ``round(value / 257)``, so 0 -> 0, 65535 -> 255
  (values of ``I`` outside 0..65535 are clipped first);
* float (``F``): see :func:`_float_to_uint8`;
* ``CMYK`` (including Adobe/Photoshop inverted CMYK JPEGs, which Pillow un-inverts
  while decoding), ``YCbCr``, ``LAB``, ``HSV``: Pillow's conversion to RGB.
  Embedded ICC profiles are ignored.

Every failure is an :class:`wsloc.errors.ImageLoadError` whose message is
``"<path>: <reason>"``; the reasons contain the words ``not found``, ``directory``,
``empty``, ``truncated``, ``not an image``, ``too large``, ``zero-size`` or
``unsupported`` so that batch runs can log and classify them.
"""

from __future__ import annotations

import os
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from wsloc.errors import ImageLoadError

__all__ = ["load_image", "image_size", "DEFAULT_MAX_PIXELS"]

#: Default pixel limit of :func:`load_image`; the same number as Pillow's
#: decompression-bomb error threshold (2 * ``Image.MAX_IMAGE_PIXELS`` by default).
DEFAULT_MAX_PIXELS = 178_956_970

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_INT16_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def _check_file(path: str) -> None:
    """Raise ImageLoadError for paths that cannot be an image file at all."""
    if not os.path.exists(path):
        raise ImageLoadError(path, "file not found")
    if os.path.isdir(path):
        raise ImageLoadError(path, "is a directory, not an image file")
    try:
        size = os.path.getsize(path)
    except OSError as exc:  # pragma: no cover - race / permission
        raise ImageLoadError(path, f"cannot read file: {exc}") from exc
    if size == 0:
        raise ImageLoadError(path, "empty file (0 bytes)")


def _sniff_zero_size(path: str) -> tuple[int, int] | None:
    """Read PNG/BMP headers by hand to recognise images declaring a 0 dimension.

    Pillow refuses such files with a generic "cannot identify" error; this lets the
    message say what is actually wrong. Returns ``(width, height)`` if the header is
    recognised and one dimension is 0, else None.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        w, h = struct.unpack(">II", head[16:24])
    elif head[:2] == b"BM" and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        h = abs(h)
    else:
        return None
    if w == 0 or h == 0:
        return (w, h)
    return None


def _open(path: str) -> Image.Image:
    """Image.open with every header-level failure mapped to ImageLoadError."""
    _check_file(path)
    try:
        with warnings.catch_warnings():
            # Our own pixel limit is checked by the callers; Pillow's warning is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(path, f"image too large ({exc})") from exc
    except UnidentifiedImageError as exc:
        zero = _sniff_zero_size(path)
        if zero is not None:
            raise ImageLoadError(path, f"zero-size image ({zero[0]}x{zero[1]})") from exc
        raise ImageLoadError(path, "not an image (format not recognised)") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ImageLoadError(path, f"not an image or header truncated ({exc})") from exc


def _exif_orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # broken EXIF must not make an image unreadable
        return 1


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Return ``(width, height)`` of an image as displayed, reading only its header.

    The pixel data is not decoded, so a file with a valid header but truncated data
    still gets a size here (and fails later in :func:`load_image`). The EXIF
    orientation is honoured: for orientations 5-8 (transposed / rotated by 90 degrees)
    width and height are swapped, matching the array :func:`load_image` returns.

    Raises:
        ImageLoadError: missing file, directory, empty file, not an image, zero-size
            image, or an image beyond Pillow's decompression-bomb limit.
    """
    path = os.fspath(path)
    im = _open(path)
    try:
        w, h = im.size
        if w <= 0 or h <= 0:
            raise ImageLoadError(path, f"zero-size image ({w}x{h})")
        if _exif_orientation(im) in (5, 6, 7, 8):
            w, h = h, w
        return int(w), int(h)
    finally:
        im.close()


def _float_to_uint8(a: np.ndarray) -> np.ndarray:
    """Map a float (mode ``F``) image to uint8.

    Rule: non-finite values become 0. If all values lie in [0, 1] the image is taken as
    normalised intensities and multiplied by 255; else if they lie in [0, 255] they are
    used as they are; otherwise the range [min, max] is stretched linearly to [0, 255].
    The result is rounded to nearest.
    """
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo >= 0.0 and hi <= 1.0:
        a = a * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        pass
    elif hi > lo:
        a = (a - lo) * (255.0 / (hi - lo))
    else:
        a = np.zeros_like(a)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _int16_to_uint8(a: np.ndarray) -> np.ndarray:
    """``round(v / 257)`` for v in 0..65535 (exact integer arithmetic; never a tie)."""
    v = np.clip(a.astype(np.int64), 0, 65535)
    return ((v + 128) // 257).astype(np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """``out = round(rgb * a/255 + 255 * (1 - a/255))`` per channel, uint8 HxWx3."""
    rgb = rgba[..., :3].astype(np.float64)
    alpha = rgba[..., 3:4].astype(np.float64) / 255.0
    out = rgb * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _to_rgb_array(im: Image.Image, path: str) -> np.ndarray:
    mode = im.mode
    if mode in _INT16_MODES or mode == "I":
        g = _int16_to_uint8(np.asarray(im))
        return np.repeat(g[..., None], 3, axis=2)
    if mode == "F":
        g = _float_to_uint8(np.asarray(im))
        return np.repeat(g[..., None], 3, axis=2)
    has_alpha = mode in _ALPHA_MODES or (
        "transparency" in im.info and mode in ("P", "L", "RGB", "1")
    )
    with warnings.catch_warnings():
        # "Palette images with Transparency expressed in bytes should be converted to RGBA"
        warnings.simplefilter("ignore", UserWarning)
        if has_alpha:
            return _composite_on_white(np.asarray(im.convert("RGBA")))
        if mode == "RGB":
            return np.asarray(im)
        if mode == "L":
            g = np.asarray(im)
            return np.repeat(g[..., None], 3, axis=2)
        try:
            return np.asarray(im.convert("RGB"))
        except (ValueError, OSError) as exc:
            raise ImageLoadError(path, f"unsupported image mode {mode!r} ({exc})") from exc


def load_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Load an image file as an RGB array.

    Args:
        path: image file (any format Pillow reads: JPEG, PNG, BMP, GIF, TIFF, WebP...).
            For multi-frame files (GIF, TIFF) the first frame is used.
        max_pixels: refuse images with more than this many pixels (``width * height``)
            before decoding them. ``None`` disables this check; Pillow's own
            decompression-bomb error (at ``2 * Image.MAX_IMAGE_PIXELS``) still applies.

    Returns:
        ``np.ndarray`` of shape ``(H, W, 3)``, dtype ``uint8``, RGB order, values
        0..255, C-contiguous, writeable (a fresh array). EXIF orientation is applied
        (``ImageOps.exif_transpose``), so ``H, W`` are the displayed size. Alpha is
        composited onto white: ``round(c * a/255 + 255 * (1 - a/255))``. 16-bit data
        is scaled by ``round(v / 257)`` (not clipped); see the module docstring for
        the other modes.

    Raises:
        ImageLoadError: the file is missing, a directory, empty (0 bytes), not an
            image, truncated or corrupt (the pixel data is fully decoded to detect
            this; ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left untouched), larger than
            ``max_pixels``, has a zero width/height, or has an unsupported mode.
            The message names the file.
    """
    path = os.fspath(path)
    im = _open(path)
    try:
        w, h = im.size
        if w <= 0 or h <= 0:
            raise ImageLoadError(path, f"zero-size image ({w}x{h})")
        if max_pixels is not None and w * h > max_pixels:
            raise ImageLoadError(
                path, f"image too large ({w}x{h} = {w * h} pixels > limit {max_pixels})"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
        except Image.DecompressionBombError as exc:
            raise ImageLoadError(path, f"image too large ({exc})") from exc
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:
            msg = str(exc)
            raise ImageLoadError(path, f"truncated or corrupt image data ({msg})") from exc
        try:
            oriented = ImageOps.exif_transpose(im)
        except Exception:  # broken EXIF: keep the stored orientation
            oriented = im
        if oriented is None:  # pragma: no cover - only with in_place=True
            oriented = im
        arr = _to_rgb_array(oriented, path)
    finally:
        im.close()
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:  # pragma: no cover
        raise ImageLoadError(path, f"unsupported image layout {arr.shape} {arr.dtype}")
    return np.array(arr, dtype=np.uint8, order="C", copy=True)
