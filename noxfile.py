"""Sessions: one test session per backend (same suite), conformance, lint, demo, example, bench, docs, build, mutation.

nox builds and owns every session's environment (``.nox/<session>``): with uv where uv is installed
(``pip install 'nox[uv]'``), with virtualenv and pip otherwise.  Environments are kept between runs;
each run installs the session's requirements again, which is a quick check when nothing changed
(``nox -R`` skips it; ``nox --reuse-venv=no`` builds afresh).  knotsafe and the conformance plugin
are installed editable, so a kept environment always tests the working tree.  Every install is
pinned by ``constraints.txt``.

The test sessions are generated from the backend table, ``tests/backend_table.py``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
# The backend table is imported as every reader imports it: from the repository root.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.backend_table import ALL_PACKAGES, BACKENDS, Backend, by_name, jax_cache_env  # noqa: E402

nox.needs_version = ">=2024.10.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.sessions = [
    "tests-numpy",
    "tests-jax",
    "tests-torch",
    "tests-strict",
    "tests-dask",
    "conformance",
    "lint",
]

#: knotsafe itself, editable, with the test requirements.
TEST = ("-e", ".[test]")
#: pytest options for every test run: no cache folder written into the clone.
PYTEST = ("-p", "no:cacheprovider")
#: Test sessions run on two pytest-xdist workers (``-- -n0`` after the session name runs them in
#: one process).  ``worksteal``: the test files differ a lot in cost, and an idle worker takes over
#: the rest of another's queue.
XDIST = ("-n", "2", "--dist", "worksteal")
#: JAX's persistent compilation cache, in the ignored .nox/ folder: JAX compiles every operation
#: for every new shape and dtype, and the same compilations recur in the other xdist worker, the
#: 8-device sharding subprocess and the conformance session.  Delete .nox/jax-cache to start from
#: nothing.
JAX_CACHE = jax_cache_env(ROOT / ".nox" / "jax-cache")


def _find_links(session: nox.Session) -> tuple[str, ...]:
    """pip's ``PIP_FIND_LINKS`` as uv arguments: uv reads neither pip's environment variables nor its config.

    A machine that keeps wheels on disk (a CPU-only PyTorch build, say) names the folder in
    ``PIP_FIND_LINKS``; without this uv would take the same version from PyPI, which for PyTorch on
    Linux is the CUDA build.  pip's extra indexes are not passed on: uv takes each package from the
    first index that has it, so a partial local mirror would change the versions resolved.
    ``UV_FIND_LINKS``, when set, is uv's own and wins.
    """
    if session.venv_backend != "uv" or os.environ.get("UV_FIND_LINKS"):
        return ()
    return tuple(arg for where in os.environ.get("PIP_FIND_LINKS", "").split() for arg in ("--find-links", where))


def _install(session: nox.Session, *requirements: str) -> None:
    """Install into the session's own environment, pinned by constraints.txt."""
    session.install("-c", "constraints.txt", *_find_links(session), *requirements)


