"""Imaging: photographs and DICOM decoded safely into RGB pixels, within one budget of decoded bytes.

``components.imaging.load_rgb`` is a stable name for callers outside the project.
"""

from components.imaging.loading import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    MAX_WHOLE_DECODE_PIXELS,
    DecodedImage,
    ImageError,
    ImageSource,
    decode_image,
    encode_png,
    laterality_from_filename,
    load_rgb,
    sha256_bytes,
)

__all__ = ["IMAGE_EXTENSIONS", "MAX_PIXELS", "MAX_WHOLE_DECODE_PIXELS", "DecodedImage", "ImageError", "ImageSource",
           "decode_image", "encode_png", "laterality_from_filename", "load_rgb", "sha256_bytes"]
