"""pytest plumbing of the conformance suite.

* ``--conformance-backends=numpy,jax,...`` picks the backends (built-in names or
  third-party namespace modules); every test taking ``backend`` runs once per
  backend and ``dtype`` once per float dtype.
* ``@pytest.mark.prop("key")`` names the table row a test measures (``{dtype}``
  is filled in); the ``cell`` fixture is that (backend, property) cell.
* A ``makereport`` hook folds each test outcome into its cell: a failure turns
  the cell red with the failure message, a skip becomes an "n/a: reason"; the
  session writes every cell to ``--conformance-json`` for the runner.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from conformance._backends import BUILTINS, DTYPES, Driver, available, label_of, make_driver
from conformance._record import RECORDER, Cell

_drivers: dict[str, Driver] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance")
    group.addoption("--conformance-backends", default=",".join(BUILTINS), help="comma-separated backend specs")
    group.addoption("--conformance-json", default=None, help="write the measured cells to this JSON file")
    group.addoption("--fuzz-examples", type=int, default=12, help="hypothesis examples per fuzz test")
    group.addoption("--fuzz-random", action="store_true", help="random hypothesis seeds (default: derandomized)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "prop(key): the conformance-table property this test measures")
    # PyTorch's own performance notices under torch.func (vmap fallbacks, contiguity copies) are raised
    # from inside knotsafe's frames, where the project's pytest settings make UserWarnings errors.
    for text in ("There is a performance drop", "torch.searchsorted\\(\\)"):
        config.addinivalue_line("filterwarnings", f"ignore:{text}:UserWarning")
    settings.register_profile(
        "conformance",
        max_examples=config.getoption("--fuzz-examples"),
        derandomize=not config.getoption("--fuzz-random"),
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )
    settings.load_profile("conformance")


def _specs(config: pytest.Config) -> list[str]:
    raw = config.getoption("--conformance-backends")
    return [s.strip() for s in raw.split(",") if s.strip()]


def pytest_report_header(config: pytest.Config) -> str:
    x64 = os.environ.get("JAX_ENABLE_X64", "0")
    return f"conformance backends: {', '.join(_specs(config))} (JAX_ENABLE_X64={x64})"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        specs = _specs(metafunc.config)
        metafunc.parametrize("backend", specs, ids=[label_of(s) for s in specs], indirect=True, scope="session")
    if "dtype" in metafunc.fixturenames:
        metafunc.parametrize("dtype", DTYPES, indirect=True)


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> Driver:
    spec = request.param
    if spec not in _drivers:
        reason = available(spec)
        if reason is not None:
            pytest.skip(f"n/a: {reason}")
        drv = make_driver(spec)
        _drivers[spec] = drv
        RECORDER.backend_notes[drv.label] = drv.config_note
    return _drivers[spec]


@pytest.fixture
def dtype(request: pytest.FixtureRequest, backend: Driver) -> str:
    name = str(request.param)
    if name not in backend.dtypes:
        pytest.skip(backend.missing_dtype_reason.get(name, f"n/a: no {name}"))
    return name


@pytest.fixture
def autodiff(backend: Driver) -> Driver:
    """The backend, when the suite can drive its autodiff; n/a otherwise."""
    if backend.autodiff is None:
        pytest.skip(backend.no_autodiff_reason)
    return backend


def _cell_key(item: pytest.Item) -> tuple[str, str] | None:
    marker = item.get_closest_marker("prop")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None or "backend" not in callspec.params:
        return None
    key = str(marker.args[0]).format(dtype=callspec.params.get("dtype", ""))
    return label_of(callspec.params["backend"]), key


@pytest.fixture
def cell(request: pytest.FixtureRequest) -> Cell:
    key = _cell_key(request.node)
    if key is None:
        raise RuntimeError(f"{request.node.nodeid}: `cell` needs @pytest.mark.prop and the backend fixture")
    return RECORDER.cell(*key)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    outcome = yield
    rep = outcome.get_result()
    key = _cell_key(item)
    if key is None:
        return
    cell = RECORDER.cell(*key)
    if rep.skipped:
        longrepr = rep.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        if "dtype" in item.callspec.params and not reason.startswith("n/a"):
            reason = f"{item.callspec.params['dtype']}: {reason}"
        cell.na.append(reason)
    elif rep.failed:
        cell.failed_tests += 1
        if call.excinfo is not None:
            msg = str(call.excinfo.value).strip().splitlines()
            first = msg[0] if msg else call.excinfo.typename
            dtype = item.callspec.params.get("dtype")
            prefix = f"{dtype}: " if dtype else ""
            if call.excinfo.typename not in ("Failed", "AssertionError"):
                first = f"{call.excinfo.typename}: {first}"
            cell.note(prefix + first[:400])
    elif rep.when == "call":
        cell.passed_tests += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--conformance-json")
    if path:
        RECORDER.dump(path)
