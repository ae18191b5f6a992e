"""Every code example in the documentation runs, and every output it states is what it prints.

- The docstring examples of every ``varstats`` module run as doctests.
- Every Markdown file of the repository (README.md, docs/, notebooks/, results/) is run
  block by block, in order, in one namespace and in a temporary working directory:
  ``pycon`` blocks (and ``python`` blocks written with ``>>>``) are doctests, so each
  stated output is compared with the real one; other ``python`` blocks are executed and
  may not state outputs in comments (a comment that starts with a number is a claim: write
  that block as a doctest); shell blocks run when they are cheap (``varstats.vectors``,
  ``build.py --check``) and otherwise must name an installable extra, an existing module
  or script and only options its ``--help`` lists, or an existing program.
- Relative links in Markdown resolve, and the README's layout table names existing paths.
- Claims in the README prose that an example cannot show (the spread of merge errors over
  seeds, Welford's Python loop) have their own tests here, as does "no committed file
  holds a path of the machine that produced it".
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import json
import os
import pkgutil
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import numpy as np
import pytest

import varstats as vs
from varstats import kernels, vectors

ROOT = Path(__file__).resolve().parents[1]
OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE  # pytest's doctest flags

# --------------------------------------------------------------------------- docstrings


def _module_names() -> list[str]:
    found = pkgutil.walk_packages(vs.__path__, prefix="varstats.")
    return ["varstats", *sorted(m.name for m in found)]


def _import_or_skip(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # an optional dependency (dask) that is not installed
        pytest.skip(f"{name}: {exc}")


def _failures(tests: list[doctest.DocTest]) -> str:
    out: list[str] = []
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS)
    for test in tests:
        runner.run(test, out=out.append, clear_globs=False)  # a file's blocks share names
    return "".join(out)


def _own_doctests(module: ModuleType) -> list[doctest.DocTest]:
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, module.__name__)
    # the finder also walks objects re-exported from other modules: keep this module's own
    return [t for t in tests if t.filename == module.__file__]


@pytest.mark.parametrize("name", _module_names())
def test_docstring_examples_run_and_print_what_they_state(name: str) -> None:
    report = _failures(_own_doctests(_import_or_skip(name)))
    assert not report, f"docstring examples of {name} fail:\n{report}"


def test_the_package_has_docstring_examples() -> None:
    # guards the test above against finding nothing (a renamed package, a broken finder)
    modules = [importlib.import_module(name) for name in ("varstats.oracle", "varstats.metrics")]
    assert all(_own_doctests(module) for module in modules)


# --------------------------------------------------------------------------- Markdown

FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SHELL = {"bash", "sh", "shell", "console"}
DOCTEST = {"pycon", "python", "py"}
#: a comment stating a value, e.g. ``x.sum()  # 1.25``: only doctests may state outputs
STATED_VALUE = re.compile(r"#\s*[-+]?(\d|\.\d|inf\b|nan\b|True\b|False\b|None\b)")


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, source and first line in the file."""

    path: Path
    language: str
    source: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def markdown_files() -> list[Path]:
    hidden = {".git", ".venv", "node_modules"}
    return sorted(
        p
        for p in ROOT.rglob("*.md")
        if not any(part in hidden or part.startswith(".") for part in p.relative_to(ROOT).parts)
    )


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    return [
        Block(path, m.group(1).lower(), m.group(2), text.count("\n", 0, m.start()) + 2)
        for m in FENCE.finditer(text)
    ]


def _imports(source: str) -> set[str]:
    names = re.findall(r"^\s*(?:>>>\s*)?(?:import|from)\s+([A-Za-z_]\w*)", source, re.M)
    return set(names)


def _run_doctest(block: Block, globs: dict[str, Any]) -> None:
    test = doctest.DocTestParser().get_doctest(block.source, globs, block.where, None, block.line)
    report = _failures([test])
    globs.update(test.globs)  # DocTest ran on a copy; later blocks build on this one
    assert not report, f"{block.where}: the example's stated output is not what it prints\n{report}"


def _run_script(block: Block, globs: dict[str, Any]) -> None:
    for k, line in enumerate(block.source.splitlines()):
        code, _, comment = line.partition("  #")
        assert not (code.strip() and STATED_VALUE.match("#" + comment)), (
            f"{block.where}+{k}: {line.strip()!r} states a value in a comment; "
            "write the block as a doctest (```pycon, >>>) so the value is checked"
        )
    exec(compile(block.source, block.where, "exec"), globs)


