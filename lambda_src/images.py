"""Image bytes to an upright RGB picture: JPEG, PNG and WebP only, within a pixel budget.

The decode phase of the input verb (`ModelInput`: the API, batch jobs and training's
validation); the API times it apart from parsing the request, as `DecodeLatency`.
Only the three accepted formats' decoders see the bytes (other well-known formats are
named from their signature for the 415), and the size is checked from the header before
any pixel is decoded: over `max_pixels`, or too elongated to resize within it, the image
is refused, so a decompression bomb costs nothing. JPEGs larger than the model needs are
decoded at a reduced scale. Every failure is an `ApiError` (4xx) whose message names the
image; training turns it into its own error for the file.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

from lambda_src.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")
# Pillow reports multi-picture JPEGs (what many phone cameras write) as MPO.
_DECODED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP"}
_JPEG_FORMATS = {"JPEG", "MPO"}
# A JPEG decoded at reduced scale (1/2, 1/4, 1/8) has its pixel blocks averaged in the DCT domain.
# Resized to the model's size, it matches a full decode (served top-5 scores within 2e-3 of the
# source library's pipeline, measured for crops 128-288 and every filter) when it keeps at least
# twice the resize size and is not the 1/8 scale, where only each 8x8 block's mean survives.
REDUCED_DECODE_MARGIN = 2
MAX_DECODE_REDUCTION = 4

# Signatures of common image formats the API refuses, to answer 415 rather than "not an image".
_OTHER_SIGNATURES = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"%PDF", "PDF"),
)
_ISO_MEDIA_BRANDS = {b"avif": "AVIF", b"avis": "AVIF", b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF"}


def decode_image(
    data: bytes, *, max_pixels: int, min_side: int, what: str = "the image", reduce: bool = True
) -> Image.Image:
    """Decode `data` into an upright RGB image, to be resized to a shorter side of `min_side`.

    `what` names the image in error messages ("image 2"). With `reduce`, JPEGs much larger
    than needed are decoded at 1/2 or 1/4 scale (see `reduced_decode_size`), which is much
    faster for camera photos; without it (nearest-neighbour resizing picks single pixels,
    which a reduced decode has averaged away) every pixel is decoded.
    """
    if not data:
        raise BadRequest(f"{what} is empty")
    image = open_image(data, what, max_pixels=max_pixels)
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"{what} is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}"
        )
    _check_resized_size(width, height, min_side=min_side, max_pixels=max_pixels, what=what)
    try:
        if reduce and image.format in _JPEG_FORMATS:
            image.draft("RGB", reduced_decode_size(image.size, min_side))
        image.load()
        return to_rgb(image)
    except Image.DecompressionBombError:
        raise _bomb(what, max_pixels) from None
    except Exception as error:  # Pillow raises many types for broken data; all mean "corrupt"
        raise BadRequest(
            f"{what} is a corrupt or truncated {_format_name(image)} image ({_reason(error)})"
        ) from None


def reduced_decode_size(size: tuple[int, int], min_side: int) -> tuple[int, int]:
    """The size to ask Pillow's JPEG `draft` for, for an image of `size` resized to `min_side`.

    Pillow picks the largest reduction (1/2, 1/4, 1/8) that keeps both sides at least the
    size asked for: at least REDUCED_DECODE_MARGIN times `min_side`, and just over a
    MAX_DECODE_REDUCTION-th of the image's own sides so that 1/8 is never picked.
    """
    floor = REDUCED_DECODE_MARGIN * min_side
    next_reduction = 2 * MAX_DECODE_REDUCTION  # what a side of at most 1/next_reduction would allow
    return (
        max(floor, size[0] // next_reduction + 1),
        max(floor, size[1] // next_reduction + 1),
    )


def _check_resized_size(width: int, height: int, *, min_side: int, max_pixels: int, what: str) -> None:
    """Refuse strips like 1x40,000,000: resizing their shorter side to `min_side` would explode."""
    shorter, longer = sorted((max(width, 1), max(height, 1)))
    resized_pixels = min_side * min_side * longer // shorter
    if resized_pixels > max_pixels:
        raise BadRequest(
            f"{what} is {width}x{height}, too elongated to classify: scaled to a shorter side of "
            f"{min_side} pixels it would have {resized_pixels:,} pixels (the limit is {max_pixels:,})"
        )


def _bomb(what: str, max_pixels: int | None) -> PayloadTooLarge:
    """Pillow's refusal of a huge image, before its size is known, told with the limit that applies."""
    # Pillow refuses past twice its MAX_IMAGE_PIXELS (only when that is set); a configured limit
    # above that cannot be reached, so the lower of the two is the one in force.
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    if max_pixels is not None:
        limit = min(limit, max_pixels)
    return PayloadTooLarge(f"{what} is larger than the limit of {limit:,} pixels")


def open_image(data: bytes, what: str = "the image", *, max_pixels: int | None = None) -> Image.Image:
    """Identify an accepted format from the header (no pixel data is decoded yet); 4xx ApiError if not.

    `max_pixels` is the caller's pixel limit, quoted when Pillow refuses a decompression bomb.
    """
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError:
        raise _bomb(what, max_pixels) from None
    except UnidentifiedImageError:
        other = sniff_other_format(data)
        if other is not None:
            raise UnsupportedMediaType(f"{what} is a {other} image; send JPEG, PNG or WebP") from None
        raise BadRequest(f"{what} is not a JPEG, PNG or WebP image") from None
    except Exception as error:  # a recognised signature whose header is broken
        raise BadRequest(f"{what} is a corrupt or truncated image ({_reason(error)})") from None
    if image.format not in _DECODED_FORMATS:
        raise UnsupportedMediaType(f"{what} is a {image.format} image; send JPEG, PNG or WebP")
    return image


def sniff_other_format(data: bytes) -> str | None:
    """The name of a well-known image format the API does not accept, if `data` starts like one."""
    for signature, name in _OTHER_SIGNATURES:
        if data.startswith(signature):
            return name
    if data[4:8] == b"ftyp":
        return _ISO_MEDIA_BRANDS.get(data[8:12])
    return None


def _reason(error: Exception) -> str:
    """Pillow's explanation, kept short for a client message."""
    text = str(error).strip() or type(error).__name__
    return text[:200]


def _format_name(image: Image.Image) -> str:
    return "JPEG" if image.format in _JPEG_FORMATS else ("WebP" if image.format == "WEBP" else "PNG")


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright RGB: apply EXIF orientation, composite alpha on white, convert L/P/CMYK/I."""
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16"):
        # 16-bit greyscale (PNG): scale to 8 bits; a plain convert clips everything above 255 to white.
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode != "RGB":
        return image.convert("RGB")
    return image
