"""The house rules a newcomer relies on, checked on the source: search/ has a few top-level modules and its rooms
are sub-packages whose faces list what the rest may use; no function is longer than a screen; the run folder's
metrics file is named by one module of search/ at most (training reads the folder); training imports nothing of
search or Optuna."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEARCH, TRAINING = ROOT / "search", ROOT / "training"
MAX_FUNCTION_LINES = 60


def _modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def test_search_has_few_top_level_modules_and_named_rooms():
    top = sorted(p.name for p in SEARCH.glob("*.py"))
    rooms = sorted(p.name for p in SEARCH.iterdir() if p.is_dir() and (p / "__init__.py").is_file())
    assert len(top) <= 6, top
    assert len(rooms) >= 4, rooms


@pytest.mark.parametrize("package", sorted(str(p.parent.relative_to(ROOT)).replace("/", ".")
                                           for p in SEARCH.rglob("__init__.py") if p.parent != SEARCH))
def test_each_room_has_a_face_listing_its_public_names(package):
    module = importlib.import_module(package)
    assert module.__all__, f"{package} has an empty __all__"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it does not import: {missing}"
    private = [p.name for p in (ROOT / package.replace(".", "/")).glob("*.py")
               if p.name != "__init__.py" and not p.name.startswith("_")]
    assert not private, f"{package}: modules behind the face are private (_name.py): {private}"


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in _modules(SEARCH) + _modules(TRAINING):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_one_module_of_search_at_most_names_the_metrics_file():
    naming = [str(p.relative_to(ROOT)) for p in _modules(SEARCH) if "metrics.json" in p.read_text()]
    assert len(naming) <= 1, naming


# which rooms of search/ each room may import (docs/architecture.md): dependencies point one way
ALLOWED = {"cli": {"workers", "observe", "results", "study", "store", "ranking", "errors"},
           "workers": {"observe", "results", "study", "store", "ranking", "errors"},
           "observe": {"study", "store", "ranking", "errors"}, "results": {"study", "store", "ranking", "errors"},
           "study": {"store", "ranking", "errors"}, "store": {"ranking", "errors"}, "ranking": set(), "errors": set()}


def _search_imports(path: Path) -> list[str]:
    """The search modules a file imports (``from search.x import ...`` and ``import search.x``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("search."):
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("search.")]
    return out


def test_rooms_depend_one_way_through_their_faces():
    wrong = []
    for path in _modules(SEARCH):
        room = path.relative_to(SEARCH).parts[0].removesuffix(".py")
        for module in _search_imports(path):
            other = module.split(".")[1]
            if room in ALLOWED and other != room and other not in ALLOWED[room]:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}: against the direction")
            elif other != room and any(part.startswith("_") for part in module.split(".")[2:]):
                wrong.append(f"{path.relative_to(ROOT)} imports {module}: behind another room's face")
    assert not wrong, wrong


def test_training_knows_nothing_of_search_or_optuna():
    for path in _modules(TRAINING):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            bad = [n for n in names if n.split(".")[0] in ("search", "optuna")]
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
