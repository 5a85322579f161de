"""knotsafe backend hooks for :mod:`knotsafe_conformance_plugin.xp` (the entry point's value)."""

from __future__ import annotations

from typing import Any

from knotsafe_conformance_plugin import HOOKS_NAME


def make_hooks() -> Any:
    """Build the hooks: the generic standard-only ones, with a call counter on searchsorted.

    The counter (``hooks.extras["calls"]``) lets the conformance suite prove that
    knotsafe really computes through these hooks, and the namespace check that
    it hands them the plugin namespace, not array-api-strict's.
    """
    from knotsafe.backends import BackendHooks, generic_searchsorted
    from knotsafe_conformance_plugin import xp as plugin_xp

    calls = {"searchsorted": 0}

    def searchsorted(xp: Any, knots: Any, x: Any) -> Any:
        if xp is not plugin_xp:
            raise TypeError(f"{HOOKS_NAME} hooks called with namespace {getattr(xp, '__name__', xp)!r}")
        calls["searchsorted"] += 1
        return generic_searchsorted(xp, knots, x)

    return BackendHooks(HOOKS_NAME, searchsorted=searchsorted, extras={"calls": calls})
