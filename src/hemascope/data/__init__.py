"""Data sets: single-cell class folders and label tables, splits, inspection.

Detection / instance formats live in :mod:`hemascope.io`; :func:`load_dataset` reads any
supported layout.
"""

from hemascope.data.formats import DETECTION_FORMATS, FORMATS, detect_format, load_dataset
from hemascope.data.samples import ClassificationSet, Sample

__all__ = ["ClassificationSet", "DETECTION_FORMATS", "FORMATS", "Sample", "detect_format",
           "load_dataset"]
