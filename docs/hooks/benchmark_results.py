"""MkDocs hook: benchmarks/results/ (results.md, drain.png) published as benchmarks/results.md.

`python -m benchmarks` writes those files where they are; the site shows them as they are, one
copy, instead of a second one under docs/ that would go stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def on_files(files: Files, config: Any) -> Files:
    for name in ("results.md", "drain.png"):
        files.append(File.generated(config, f"benchmarks/{name}", abs_src_path=str(RESULTS / name)))
    return files
