"""The deployable layer as ``make package`` builds it, unzipped, against Lambda's limit.

Lambda refuses a function whose code and layers take more than 250 MB unzipped, and a cold start
unpacks all of it. The table builds the layer into a temporary folder with the Makefile's own
target (pip fetches the Linux wheels for Python 3.12 from the package registry, as for
``make install``) and adds up its files: the largest packages, the rest, the total.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.report import Table, verdict
from bench.world import World

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
LIMIT_MB = 250  # function code and all its layers, unzipped (262,144,000 bytes)
LARGEST = 6


def build(folder: Path) -> None:
    """``make package`` into ``folder``; CalledProcessError (with pip's output) if it fails."""
    make = [
        "make",
        "--no-print-directory",
        "package",
        f"LAYER={folder}",
        f"PYTHON={sys.executable}",
    ]
    subprocess.run(  # noqa: S603 - make running our own Makefile's target
        make, cwd=ROOT, capture_output=True, text=True, check=True, timeout=600
    )


def sizes(python: Path) -> tuple[Counter[str], int]:
    """Bytes per top-level entry of the layer's ``python/`` folder, and the bytecode among them."""
    by_entry: Counter[str] = Counter()
    bytecode = 0
    for path in python.rglob("*"):
        if path.is_file() and not path.is_symlink():
            size = path.stat().st_size
            by_entry[path.relative_to(python).parts[0]] += size
            if path.suffix == ".pyc":
                bytecode += size
    return by_entry, bytecode


def run(world: World) -> Table:
    table = Table(
        "layer",
        "Layer: the deployable layer (make package), unzipped",
        ["part", "MB", "share", "target", "met"],
    )
    folder = Path(tempfile.mkdtemp(prefix="layer-"))
    try:
        build(folder)
        by_entry, bytecode = sizes(folder / "python")
    except subprocess.CalledProcessError as exc:
        last = (exc.stderr or exc.stdout or "").strip().splitlines()[-1:] or ["no output"]
        table.add("layer not built", "", "", f"≤ {LIMIT_MB} MB", verdict(False))
        table.note(f"make package failed: {last[0]}")
        return table
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    total = sum(by_entry.values())
    largest = by_entry.most_common(LARGEST)
    for name, size in largest:
        table.add(name, f"{size / MB:,.1f}", f"{size / total:.0%}", "", "")
    rest = total - sum(size for _, size in largest)
    table.add(
        f"{len(by_entry) - len(largest)} other entries", f"{rest / MB:,.1f}", f"{rest / total:.0%}"
    )
    table.add(
        "total",
        f"{total / MB:,.1f}",
        f"{total / (LIMIT_MB * MB):.0%} of the limit",
        f"≤ {LIMIT_MB} MB (Lambda, unzipped)",
        verdict(total <= LIMIT_MB * MB),
    )
    table.figures.update({"total_mb": total / MB, "bytecode_mb": bytecode / MB})
    built_with = f"{sys.version_info.major}.{sys.version_info.minor}"
    unused = "" if built_with == "3.12" else ", which Lambda's Python 3.12 does not use"
    table.note(
        f"{bytecode / MB:,.1f} MB of it is bytecode pip compiled with the build's Python "
        f"{built_with}{unused}"
    )
    return table
