"""What to predict: the images a ``--images PATH`` names, in the order the output lists them.

Three layouts:

* a **folder**: every image under it, recursively, in sorted order; each row is named by its path relative to
  the folder;
* a **list**: one image file, a CSV with a ``path`` column, or a text file with one path per line; paths are
  relative to the list's folder (as ``data.source: csv`` reads them); each row is named by the path as written;
* the mask competition's **eval layout**: ``info.csv`` (columns ``ImageID,ans``) beside an ``images/`` folder,
  given as that ``info.csv`` or the folder holding it; rows keep info.csv's order, and the output is
  ``ImageID,ans``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..data.images import IMAGE_EXTENSIONS
from ..errors import DataError

__all__ = ["Inputs", "read_inputs", "EVAL_INFO"]

EVAL_INFO = "info.csv"
_HELP = ("a folder of images, a CSV with a 'path' column or a text list of paths, "
         f"or an eval folder ({EVAL_INFO} + images/)")


@dataclass(frozen=True)
class Inputs:
    paths: list[Path]     # the image files, in output order
    ids: list[str]        # each row's name in the output
    layout: str           # "folder" | "list" | "mask-eval"

    @property
    def id_column(self) -> str:
        return "ImageID" if self.layout == "mask-eval" else "image"

    def __len__(self) -> int:
        return len(self.paths)


def read_inputs(path: str | Path) -> Inputs:
    """The images ``path`` names (see the module docstring). Raises DataError naming the file, row or column
    when the layout is broken or an image it lists does not exist; nothing is decoded here."""
    p = Path(path)
    if p.is_dir():
        return _eval_layout(p / EVAL_INFO) if (p / EVAL_INFO).is_file() else _folder(p)
    if not p.is_file():
        raise DataError(f"--images {p}: no such file or folder; give {_HELP}")
    if p.name == EVAL_INFO:
        return _eval_layout(p)
    if p.suffix.lower() in IMAGE_EXTENSIONS:  # one image
        return Inputs([p], [p.name], "list")
    return _csv_list(p) if p.suffix.lower() == ".csv" else _text_list(p)


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _folder(root: Path) -> Inputs:
    files = sorted((p for p in root.rglob("*") if _is_image(p)), key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise DataError(f"--images {root}: no images under this folder ({', '.join(IMAGE_EXTENSIONS)}); "
                        f"give {_HELP}")
    return Inputs(files, [f.relative_to(root).as_posix() for f in files], "folder")


def _read_csv(f: Path) -> tuple[list[str], list[dict[str, str]]]:
    with f.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _existing(f: Path, rows: list[tuple[int, str]], root: Path) -> list[Path]:
    """The listed images (``rows``: (line number, path as written)), each checked to exist."""
    out = []
    for line, rel in rows:
        img = root / rel
        if not img.is_file():
            raise DataError(f"{f}: row {line}: image '{img}' does not exist; fix the path or remove the row "
                            "(a submission needs every row)")
        out.append(img)
    return out


def _column(f: Path, rows: list[dict], column: str) -> list[str]:
    """Each row's value in ``column``; a row too short to have one (csv leaves it None) names its line."""
    values = []
    for i, r in enumerate(rows):
        v = (r.get(column) or "").strip()
        if not v:
            raise DataError(f"{f}: row {i + 2} has no {column}; give every row one, or remove the row")
        values.append(v)
    return values


def _eval_layout(info: Path) -> Inputs:
    header, rows = _read_csv(info)
    if "ImageID" not in header:
        raise DataError(f"{info}: no 'ImageID' column (the header has {', '.join(header) or 'nothing'}); the mask "
                        "eval layout's info.csv has columns ImageID,ans, with the images in images/ beside it")
    if not rows:
        raise DataError(f"{info}: no rows; list one ImageID per test image")
    ids = _column(info, rows, "ImageID")
    paths = _existing(info, [(i + 2, v) for i, v in enumerate(ids)], info.parent / "images")
    return Inputs(paths, ids, "mask-eval")


def _csv_list(f: Path) -> Inputs:
    header, rows = _read_csv(f)
    column = "path" if "path" in header else header[0] if len(header) == 1 else None
    if column is None:
        raise DataError(f"{f}: no 'path' column (the header has {', '.join(header) or 'nothing'}); name the column "
                        "of image paths 'path'")
    if not rows:
        raise DataError(f"{f}: no rows; list one image path per row")
    ids = _column(f, rows, column)
    return Inputs(_existing(f, [(i + 2, v) for i, v in enumerate(ids)], f.parent), ids, "list")


def _text_list(f: Path) -> Inputs:
    try:
        lines = f.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"--images {f}: not a text list of paths (it is not UTF-8 text); give {_HELP}") from None
    rows = [(i + 1, ln.strip()) for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")]
    if rows and rows[0][1] == "path":  # a one-column CSV's header
        rows = rows[1:]
    if not rows:
        raise DataError(f"{f}: no image paths; list one path per line")
    return Inputs(_existing(f, rows, f.parent), [r for _, r in rows], "list")
