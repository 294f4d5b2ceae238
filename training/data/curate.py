"""A data set as the user has curated it: ``data.exclude`` leaves images out, ``data.relabel`` fixes their labels.

Both name images by the paths the data set gives them (what split.json, `search audit`'s label_issues.csv and
errors.png show): a file of one path per line, or a CSV with a ``path`` column (an edited label_issues.csv works
as it is; relabel reads its ``label`` column, else ``suggested``; a multi-label row names its labels joined by
``;``, or ``(none)``). A path may also be written relative to the list's own folder. A path the data set does
not hold is an error, so a typo never silently keeps an image.
What was left out or relabeled is part of the decode cache's key and recorded in the run's split.json.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .samples import Samples

__all__ = ["curate", "read_paths", "read_relabels"]


NO_LABELS = "(none)"  # a multi-label image with no label on, as label_issues.csv writes it


def _rows(file: Path, option: str) -> tuple[list[str], list[dict]]:
    """A CSV's header and rows, or (for a plain list) no header and one row per non-empty line; each row keeps
    its line in the file (``_line``) for the messages."""
    if not file.is_file():
        raise DataError(f"{option}: file '{file}' does not exist; give a list of image paths (one per line) or a "
                        "CSV with a 'path' column, such as search audit's label_issues.csv")
    lines = file.read_text(encoding="utf-8-sig").splitlines()
    first = next(csv.reader(lines[:1]), [])
    if "path" in [c.strip() for c in first]:
        reader = csv.DictReader(lines)
        rows = []
        for r in reader:
            if (r.get("path") or "").strip():
                rows.append({**r, "_line": reader.line_num})
        return [c.strip() for c in reader.fieldnames or []], rows
    return [], [{"path": line.strip(), "_line": k} for k, line in enumerate(lines, start=1)
                if line.strip() and not line.lstrip().startswith("#")]


def _index(samples: Samples, file: Path, option: str, rows: list[dict]) -> list[int]:
    """The sample index of each row's path: as the data set names it, resolved, or relative to the list's
    folder."""
    by_name = {n: i for i, n in enumerate(samples.names)}
    by_file = {str(Path(n).resolve()): i for i, n in enumerate(samples.names) if not n.startswith("digits[")}
    out = []
    for r in rows:
        p = r["path"].strip()
        i = by_name.get(p)
        if i is None:
            i = by_file.get(str(Path(p).resolve()), by_file.get(str((file.parent / p).resolve())))
        if i is None:
            raise DataError(f"{option}: {file} line {r['_line']}: '{p}' is not an image of this data set; fix the "
                            f"path (as split.json names it, e.g. '{samples.names[0]}') or remove the line")
        out.append(i)
    return out


def read_paths(file: Path, samples: Samples) -> list[int]:
    _, rows = _rows(file, "data.exclude")
    return _index(samples, file, "data.exclude", rows)


def _names(samples: Samples, value: str) -> list[str]:
    if not samples.multilabel:
        return [value.strip()]
    if value.strip() in ("", NO_LABELS):
        return []
    return [v.strip() for v in value.split(";") if v.strip()]


def read_relabels(file: Path, samples: Samples) -> dict[int, object]:
    """Sample index -> its new target (a class index; for multi-label, 0/1 per label from ``a;b`` names, and
    ``(none)`` or an empty value for no label at all)."""
    header, rows = _rows(file, "data.relabel")
    column = "label" if "label" in header else "suggested" if "suggested" in header else None
    if column is None:
        raise DataError(f"data.relabel: {file} needs a CSV header with 'path' and 'label' columns (or an edited "
                        "label_issues.csv, whose 'suggested' column is read)")
    index = _index(samples, file, "data.relabel", rows)
    out = {}
    for i, r in zip(index, rows):
        names = _names(samples, r[column] or "")
        unknown = [v for v in names if v not in samples.classes]
        if unknown or (not samples.multilabel and not names[0]):
            also = f", or {NO_LABELS} for none" if samples.multilabel else ""
            raise DataError(f"data.relabel: {file} line {r['_line']}: {column} = {r[column]!r} is not a class of "
                            f"this data set ({', '.join(samples.classes)}{also}); fix the row")
        if samples.multilabel:
            out[i] = np.asarray([float(c in names) for c in samples.classes], np.float32)
        else:
            out[i] = samples.classes.index(names[0])
    return out


def curate(samples: Samples, exclude: Path | None, relabel: Path | None) -> Samples:
    """``samples`` less the excluded images, with the relabeled ones' new targets."""
    if exclude is None and relabel is None:
        return samples
    targets = samples.targets.copy()
    changed = read_relabels(Path(relabel), samples) if relabel is not None else {}
    for i, target in changed.items():
        targets[i] = target
    dropped = set(read_paths(Path(exclude), samples)) if exclude is not None else set()
    keep = np.asarray([i for i in range(len(samples)) if i not in dropped], np.int64)
    if len(keep) < 4:
        raise DataError(f"data.exclude: leaves {len(keep)} of {len(samples)} images; a train/val split needs at "
                        "least 4: exclude fewer")
    record = {"excluded": sorted(samples.names[i] for i in dropped),
              "relabeled": {samples.names[i]: _label(samples, t) for i, t in changed.items()}}
    digest = hashlib.sha256(repr(sorted(record.items())).encode()).hexdigest()[:16]
    load = samples.load
    return Samples(names=[samples.names[i] for i in keep], load=lambda j: load(int(keep[j])), targets=targets[keep],
                   classes=samples.classes, key=f"{samples.key}-curated-{digest}",
                   groups=samples.groups[keep] if samples.groups is not None else None,
                   multilabel=samples.multilabel, meta={**samples.meta, "curated": record})


def _label(samples: Samples, target) -> str:
    if samples.multilabel:
        return ";".join(c for c, on in zip(samples.classes, target) if on)
    return samples.classes[int(target)]
