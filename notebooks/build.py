"""Execute the notebooks and write their executed copies beside the sources.

Usage (from anywhere)::

    python notebooks/build.py            # every notebook, full computations
    python notebooks/build.py 03 05      # only the notebooks whose names start with these
    python notebooks/build.py --quick    # VARSTATS_NOTEBOOK_QUICK=1: smaller computations,
                                         # written to a new temporary directory
    python notebooks/build.py --out DIR  # write the executed copies to DIR instead
    python notebooks/build.py --check    # no execution: fail if an .ipynb is missing or
                                         # its cells differ from its .py source

Each ``notebooks/NN_*.py`` (jupytext py:percent) is converted with jupytext and run with
nbclient in the ``python3`` kernel, which jupyter_client starts with this interpreter
(``sys.executable``), so varstats must be importable here. The kernel's working directory
is ``notebooks/``; the notebooks find ``results/`` from there. Only full builds replace
the committed ``.ipynb``: a quick build's smaller computations would not match them.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
QUICK_ENV = "VARSTATS_NOTEBOOK_QUICK"
KERNEL = "python3"
TIMEOUT = 1800  # seconds per cell


def sources(prefixes: list[str] | None = None) -> list[Path]:
    """The notebook sources ``NN_*.py``, optionally only those starting with a prefix."""
    found = sorted(HERE.glob("[0-9][0-9]_*.py"))
    if prefixes:
        found = [p for p in found if any(p.stem.startswith(q) for q in prefixes)]
    return found


def cell_sources(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(cell type, source) of every cell: what must agree between .py and .ipynb."""
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def stable_ids(nb: nbformat.NotebookNode) -> list[str]:
    """Cell ids from each cell's type and source (nbformat's default ids are random).

    With them, and without nbclient's execution timestamps, a rebuild writes the same
    bytes; an edited cell changes only its own id.
    """
    ids: list[str] = []
    for cell in nb.cells:
        digest = hashlib.sha256(f"{cell.cell_type}\0{cell.source}".encode()).hexdigest()[:12]
        repeat = sum(i.split("-")[0] == digest for i in ids)  # identical cells
        ids.append(digest if repeat == 0 else f"{digest}-{repeat}")
    return ids


def execute(source: Path, *, quick: bool, cwd: Path = HERE) -> nbformat.NotebookNode:
    """Convert ``source`` with jupytext and execute it; raises on the first failing cell."""
    return run(jupytext.read(source), quick=quick, cwd=cwd)


def run(nb: nbformat.NotebookNode, *, quick: bool, cwd: Path = HERE) -> nbformat.NotebookNode:
    """Execute ``nb`` in place in a fresh ``python3`` kernel and return it."""
    for cell, cell_id in zip(nb.cells, stable_ids(nb), strict=True):
        cell.id = cell_id
    nb.metadata["kernelspec"] = {
        "name": KERNEL,
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    old = os.environ.get(QUICK_ENV)
    os.environ[QUICK_ENV] = "1" if quick else "0"  # inherited by the kernel process
    try:
        # Unix sockets in a private directory, not TCP on localhost: ipykernel warns
        # (once per kernel) that TCP without CurveZMQ keys is readable by any local user.
        # The sockets need an absolute path, or they are created in the kernel's cwd.
        with tempfile.TemporaryDirectory(prefix="varstats-kernel-") as sockets:
            manager = KernelManager(
                kernel_name=KERNEL, transport="ipc", ip=str(Path(sockets) / "kernel")
            )
            client = NotebookClient(
                nb,
                km=manager,
                kernel_name=KERNEL,
                timeout=TIMEOUT,
                record_timing=False,  # wall-clock timestamps would change every build
                resources={"metadata": {"path": str(cwd)}},
            )
            try:
                client.execute()
            finally:  # nbclient shuts down only kernels it created itself
                if manager.has_kernel:
                    manager.shutdown_kernel()
    finally:
        if old is None:
            del os.environ[QUICK_ENV]
        else:
            os.environ[QUICK_ENV] = old
    return nb


def check(paths: list[Path]) -> list[str]:
    """Problems with the executed copies: missing, out of sync with the source, or errors."""
    problems = []
    for source in paths:
        target = source.with_suffix(".ipynb")
        if not target.exists():
            problems.append(f"{target.name}: missing (run python notebooks/build.py)")
            continue
        executed = nbformat.read(target, as_version=4)
        if cell_sources(executed) != cell_sources(jupytext.read(source)):
            problems.append(f"{target.name}: cells differ from {source.name} (rebuild it)")
        timed = any("execution" in cell.get("metadata", {}) for cell in executed.cells)
        if timed or [cell.get("id") for cell in executed.cells] != stable_ids(executed):
            problems.append(f"{target.name}: timestamps or random cell ids (rebuild it)")
        for cell in executed.cells:
            if cell.cell_type != "code":
                continue
            if cell.get("execution_count") is None:
                problems.append(f"{target.name}: a code cell was not executed")
                break
            if any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
                problems.append(f"{target.name}: a cell raised an error")
                break
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="name prefixes, e.g. 01 03 (default: all)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"set {QUICK_ENV}=1 (smaller computations); writes to a new temporary "
        "directory unless --out is given, never over the committed notebooks",
    )
    parser.add_argument(
        "--out", type=Path, help="directory for the executed .ipynb (default: notebooks/)"
    )
    parser.add_argument("--check", action="store_true", help="check the .ipynb, execute nothing")
    args = parser.parse_args(argv)
    paths = sources(args.notebooks)
    if not paths:
        print("no notebook matches", args.notebooks, file=sys.stderr)
        return 2
    if args.check:
        problems = check(paths)
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    out = args.out
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="varstats-notebooks-")) if args.quick else HERE
    elif args.quick and out.resolve() == HERE:
        parser.error("--out: a --quick build may not replace the committed notebooks")
    out.mkdir(parents=True, exist_ok=True)
    for source in paths:
        start = time.perf_counter()
        nb = execute(source, quick=args.quick)
        target = out / source.with_suffix(".ipynb").name
        nbformat.write(nb, target)
        shown = target.name if out.resolve() == HERE else target
        print(f"{shown}: {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
