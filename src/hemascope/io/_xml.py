"""Parsing XML annotation files with one error style."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from hemascope.errors import AnnotationError


def parse_xml_root(source: str | Path, *, where: str | Path, expected: str, what: str) -> ET.Element:
    """Root element of an XML file, which must be ``<expected>``.

    The standard-library expat parser is used: it does not resolve external entities and
    bounds entity expansion, which is what matters for untrusted annotation files.

    Raises:
        AnnotationError: unreadable file, malformed XML, or a different root element.
    """
    try:
        root = ET.parse(source).getroot()
    except ET.ParseError as e:
        raise AnnotationError(where, f"malformed XML ({e})") from None
    except OSError as e:
        raise AnnotationError(where, f"cannot read file ({e.strerror or e})") from None
    if root.tag != expected:
        raise AnnotationError(where, f"not {what}: root element is <{root.tag}>, "
                                     f"expected <{expected}>")
    return root
