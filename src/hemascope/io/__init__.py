"""File formats: images, masks and annotation files (readers and writers).

Heavy or optional dependencies are imported inside the functions that need them.
"""

from hemascope.io.annotations import DetectionSet, ImageAnnotation, Instance
from hemascope.io.image import IMAGE_SUFFIXES, ImageHeader, read_header, read_image, read_mask, write_image

__all__ = [
    "DetectionSet",
    "IMAGE_SUFFIXES",
    "ImageAnnotation",
    "ImageHeader",
    "Instance",
    "read_header",
    "read_image",
    "read_mask",
    "write_image",
]
