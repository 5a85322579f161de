"""A real dask.distributed run: chunked queries on a 2-worker LocalCluster.

The queries are generated on the workers (never on the client), ``interp``
runs lazily against 1e5 knots with duplicates, and the test computes a
reduction over every output plus a random sample, which it checks against
``numpy.interp`` (bitwise: float64, the same elementwise operations).  Each
worker is a separate process with a memory limit; the test reads each
worker's peak resident set (``ru_maxrss``) afterwards and checks that no
worker went over its limit or was restarted.

Size: ``KNOTSAFE_CLUSTER_QUERIES`` queries (default 5e6, so that the default test
command stays short on 2 cores); ``nox -s tests-dask-cluster`` runs the full 1e8 (see
docs/scaling.md for the measured times).
"""

from __future__ import annotations

import os
import resource

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    "dask" not in (os.environ.get("KNOTSAFE_TEST_BACKENDS") or "dask"),
    reason="dask checks run in the dask session (KNOTSAFE_TEST_BACKENDS)",
)

N_QUERIES = int(float(os.environ.get("KNOTSAFE_CLUSTER_QUERIES", "5e6")))
N_KNOTS = 100_000
CHUNK = 2_500_000
MEMORY_LIMIT = 1536 * 2**20  # bytes per worker
N_SAMPLE = 10_000


def _peak_rss() -> int:
    """This process's peak resident set in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _pid() -> int:
    return os.getpid()


def test_interp_on_a_local_cluster_stays_within_worker_memory() -> None:
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    import knotsafe

    rng = np.random.default_rng(11)
    knots = np.sort(rng.uniform(-1.0, 1.0, N_KNOTS))
    knots[1000:1010] = knots[1000]  # exact duplicates
    knots[5000] = np.nextafter(knots[4999], np.inf)  # a one-ulp gap
    values = np.cumsum(rng.normal(size=N_KNOTS))

    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit=MEMORY_LIMIT,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        pids = client.run(_pid)
        x = da.random.default_rng(12).uniform(-1.1, 1.1, size=N_QUERIES, chunks=CHUNK)
        k = client.scatter(knots, broadcast=True)
        v = client.scatter(values, broadcast=True)
        out = knotsafe.interp(
            x, da.from_delayed(k, (N_KNOTS,), knots.dtype), da.from_delayed(v, (N_KNOTS,), values.dtype)
        )
        assert isinstance(out, da.Array)
        sample = np.sort(rng.choice(N_QUERIES, N_SAMPLE, replace=False))
        total, finite, x_s, out_s = dask.compute(out.sum(), da.isfinite(out).sum(), x[sample], out[sample])
        peaks = client.run(_peak_rss)
        assert client.run(_pid) == pids, "a worker was restarted (killed for memory?)"
    assert int(finite) == N_QUERIES
    assert np.isfinite(total)
    np.testing.assert_array_equal(out_s, np.interp(x_s, knots, values))
    for addr, peak in peaks.items():
        assert peak < MEMORY_LIMIT, f"worker {addr} peaked at {peak / 2**20:.0f} MiB > {MEMORY_LIMIT / 2**20:.0f} MiB"
