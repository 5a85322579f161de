"""Sessions: one test session per backend (same suite), lint, demo, example, conformance, bench.

The backends come from one table, ``tests/backend_table.py`` (loaded by path:
nox's own interpreter needs no numpy).  Sessions that need the same frameworks
share one virtualenv under ``.nox/_env-<name>`` (PyTorch is installed once, not
once per session); each is rebuilt only when its requirements,
``constraints.txt`` or ``pyproject.toml`` change.  knotsafe itself is installed
editable, so the shared environments always test the working tree.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("knotsafe_backend_table", ROOT / "tests" / "backend_table.py")
assert _spec is not None and _spec.loader is not None
TABLE = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(TABLE)

nox.options.sessions = [
    "tests-numpy",
    "tests-jax",
    "tests-torch",
    "tests-strict",
    "tests-dask",
    "conformance",
    "lint",
]
nox.options.reuse_existing_virtualenvs = True

PIN = ("-c", "constraints.txt")
#: Shared environments: name -> what is installed besides knotsafe (editable).
#: Each test session runs in its backend's ``env`` from the table, which holds
#: ``.[test]`` and the packages of every backend sharing it ("base" has no
#: framework beyond NumPy and array-api-strict).  "all" has every framework,
#: for the sessions that compare them (conformance, demo, example, bench) and
#: for the test session of the backend whose env it is (PyTorch: installed once).
ENVS: dict[str, tuple[str, ...]] = {}
for _b in TABLE.BACKENDS:
    ENVS.setdefault(_b["env"], (".[test]",))
    ENVS[_b["env"]] += tuple(_b["packages"])
ENVS["all"] = (
    *ENVS.get("all", (".[test]",)),
    *(p for b in TABLE.BACKENDS if b["env"] != "all" for p in b["packages"]),
    "./conformance/plugin",
    "matplotlib",
)
ENVS["lint"] = ("ruff", "mypy", "numpy", "array-api-compat")
#: pytest options for every test run: no cache folder written into the clone.
PYTEST = ("-p", "no:cacheprovider")
#: Test sessions run on two pytest-xdist workers (``-- -n0`` after the session name runs them in
#: one process).  ``worksteal``: the test files differ a lot in cost, and an idle worker takes over
#: the rest of another's queue.
XDIST = ("-n", "2", "--dist", "worksteal")
#: JAX's persistent compilation cache, in the ignored .nox/ folder: JAX compiles every operation
#: for every new shape and dtype (about 0.1 s of CPU each on a small machine), and the same
#: compilations recur in the other xdist worker, the 8-device sharding subprocess and the
#: conformance session (every program is cached: ``jax_cache_env`` in tests/backend_table.py).
#: Delete .nox/jax-cache to start from nothing.
JAX_CACHE = TABLE.jax_cache_env(ROOT / ".nox" / "jax-cache")


def _install(session: nox.Session, *packages: str) -> None:
    """Install into the session's own environment (docs, build, mutation), with the pins."""
    session.install(*PIN, *packages)


def _env_python(session: nox.Session, env: str) -> str:
    """The interpreter of shared environment ``env``, created or updated as needed."""
    where = ROOT / ".nox" / f"_env-{env}"
    python = where / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    reqs = list(ENVS[env])
    stamp = hashlib.sha256(
        json.dumps(reqs).encode()
        + (ROOT / "constraints.txt").read_bytes()
        + (ROOT / "pyproject.toml").read_bytes()
        + (ROOT / "conformance" / "plugin" / "pyproject.toml").read_bytes()
    ).hexdigest()
    stamp_file = where / "knotsafe-requirements.sha256"
    if python.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return str(python)
    if where.exists():
        shutil.rmtree(where)
    session.run(sys.executable, "-m", "venv", str(where), external=True)
    editable = [r for r in reqs if r.startswith(".[")]
    others = [r for r in reqs if not r.startswith(".[")]
    session.run(str(python), "-m", "pip", "install", "-q", *PIN, *others, external=True)
    for e in editable:
        session.run(str(python), "-m", "pip", "install", "-q", *PIN, "-e", e, external=True)
    stamp_file.write_text(stamp)
    return str(python)