def _with_callers_flags(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the caller's own XLA_FLAGS after the session's (a later flag wins in XLA)."""
    if "XLA_FLAGS" in env and os.environ.get("XLA_FLAGS"):
        return {**env, "XLA_FLAGS": f"{env['XLA_FLAGS']} {os.environ['XLA_FLAGS']}"}
    return dict(env)


def _test_session(backend: Backend) -> None:
    def run(session: nox.Session) -> None:
        _install(session, *TEST, *backend.packages)
        for extra in backend.runs:
            env = {
                "KNOTSAFE_TEST_BACKENDS": backend.name,
                **JAX_CACHE,
                **_with_callers_flags(backend.test_env),
                **extra,
            }
            session.run("python", "-m", "pytest", *PYTEST, *XDIST, *session.posargs, env=env)

    runs = " and ".join(" ".join(f"{k}={v}" for k, v in e.items()) or "once" for e in backend.runs)
    run.__doc__ = f"The test suite on the {backend.name} backend ({runs})."
    nox.session(name=f"tests-{backend.session}")(run)


for _backend in BACKENDS:
    _test_session(_backend)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format check) on every folder; mypy (strict) on src/knotsafe."""
    _install(session, "ruff", "mypy", "numpy", "array-api-compat")
    folders = ("src", "tests", "conformance", "benchmarks", "examples", "docs", "tools", "noxfile.py")
    paths = [p for p in folders if (ROOT / p).exists()]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
    session.run("mypy", "src/knotsafe")


@nox.session
def demo(session: nox.Session) -> None:
    """The duplicate-knot scenario on every backend, beside plain interp and stop_gradient+jitter."""
    _install(session, *TEST, *ALL_PACKAGES)
    session.run("python", "examples/demo.py", *session.posargs, env={"JAX_ENABLE_X64": "1"})


@nox.session
def example(session: nox.Session) -> None:
    """Lens reconstruction on the adaptive rectangular mesh; writes a figure."""
    _install(session, *TEST, *ALL_PACKAGES, "matplotlib")
    session.run("python", "examples/lens_reconstruction.py", *session.posargs, env={"JAX_ENABLE_X64": "1"})


#: Tests that need several frameworks at once, so no tests-<backend> session runs them: JAX == PyTorch
#: (values, gradients, Hessians), and knotsafe's first use while other threads import PyTorch and JAX.
CROSS_TESTS = (
    "tests/test_cross_backend.py",
    "tests/test_rectangular.py::test_jax_and_torch_gradients_agree",
    "tests/test_second_order.py::test_jax_and_torch_hessians_agree",
    "tests/test_backends.py::test_first_use_while_other_threads_import_frameworks",
)


def _conformance_env(session: nox.Session) -> None:
    """Every framework of the table, and the third-party namespace the suite ships (conformance/plugin)."""
    _install(session, *TEST, *ALL_PACKAGES, "-e", "./conformance/plugin")


@nox.session
def conformance(session: nox.Session) -> None:
    """The backend conformance suite (default hypothesis example counts); writes the table to build/conformance/.

    Also runs the tests that need several frameworks installed (:data:`CROSS_TESTS`): this is the
    one environment with all of them.
    """
    _conformance_env(session)
    session.run("python", "-m", "conformance", *session.posargs, env=JAX_CACHE)
    env = {"JAX_ENABLE_X64": "1", "KNOTSAFE_REQUIRE_CROSS_BACKEND": "1", **JAX_CACHE}
    session.run("python", "-m", "pytest", *PYTEST, *CROSS_TESTS, env=env)


@nox.session(name="conformance-full", default=False)
def conformance_full(session: nox.Session) -> None:
    """The conformance suite with 20x the default hypothesis examples per fuzz test and random seeds."""
    _conformance_env(session)
    args = ("--fuzz-examples", "240", "--fuzz-random")
    session.run("python", "-m", "conformance", *args, *session.posargs, env=JAX_CACHE)


@nox.session(name="tests-dask-cluster", default=False)
def tests_dask_cluster(session: nox.Session) -> None:
    """The full-size dask.distributed run: 1e8 queries against 1e5 knots on a 2-worker LocalCluster."""
    _install(session, *TEST, *by_name("dask").packages)
    env = {"KNOTSAFE_TEST_BACKENDS": "dask", "KNOTSAFE_CLUSTER_QUERIES": "100000000"}
    session.run("python", "-m", "pytest", *PYTEST, "tests/test_dask_cluster.py", *session.posargs, env=env)


BENCH_OUT = "build/benchmarks"  # ignored; ``-- --out benchmarks/results`` updates the committed results


@nox.session
def bench(session: nox.Session) -> None:
    """Side-by-side benchmarks against the peers (``-- --scale``: Dask workers and JAX devices, benchmarks/scale.py).

    Results go to build/benchmarks/ unless ``--out`` (and ``--plot``) say otherwise.
    """
    _install(session, *TEST, *ALL_PACKAGES, "torchinterp1d", "numba", "matplotlib")
    args = [a for a in session.posargs if a != "--scale"]
    out = () if any(a.startswith("--out") for a in args) else ("--out", BENCH_OUT)
    if "--scale" in session.posargs:
        session.run("python", "benchmarks/scale.py", *out, *args)
        return
    plot = () if any(a.startswith("--plot") for a in args) else ("--plot", f"{BENCH_OUT}/bench_scaling.png")
    session.run("python", "benchmarks/run.py", *out, *plot, *args)


# --- Documentation and release ---

DOCS_OUT = "build/docs"  # ignored (build/ in .gitignore)
DIST_OUT = "build/dist"

# Run where the wheel and its one dependency (array-api-compat) are installed and no array library is.
_IMPORT_CHECK = """
import importlib.metadata, importlib.util, sys
import knotsafe
frameworks = ("numpy", "jax", "torch", "array_api_strict", "cupy", "dask")
present = [m for m in frameworks if importlib.util.find_spec(m) is not None]
assert not present, f"the environment has {present}: the check would prove nothing"
assert knotsafe.__file__.startswith(sys.prefix), f"{knotsafe.__file__} is not the installed wheel"
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
    _install(session, "-e", ".[docs]")
    # -E: read every page again, so a warning in an unchanged page is not hidden by the cache.
    session.run("sphinx-build", "-W", "--keep-going", "-E", "-b", "html", "docs", DOCS_OUT, *session.posargs)
    session.log(f"open {DOCS_OUT}/index.html")


@nox.session
def build(session: nox.Session) -> None:
    """Build the sdist and wheel, check their metadata, import the wheel with no framework installed.

    The session's environment holds build and twine and no array library, so the wheel is installed
    into it (again on every run: a kept environment must not check an earlier build) and imported there.
    """
    import glob
    import shutil
    import tempfile

    uv = session.venv_backend == "uv"
    _install(session, "build[uv]" if uv else "build", "twine")
    shutil.rmtree(DIST_OUT, ignore_errors=True)
    if session.run("python", "-m", "build", *(("--installer", "uv") if uv else ()), "--outdir", DIST_OUT) is None:
        return  # --install-only: nothing was built, so there is nothing to check
    dists = sorted(glob.glob(f"{DIST_OUT}/*"))
    wheels = [d for d in dists if d.endswith(".whl")]
    if len(dists) != 2 or len(wheels) != 1:
        session.error(f"expected one sdist and one wheel in {DIST_OUT}, got {dists}")
    session.run("twine", "check", "--strict", *dists)
    _install(session, *(("--reinstall-package", "knotsafe") if uv else ("--force-reinstall",)), wheels[0])
    # Run from a temporary folder, so the import finds the installed wheel, not ./src.
    with tempfile.TemporaryDirectory() as tmp, session.chdir(tmp):
        session.run("python", "-c", _IMPORT_CHECK)


@nox.session
def mutation(session: nox.Session) -> None:
    """Mutation testing (mutmut 3) of the rule, every hooks module, the transforms and the data checks.

    Not in the default sessions.  ``tools/mutation/run.py`` mutates a copy of the tree, one module at a
    time, with the test files that exercise it, on the backends that reach it; ``nox -s mutation --
    rule hooks_jax_x64`` restricts it to some runs.  docs/mutation.md says how to read its report.
    """
    # Every framework of the table: the runs reach the hooks of NumPy, PyTorch, JAX, array-api-strict and Dask.
    _install(session, *TEST, *ALL_PACKAGES, "mutmut>=3.8")
    session.run("python", "tools/mutation/run.py", *session.posargs)


@nox.session(python="3.12", default=False)
def autolens(session: nox.Session) -> None:
    """knotsafe.autoarray inside real PyAutoLens fits (tools/autolens/check.py); not a default session.

    Python 3.12 (PyAutoLens needs it), autolens, numba and JAX pinned in constraints.txt; prints the
    table of docs/autolens.md and fails on any of the issue's assertions.  ``nox -s autolens --
    --bench`` then also runs benchmarks/autoarray_kernel.py (production size, several minutes), which
    rewrites benchmarks/results/autoarray_kernel.{json,md}; other arguments go to the check script.
    """
    from pathlib import Path

    root = Path(__file__).resolve().parent
    # autonerves (PyAutoLens' base) excludes the JAX that constraints.txt pins for the test sessions:
    # this session's constraints are the file's, with its "# autolens-session:" JAX pins instead.
    lines = (root / "constraints.txt").read_text().splitlines()
    marker = "# autolens-session: "
    pins = [line for line in lines if not line.startswith(("jax==", "jaxlib=="))]
    pins += [line.removeprefix(marker) for line in lines if line.startswith(marker)]
    constraints = Path(session.create_tmp()) / "constraints-autolens.txt"
    constraints.write_text("\n".join(pins) + "\n")
    session.install("-c", str(constraints), "autolens", "numba", "jax", "jaxlib", "-e", ".")
    args = [a for a in session.posargs if a != "--bench"]
    env = {
        "JAX_ENABLE_X64": "1",
        "JAX_PLATFORMS": "cpu",
        # The session's compiled programs, kept for the next run (the timed calls are compiled anyway).
        "JAX_COMPILATION_CACHE_DIR": str(root / ".nox" / "jax-cache-autolens"),
    }
    session.run("python", "tools/autolens/check.py", *args, env=env)
    if "--bench" in session.posargs:
        session.run("python", "benchmarks/autoarray_kernel.py", env=env)
