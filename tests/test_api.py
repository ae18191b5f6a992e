"""The public contract of DESIGN.md: names, __all__ and signatures."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import varstats as vs

MODULES = sorted(
    m.name
    for m in pkgutil.iter_modules(vs.__path__, "varstats.")
    if not m.name.endswith("__main__")
)


def test_design_constants() -> None:
    assert vs.DTYPES == ("float16", "bfloat16", "float32", "float64")
    assert vs.ALGORITHMS[:8] == (
        "naive",
        "shifted",
        "two_pass",
        "corrected_two_pass",
        "welford",
        "pairwise",
        "chan",
        "compensated",
    )


@pytest.mark.parametrize("name", MODULES)
def test_every_module_declares_all_and_it_resolves(name: str) -> None:
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    for public in module.__all__:
        assert hasattr(module, public), f"{name}.__all__ names missing {public}"
    assert sorted(module.__all__) == sorted(set(module.__all__)), f"{name}.__all__ has repeats"


def test_package_all_resolves() -> None:
    for public in vs.__all__:
        assert hasattr(vs, public)


@pytest.mark.parametrize("fn", [vs.var, vs.mean_var, vs.moments])
def test_data_positional_only_options_keyword_only(fn: object) -> None:
    params = list(inspect.signature(fn).parameters.values())  # type: ignore[arg-type]
    assert params[0].name == "x"
    assert params[0].kind is inspect.Parameter.POSITIONAL_ONLY
    for p in params[1:]:
        assert p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD), p.name
    names = {p.name for p in params}
    assert {"axis", "algorithm", "precision"} <= names


def test_oracle_signatures() -> None:
    for fn in (vs.oracle.exact_var, vs.oracle.exact_mean):
        params = list(inspect.signature(fn).parameters.values())
        assert params[0].kind is inspect.Parameter.POSITIONAL_ONLY
        assert "axis" in inspect.signature(fn).parameters
    assert "correction" in inspect.signature(vs.oracle.exact_var).parameters
