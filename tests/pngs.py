"""PNG checks for chart tests: the bytes are a PNG that PIL reads, and it shows something (not one colour)."""

from __future__ import annotations

import io
from pathlib import Path


def open_chart(data: bytes | Path):
    from PIL import Image

    raw = data.read_bytes() if isinstance(data, Path) else data
    img = Image.open(io.BytesIO(raw))
    img.load()
    assert img.format == "PNG", img.format
    rgb = img.convert("RGB")
    assert rgb.getcolors(maxcolors=4) is None, "the chart has at most 4 colours: blank, or nearly"
    return rgb
