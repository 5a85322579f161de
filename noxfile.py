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
