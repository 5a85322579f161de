"""A third-party array namespace for knotsafe's conformance suite.

:mod:`knotsafe_conformance_plugin.xp` is array-api-strict under its own name:
its arrays answer ``__array_namespace__`` with the plugin module, so
``array_api_compat.array_namespace`` resolves them to it, no built-in knotsafe
backend matches, and knotsafe finds the hooks only through the
``knotsafe.backends`` entry point this package declares
(:func:`knotsafe_conformance_plugin.hooks.make_hooks`).

Check it with ``python -m conformance --backend knotsafe_conformance_plugin.xp``.
"""

__all__ = ["HOOKS_NAME", "NAMESPACE"]

#: The namespace module's ``__name__``, which is also the entry-point name.
NAMESPACE = "knotsafe_conformance_plugin.xp"
#: The ``BackendHooks.name`` the entry point returns.
HOOKS_NAME = "knotsafe_conformance_plugin"