def _with_callers_flags(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the caller's own XLA_FLAGS after the session's (a later flag wins in XLA)."""
    if "XLA_FLAGS" in env and os.environ.get("XLA_FLAGS"):
        return {**env, "XLA_FLAGS": f"{env['XLA_FLAGS']} {os.environ['XLA_FLAGS']}"}
    return env


def _test_session(backend: dict[str, object]) -> None:
    name = str(backend["name"])

    def run(session: nox.Session) -> None:
        python = _env_python(session, str(backend["env"]))
        for extra in backend["env_runs"]:  # type: ignore[attr-defined]
            env = {"KNOTSAFE_TEST_BACKENDS": name, **JAX_CACHE, **_with_callers_flags(backend["test_env"]), **extra}
            session.run(python, "-m", "pytest", *PYTEST, *XDIST, *session.posargs, env=env, external=True)

    runs = " and ".join(" ".join(f"{k}={v}" for k, v in e.items()) or "once" for e in backend["env_runs"])  # type: ignore[attr-defined]
    run.__doc__ = f"The test suite on the {name} backend ({runs})."
    nox.session(name=f"tests-{backend['session']}", venv_backend="none")(run)


for _backend in TABLE.BACKENDS:
    _test_session(_backend)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff (lint and format check) on every folder; mypy (strict) on src/knotsafe."""
    python = _env_python(session, "lint")
    paths = ("src", "tests", "conformance", "benchmarks", "examples", "docs", "noxfile.py")
    session.run(python, "-m", "ruff", "check", *paths, external=True)
    session.run(python, "-m", "ruff", "format", "--check", *paths, external=True)
    session.run(python, "-m", "mypy", "src/knotsafe", external=True)


@nox.session(venv_backend="none")
def demo(session: nox.Session) -> None:
    """The duplicate-knot scenario on every backend, beside plain interp and stop_gradient+jitter."""
    python = _env_python(session, "all")
    session.run(python, "examples/demo.py", *session.posargs, env={"JAX_ENABLE_X64": "1"}, external=True)


@nox.session(venv_backend="none")
def example(session: nox.Session) -> None:
    """Lens reconstruction on the adaptive rectangular mesh; writes a figure."""
    python = _env_python(session, "all")
    session.run(python, "examples/lens_reconstruction.py", *session.posargs, env={"JAX_ENABLE_X64": "1"}, external=True)


@nox.session(venv_backend="none")
def conformance(session: nox.Session) -> None:
    """The backend conformance suite (default hypothesis example counts); writes the table to build/conformance/.

    Also runs the JAX == PyTorch tests: this is the one environment with both frameworks.
    """
    python = _env_python(session, "all")
    session.run(python, "-m", "conformance", *session.posargs, env=JAX_CACHE, external=True)
    cross = (
        "tests/test_cross_backend.py",
        "tests/test_rectangular.py::test_jax_and_torch_gradients_agree",
        "tests/test_second_order.py::test_jax_and_torch_hessians_agree",
    )
    env = {"JAX_ENABLE_X64": "1", "KNOTSAFE_REQUIRE_CROSS_BACKEND": "1", **JAX_CACHE}
    session.run(python, "-m", "pytest", *PYTEST, *cross, env=env, external=True)


@nox.session(name="conformance-full", venv_backend="none", default=False)
def conformance_full(session: nox.Session) -> None:
    """The conformance suite with 20x the default hypothesis examples per fuzz test and random seeds."""
    python = _env_python(session, "all")
    args = ("--fuzz-examples", "240", "--fuzz-random")
    session.run(python, "-m", "conformance", *args, *session.posargs, env=JAX_CACHE, external=True)


@nox.session(name="tests-dask-cluster", venv_backend="none", default=False)
def tests_dask_cluster(session: nox.Session) -> None:
    """The full-size dask.distributed run: 1e8 queries against 1e5 knots on a 2-worker LocalCluster."""
    python = _env_python(session, "dask")
    env = {"KNOTSAFE_TEST_BACKENDS": "dask", "KNOTSAFE_CLUSTER_QUERIES": "100000000"}
    session.run(python, "-m", "pytest", *PYTEST, "tests/test_dask_cluster.py", *session.posargs, env=env, external=True)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Side-by-side benchmarks against the peers (``-- --scale``: Dask workers and JAX devices, benchmarks/scale.py)."""
    python = _env_python(session, "all")
    if "--scale" in session.posargs:
        rest = [a for a in session.posargs if a != "--scale"]
        session.run(python, "benchmarks/scale.py", *rest, external=True)
        return
    session.run(python, "-m", "pip", "install", "-q", *PIN, "torchinterp1d", external=True)
    session.run(python, "benchmarks/run.py", *session.posargs, external=True)


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
    """Mutation testing (mutmut 3) of the rule, every hooks module, the transforms and the data checks.

    Not in the default sessions.  ``tests/mutation_run.py`` runs one module at a time, each with only
    the test files that exercise it, on the backends that reach it (JAX hooks: x64 and x32 runs), with
    ``-x``; ``nox -s mutation -- rule hooks_jax_x64`` restricts it to some runs.  Every mutant's status
    and each survivor's diff go to build/mutation/report.txt (ignored by git); docs/mutation.md
    explains every survivor.
    """
    # Every backend of the table: the runs reach the hooks of NumPy, PyTorch, JAX, array-api-strict and Dask.
    _install(session, ".[test]", *(p for b in TABLE.BACKENDS for p in b["packages"]), "mutmut>=3.8")
    session.run("python", "tests/mutation_run.py", *session.posargs)


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
