"""Loading a Python file that is not an installed module: a benchmarks/ script, setup.py, an old revision's file.

Why one helper: five test files loaded files with the same three importlib lines; a benchmarks script also needs
benchmarks/ importable, as `python benchmarks/NAME.py` has it, since the scripts import their neighbours.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_module(name: str, path: Path) -> ModuleType:
    """The file at `path` executed as a module called `name` (not put in sys.modules)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def benchmark_script(name: str) -> ModuleType:
    """benchmarks/NAME.py loaded as `python benchmarks/NAME.py` runs it: with benchmarks/ on sys.path."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    return load_module(name, REPO / "benchmarks" / f"{name}.py")