def _commands(source: str) -> Iterator[list[str]]:
    for line in source.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()  # a trailing comment
        line = line.removeprefix("$ ")
        for command in filter(None, (c.strip() for c in line.split("&&"))):
            yield shlex.split(command)


def _extras() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return set(project.get("optional-dependencies", {}))


def _python(args: list[str]) -> tuple[list[str], list[str]]:
    """``python -m mod ...`` or ``python script ...`` as (what to run, its arguments)."""
    if args[0] == "-m":
        return [sys.executable, "-m", args[1]], args[2:]
    return [sys.executable, str(ROOT / args[0])], args[1:]


def _is_cheap(target: list[str], args: list[str]) -> bool:
    return target[-1] == "varstats.vectors" or (
        target[-1].endswith("build.py") and "--check" in args
    )


def _run_shell(block: Block, cwd: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    for argv in _commands(block.source):
        where = f"{block.where}: {shlex.join(argv)}"
        if argv[:3] == ["pip", "install", "-e"]:
            spec = argv[3]
            wanted = set(re.findall(r"\[(.*)\]", spec)[0].split(",")) if "[" in spec else set()
            assert not wanted - _extras(), f"{where}: no such extra {wanted - _extras()}"
            continue
        if argv[0] != "python":  # a repository script (.ci/run) or a tool (git, jupyter)
            found = (ROOT / argv[0]).is_file() or shutil.which(argv[0]) is not None
            assert found, f"{where}: no such program"
            continue
        target, args = _python(argv[1:])
        if target[-1] == "pytest":
            continue  # this test is part of that run
        if target[-1].endswith(".py"):
            assert Path(target[-1]).is_file(), f"{where}: no such script"
        if _is_cheap(target, args):
            res = subprocess.run(
                [*target, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
            )
            assert res.returncode == 0, f"{where}: exit {res.returncode}\n{res.stderr}"
            continue
        res = subprocess.run(
            [*target, "--help"], cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
        assert res.returncode == 0, f"{where}: --help fails\n{res.stderr}"
        for option in (a.split("=")[0] for a in args if a.startswith("--")):
            assert option in res.stdout, f"{where}: {option} is not in its --help"


def _missing_import(block: Block) -> str | None:
    """The first module ``block`` imports that is not installed (torch is optional)."""
    if block.language not in DOCTEST:
        return None
    return next((m for m in sorted(_imports(block.source)) if not _installed(m)), None)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # a module without a spec (e.g. __main__)
        return True


RUNNERS: dict[str, Callable[[Block, dict[str, Any], Path], None]] = {
    "doctest": lambda b, g, _: _run_doctest(b, g),
    "script": lambda b, g, _: _run_script(b, g),
    "shell": lambda b, _, cwd: _run_shell(b, cwd),
}


def _kind(block: Block) -> str | None:
    if block.language in DOCTEST:
        return "doctest" if re.search(r"^\s*>>> ", block.source, re.M) else "script"
    return "shell" if block.language in SHELL else None  # json, text: not code


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_examples_run_and_print_what_they_state(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files (vectors/) write them here
    globs: dict[str, Any] = {"__name__": "__main__"}
    for block in blocks(path):
        missing = _missing_import(block)
        if missing is not None:  # the blocks so far passed; later ones may build on this one
            pytest.skip(f"{block.where} and after: {missing} is not installed")
        kind = _kind(block)
        if kind is not None:
            RUNNERS[kind](block, globs, tmp_path)


def test_readme_examples_are_doctests() -> None:
    found = blocks(ROOT / "README.md")
    python = [b for b in found if b.language in DOCTEST]
    assert python, "README.md has no Python examples"
    assert all(_kind(b) == "doctest" for b in python), "README examples must state outputs"
    assert all(b.language in DOCTEST | SHELL for b in found), "unknown block language"


def test_a_comment_stating_a_value_is_rejected_outside_doctests(tmp_path: Path) -> None:
    block = Block(ROOT / "README.md", "python", "x = 1.25\nx + 0  # 1.25\n", 1)
    with pytest.raises(AssertionError, match="write the block as a doctest"):
        _run_script(block, {})


def test_a_wrong_stated_output_fails() -> None:
    block = Block(ROOT / "README.md", "pycon", ">>> 1 + 1\n3\n", 1)
    with pytest.raises(AssertionError, match="stated output"):
        _run_doctest(block, {})


def test_conformance_json_layout_is_a_written_file(tmp_path: Path) -> None:
    (doc_block,) = [b for b in blocks(ROOT / "docs" / "conformance.md") if b.language == "json"]
    # the example elides with "..." (a string, a list, or trailing list items)
    text = re.sub(r",\s*\.\.\.(?=\s*\])", "", doc_block.source).replace("[...]", "[]")
    shown = json.loads(text)
    (path,) = vectors.write(tmp_path, [shown["dtype"]])
    real = json.loads(path.read_text(encoding="ascii"))

    def agree(a: Any, b: Any, where: str) -> None:
        if isinstance(a, dict):
            assert isinstance(b, dict), where
            assert set(a) == set(b), f"{where}: keys {sorted(a)} vs {sorted(b)}"
            for key in a:
                agree(a[key], b[key], f"{where}.{key}")
        elif isinstance(a, list) and a and a != ["..."]:
            assert isinstance(b, list), where
            for k, (x, y) in enumerate(zip(a, b, strict=False)):  # the example may elide a tail
                agree(x, y, f"{where}[{k}]")
        elif isinstance(a, str) and a.endswith("..."):
            assert str(b).startswith(a.removesuffix("...")), f"{where}: {b!r}"
        elif a not in ("...", [], ["..."]):
            assert a == b, f"{where}: shown {a!r}, written {b!r}"

    header = {k: v for k, v in shown.items() if k != "cases"}
    agree(header, {k: real[k] for k in header}, "header")
    (case,) = shown["cases"]
    by_name = {c["name"]: c for c in real["cases"]}
    agree(case, by_name[case["name"]], case["name"])


# --------------------------------------------------------------------------- references

LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    # a dead reference (README once pointed at a DESIGN.md outside the repository)
    targets = [t.split("#")[0] for t in LINK.findall(path.read_text(encoding="utf-8"))]
    local = [t for t in targets if t and not re.match(r"[a-z]+:", t)]
    dead = [t for t in local if not (path.parent / t).exists()]
    assert not dead, f"{path.relative_to(ROOT)}: links to missing files {dead}"


def test_readme_layout_table_names_existing_paths() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = text[text.index("## Layout") :]
    rows = [line.split("|")[1] for line in layout.splitlines() if line.startswith("| `")]
    assert rows, "README.md: no layout table"
    missing = []
    for cell in rows:
        folder = ""
        for name in re.findall(r"`([^`]+)`", cell):
            if "/" in name.rstrip("/"):  # a path; later bare names share its folder
                folder = name.rsplit("/", 1)[0] + "/"
                name_path = name
            else:
                name_path = name if name.endswith("/") else folder + name
            if not (ROOT / name_path).exists():
                missing.append(name_path)
    assert not missing, f"README.md layout table: no such path {missing}"


# --------------------------------------------------------------------------- prose claims


def test_readme_merge_of_float64_halves_is_off_by_3_to_829_ulps_median_89() -> None:
    # README, "Using it": Moments.merge is exact in exact arithmetic, not in float64
    merged, whole = [], []
    for seed in range(20):
        y = np.random.default_rng(seed).normal(1e4, 1.0, 1000)
        exact = vs.oracle.exact_var(y)
        halves = vs.moments(y[:500]).merge(vs.moments(y[500:]))
        merged.append(float(vs.metrics.ulps(halves.m2 / halves.count, exact, np.float64)))
        whole.append(float(vs.metrics.ulps(vs.var(y), exact, np.float64)))
    assert (min(merged), float(np.median(merged)), max(merged)) == (3.0, 89.0, 829.0)
    assert max(whole) <= 2.0, "two-pass over the whole array: within 2 ulps"


def test_readme_default_sum_is_a_tree_over_lanes_of_32_strided_values() -> None:
    # README, "What the study finds": the default summation order, emulated here in float16
    # (NumPy rounds each float16 add correctly) and compared bit for bit
    f16 = np.float16
    x = (np.random.default_rng(0).random(32 * 37) * 100).astype(f16)
    lanes = x.reshape(32, -1)  # lane j holds x[j], x[j + 37], ...: 32 values, 37 apart
    level = list(lanes[0])
    for row in lanes[1:]:
        level = [f16(s + v) for s, v in zip(level, row, strict=True)]
    while len(level) > 1:  # neighbours first; an odd one is carried up unchanged
        level = [f16(a + b) for a, b in zip(level[::2], level[1::2], strict=False)] + (
            [level[-1]] if len(level) % 2 else []
        )
    sequential = f16(0)
    for v in x:
        sequential = f16(sequential + v)
    n = f16(x.size)
    mean, _ = vs.mean_var(x, algorithm="naive")  # float16 arithmetic throughout
    assert mean == f16(level[0] / n)
    assert mean != f16(sequential / n), "the data must tell the two orders apart"


def _python_calls(fn: Callable[[], object]) -> int:
    """Python- and C-level function calls made while running ``fn`` (no timing)."""
    calls = 0

    def count(_frame: FrameType, event: str, _arg: object) -> None:
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize("algorithm", vs.ALGORITHMS)
def test_readme_only_welford_loops_in_python_over_the_reduced_axis(algorithm: str) -> None:
    # README, "Using it": welford is one Python step per element along the reduced axis,
    # vectorized over the other axes; every other algorithm is whole-array operations.
    # Counted in calls, not timed: a timing in a unit test would be a flaky benchmark.
    n, m = 4096, 256
    x = np.random.default_rng(0).normal(size=2 * n)

    def calls(shape: tuple[int, int]) -> int:
        data = x[: shape[0] * shape[1]].reshape(shape)
        return _python_calls(lambda: vs.var(data, axis=-1, algorithm=algorithm))

    short, long = calls((1, n)), calls((1, 2 * n))
    one_row, many_rows = calls((1, m)), calls((32, m))
    assert many_rows - one_row < m / 4, f"{algorithm}: calls grow with the kept axes"
    if algorithm == "welford":
        # without numba (the jit extra) the loop steps in Python
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(kernels, "_USE_JIT", False)
            plain_short, plain_long = calls((1, n)), calls((1, 2 * n))
        assert plain_long - plain_short >= n, "welford: one Python call per added element"
    if algorithm != "welford" or kernels._welford_kernel() is not None:
        assert long - short < n / 64, f"{algorithm}: calls grow with n (a Python loop?)"


#: The speed figures the README quotes, by the `results/benchmarks.md` row they come from.
README_SPEEDS: list[tuple[str, str]] = [
    ("default `vs.var(x)`, n = 10^6", "0.608x"),
    ("default `vs.var(x)`, n = 10^4", "1.94x"),
    ("default `vs.var(x)`, n = 10^6, without numba (NumPy path)", "1.21x"),
    ("default `vs.var(x)`, n = 10^4, without numba (NumPy path)", "3.73x"),
    ("`vs.var(x, **vs.RECOMMENDED)`, n = 10^6 float64", "1.45x"),
    ("`vs.var(x, **vs.RECOMMENDED)`, n = 10^6 float32", "1.15x"),
    ("`vs.var(x, **vs.RECOMMENDED)`, n = 10^6 float64, without numba (NumPy path)", "12.6x"),
    ("`vs.var(x, **vs.RECOMMENDED)`, n = 10^6 float32, without numba (NumPy path)", "13.2x"),
    ('`algorithm="welford"`, 1-D, n = 10^6', "5.77x"),
    ('`vs.var(x, precision="float16:float16")`, n = 10^6', "1.52x"),
]


def test_readme_speeds_are_the_committed_benchmark_numbers() -> None:
    # README, "Using it": every ratio it quotes is a row of results/benchmarks.md; a new
    # benchmark run must update the README with it
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    bullet = readme[readme.index("- Speed, from the committed") :]
    bullet = bullet[: bullet.index(" - ")]
    rows = {}
    for line in (ROOT / "results" / "benchmarks.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5:
            rows[cells[0]] = cells[2]
    quoted = re.findall(r"\d+(?:\.\d+)?x", bullet)
    assert sorted(quoted) == sorted(v for _, v in README_SPEEDS)
    for label, value in README_SPEEDS:
        assert rows.get(label) == value, label


# --------------------------------------------------------------------------- machine paths


def _committed_files() -> list[Path]:
    git = shutil.which("git")
    if git is not None and (ROOT / ".git").exists():
        res = subprocess.run([git, "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
        if res.returncode == 0:
            return [ROOT / name for name in res.stdout.decode().split("\0") if name]
    skip = {".git", ".venv", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
    return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.parts)]


def _machine_paths() -> list[bytes]:
    paths = {"/work/", str(ROOT) + os.sep}
    home = str(Path.home())
    if len(home) > 1:
        paths.add(home.rstrip(os.sep) + os.sep)
    return sorted(p.encode() for p in paths)


def test_no_committed_file_holds_a_path_of_this_machine() -> None:
    # notebooks once printed ".../results/errors.csv" with the absolute path of the
    # machine that ran them; committed outputs must be the same bytes on any checkout
    this_file = Path(__file__).resolve()
    offenders = [
        f"{path.relative_to(ROOT)}: {needle.decode()}"
        for path in _committed_files()
        if path.is_file() and path.resolve() != this_file
        for needle in _machine_paths()
        if needle in path.read_bytes()
    ]
    assert not offenders, "absolute machine paths in committed files:\n" + "\n".join(offenders)
