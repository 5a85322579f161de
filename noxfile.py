"""Sessions: one test session per backend (same suite), lint, demo, example, conformance, bench."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests-numpy", "tests-jax", "tests-torch", "tests-strict", "conformance", "lint"]
nox.options.reuse_existing_virtualenvs = True

PIN = ("-c", "constraints.txt")
BACKEND_PACKAGES = {
    "numpy": [],
    "jax": ["jax"],
    "torch": ["torch"],
    "strict": ["array-api-strict"],
}
# The xp fixture name for each session's backend.
FIXTURE_NAME = {"numpy": "numpy", "jax": "jax", "torch": "torch", "strict": "array_api_strict"}


def _install(session: nox.Session, *packages: str) -> None:
    session.install(*PIN, *packages)


def _test_session(backend: str, packages: list[str]) -> object:
    def run(session: nox.Session) -> None:
        _install(session, ".[test]", *packages)
        env = {"KNOTSAFE_TEST_BACKENDS": FIXTURE_NAME[backend]}
        if backend == "jax":
            # JAX computes in float32 unless x64 is enabled: run the suite both ways.
            session.run("pytest", *session.posargs, env={**env, "JAX_ENABLE_X64": "0"})
            session.run("pytest", *session.posargs, env={**env, "JAX_ENABLE_X64": "1"})
        else:
            session.run("pytest", *session.posargs, env=env)

    run.__doc__ = f"Run the test suite with only the {backend} backend installed."
    return nox.session(name=f"tests-{backend}")(run)


for _backend, _packages in BACKEND_PACKAGES.items():
    _test_session(_backend, _packages)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format check) and mypy on src/."""
    _install(session, "ruff", "mypy", "numpy", "array-api-compat")
    paths = ("src", "tests", "conformance", "benchmarks", "examples", "docs", "noxfile.py")
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
    session.run("mypy", "src/knotsafe")


@nox.session
def demo(session: nox.Session) -> None:
    """The duplicate-knot scenario on every backend, beside plain interp and stop_gradient+jitter."""
    _install(session, ".[numpy,jax,torch,strict]")
    session.run("python", "examples/demo.py", *session.posargs, env={"JAX_ENABLE_X64": "1"})


@nox.session
def example(session: nox.Session) -> None:
    """Lens reconstruction on the adaptive rectangular mesh; writes a figure."""
    _install(session, ".[numpy,jax,torch,strict]", "matplotlib")
    session.run("python", "examples/lens_reconstruction.py", *session.posargs, env={"JAX_ENABLE_X64": "1"})


@nox.session
def conformance(session: nox.Session) -> None:
    """The backend conformance suite; prints and writes the conformance table."""
    _install(session, ".[test,jax,torch,strict]", "./conformance/plugin")
    session.run("python", "-m", "conformance", *session.posargs)
    # The JAX == PyTorch tests need both frameworks: this is the one session that has them.
    cross = ("tests/test_cross_backend.py", "tests/test_rectangular.py::test_jax_and_torch_gradients_agree")
    session.run("pytest", *cross, env={"JAX_ENABLE_X64": "1", "KNOTSAFE_REQUIRE_CROSS_BACKEND": "1"})


@nox.session
def bench(session: nox.Session) -> None:
    """Side-by-side benchmarks against the peers; prints the table and writes the plot."""
    _install(session, ".[numpy,jax,torch]", "matplotlib", "torchinterp1d")
    session.run("python", "benchmarks/run.py", *session.posargs)


# --- Documentation and release (appended: the test sessions above are independent of these) ---

DOCS_OUT = "build/docs"  # ignored (build/ in .gitignore)
DIST_OUT = "build/dist"

# Run in a fresh environment that has the wheel and its one dependency
# (array-api-compat) and no array library at all.
_IMPORT_CHECK = """
import importlib.metadata, importlib.util, sys
import knotsafe
frameworks = ("numpy", "jax", "torch", "array_api_strict", "cupy", "dask")
present = [m for m in frameworks if importlib.util.find_spec(m) is not None]
assert not present, f"the bare environment has {present}: the check would prove nothing"
assert knotsafe.__version__ == importlib.metadata.version("knotsafe"), (knotsafe.__version__,)
meta = importlib.metadata.metadata("knotsafe")
assert meta["License-Expression"] == "MIT", meta["License-Expression"]
dist_files = {str(f) for f in importlib.metadata.files("knotsafe")}
assert "knotsafe/py.typed" in dist_files, "py.typed missing: type checkers would ignore the hints"
assert any(f.endswith("licenses/LICENSE") for f in dist_files), "LICENSE missing from the wheel"
for name in knotsafe.__all__:
    getattr(knotsafe, name)
loaded = sorted(m for m in frameworks if m in sys.modules)
assert not loaded, f"import knotsafe imported {loaded}"
print(f"knotsafe {knotsafe.__version__} imports with no array library installed")
"""


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site (Sphinx, numpydoc, MyST) with warnings as errors into build/docs."""
    _install(session, ".[docs]")
    # -E: read every page again, so a warning in an unchanged page is not hidden by the cache.
    session.run("sphinx-build", "-W", "--keep-going", "-E", "-b", "html", "docs", DOCS_OUT, *session.posargs)
    session.log(f"open {DOCS_OUT}/index.html")


@nox.session
def build(session: nox.Session) -> None:
    """Build the sdist and wheel, check their metadata, import the wheel with no framework installed."""
    import glob
    import shutil
    import sys
    import tempfile
    from pathlib import Path

    session.install("build", "twine")
    shutil.rmtree(DIST_OUT, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", DIST_OUT)
    dists = sorted(glob.glob(f"{DIST_OUT}/*"))
    wheels = [d for d in dists if d.endswith(".whl")]
    if len(dists) != 2 or len(wheels) != 1:
        session.error(f"expected one sdist and one wheel in {DIST_OUT}, got {dists}")
    session.run("twine", "check", "--strict", *dists)
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare"
        session.run("python", "-m", "venv", str(bare))
        python = str(bare / ("Scripts" if sys.platform == "win32" else "bin") / "python")
        session.run(python, "-m", "pip", "install", "--quiet", wheels[0], external=True)
        # Run from the temporary folder, so the import finds the installed wheel, not ./src.
        with session.chdir(tmp):
            session.run(python, "-c", _IMPORT_CHECK, external=True)


@nox.session
def mutation(session: nox.Session) -> None:
    """Mutation testing (mutmut 3, configured in pyproject.toml) of the rule, the hooks and the transforms.

    Not in the default sessions (about an hour on 2 cores; ``nox -s mutation -- "knotsafe._lib._rule*"``
    restricts it).  The unit tests run on PyTorch, array-api-strict and NumPy; the list of
    surviving mutants goes to build/mutation/report.txt, and docs/mutation.md explains each.
    """
    _install(session, ".[test,torch,strict]", "mutmut>=3.3")
    # mutmut forks one process per mutant: PyTorch's thread pool deadlocks in a forked child unless
    # it is single-threaded.
    env = {
        "PYTHONPATH": "src",
        "KNOTSAFE_TEST_BACKENDS": "numpy,torch,array_api_strict",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    # mutmut exits non-zero when mutants survive: the report below is the result, so do not stop here.
    session.run("mutmut", "run", "--max-children", "2", *session.posargs, env=env, success_codes=[0, 1, 2])
    report = session.run("mutmut", "results", silent=True, env=env)
    import pathlib

    out = pathlib.Path("build/mutation/report.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(str(report), encoding="utf-8")
    session.log(f"survivors listed in {out} (explained in docs/mutation.md)")
