"""Backend drivers: how the suite makes arrays, reads them back and drives autodiff.

A *backend spec* is a built-in name (``numpy``, ``array_api_strict``, ``jax``,
``jax-x32``, ``torch``) or the module name of a third-party array namespace
(``python -m conformance --backend some.module``).  Framework-specific code is
confined to this module and to the autodiff driver it shares with the test
suite (``tests/_support.AutoDiff``): the properties themselves are written once.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import array_api_compat as compat
import numpy as np

from tests._support import AUTODIFF, AutoDiff
from tests.backend_table import BACKENDS

Array = Any


BUILTINS = tuple(spec for b in BACKENDS for spec in b.conformance)
#: Specs that change process-wide state (a hooks registration) and so run in a process of their own.
ISOLATED = ("torch-generic",)
#: The hooks name the torch-generic spec registers: PyTorch through the generic stop_gradient path.
GENERIC_HOOKS = "torch_generic_stop_gradient"
#: The third-party namespace this suite ships (conformance/plugin), checked by default when installed.
DEMO_PLUGIN = "knotsafe_conformance_plugin.xp"
#: Built-ins whose framework must be importable, by spec.
_REQUIRES = {spec: b.module for b in BACKENDS for spec in b.conformance}
DTYPES = ("float64", "float32")


def label_of(spec: str) -> str:
    """The table column for a backend spec."""
    return {"jax": "jax (x64)", "jax-x32": "jax (x32)", "torch-generic": "torch (generic hooks)"}.get(spec, spec)


def newest_strict_api_version() -> str:
    """The newest (non-draft) standard version array-api-strict supports."""
    import array_api_strict

    try:
        from array_api_strict._flags import supported_versions

        return str(max(supported_versions))
    except ImportError:  # pragma: no cover - layout of older releases
        return str(array_api_strict.__array_api_version__)


@dataclass
class Driver:
    """One backend as the suite sees it."""

    spec: str
    label: str
    xp: ModuleType  # the namespace knotsafe resolves for this backend's arrays
    device: Any  # where the suite puts its inputs
    devices: tuple[Any, ...]  # every device the device property checks
    dtypes: tuple[str, ...]  # dtypes this backend can compute in here
    missing_dtype_reason: dict[str, str] = field(default_factory=dict)
    autodiff: AutoDiff | None = None  # the tests' driver (tests/_support.py) or None
    no_autodiff_reason: str = "n/a: no autodiff"
    expected_hooks: str | None = None  # BackendHooks.name hooks_for must return
    config_note: str = ""

    # -- arrays -------------------------------------------------------------
    def asarray(self, a: Any, dtype: str, device: Any = None) -> Array:
        """NumPy data as a backend array of ``dtype`` on ``device`` (default: the driver's)."""
        data = np.asarray(a, dtype=dtype)
        dev = self.device if device is None else device
        if self.spec in ("jax", "jax-x32"):
            import jax

            return jax.device_put(self.xp.asarray(data), dev)
        if self.spec == "torch":
            import torch

            return torch.asarray(data, device=dev)
        if self.spec == "numpy":
            return data
        return self.xp.asarray(data, device=dev)

    def to_numpy(self, a: Array) -> np.ndarray:
        """A backend array's values as NumPy (float arrays as float64 copies are not made)."""
        if self.spec == "torch":
            return np.asarray(a.detach().cpu().numpy())
        if self.spec in ("numpy", "jax", "jax-x32"):
            return np.asarray(a)
        try:
            return np.asarray(np.from_dlpack(a))
        except Exception:
            pass
        # Devices that do not export (array-api-strict's virtual devices): copy
        # to the first device that does.
        for dev in self.devices:
            try:
                return np.asarray(np.from_dlpack(a.to_device(dev)))
            except Exception:
                continue
        raise TypeError(f"cannot read {type(a).__name__} back into NumPy")

    def device_of(self, a: Array) -> Any:
        return compat.device(a)

    def dtype(self, name: str) -> Any:
        if self.spec == "numpy":
            return np.dtype(name)
        return getattr(self.xp, name)

    @property
    def framework(self) -> str | None:
        """Whose autodiff :attr:`autodiff` drives: "jax", "torch" or None."""
        return None if self.autodiff is None else self.autodiff.name

    def stack(self, arrays: Sequence[Array]) -> Array:
        return self.xp.stack(list(arrays))


def available(spec: str) -> str | None:
    """None when the backend can run here, else the reason it cannot."""
    if spec in BUILTINS:
        mod = _REQUIRES[spec]
        return None if importlib.util.find_spec(mod) is not None else f"{mod} is not installed"
    try:
        found = importlib.util.find_spec(spec)
    except ModuleNotFoundError:
        found = None
    return None if found is not None else f"module {spec!r} is not importable"


def make_driver(spec: str) -> Driver:
    """Build the driver for a backend spec (imports its framework)."""
    label = label_of(spec)
    both = DTYPES
    if spec == "numpy":
        import array_api_compat.numpy as cnp

        return Driver(spec, label, cnp, "cpu", ("cpu",), both, expected_hooks="numpy")
    if spec == "array_api_strict":
        import array_api_strict as xp

        version = newest_strict_api_version()
        xp.set_array_api_strict_flags(api_version=version)
        devices = tuple(xp.__array_namespace_info__().devices())
        return Driver(
            spec,
            label,
            xp,
            xp.Device("device1"),
            devices,
            both,
            expected_hooks="array_api_strict",
            config_note=f"api_version={version}, inputs on Device('device1')",
        )
    if spec in ("jax", "jax-x32"):
        import jax

        want_x64 = spec == "jax"
        if bool(jax.config.read("jax_enable_x64")) != want_x64:
            jax.config.update("jax_enable_x64", want_x64)
        import jax.numpy as jnp

        dev = jax.devices()[0]
        dtypes = both if want_x64 else ("float32",)
        missing = {} if want_x64 else {"float64": "n/a: float64 needs JAX_ENABLE_X64=1 (see jax (x64))"}
        note = (
            "JAX_ENABLE_X64=1"
            if want_x64
            else "JAX_ENABLE_X64=0: float32 only (the float64 rows are measured in jax (x64))"
        )
        return Driver(
            spec,
            label,
            jnp,
            dev,
            tuple(jax.devices()),
            dtypes,
            missing,
            AUTODIFF["jax"],
            expected_hooks="jax",
            config_note=note,
        )
    if spec == "torch":
        import array_api_compat.torch as ctorch
        import torch

        torch.set_default_dtype(torch.float32)
        cpu = torch.device("cpu")
        return Driver(spec, label, ctorch, cpu, (cpu,), both, autodiff=AUTODIFF["torch"], expected_hooks="torch")
    if spec == "torch-generic":
        # The path every registered autodiff backend takes: hooks with only
        # stop_gradient and differentiable=True, so interp goes through
        # knotsafe.backends.generic_linearize (and the generic searchsorted,
        # take, scatter-add) instead of the native torch.autograd.Function.
        import array_api_compat.torch as ctorch
        import torch

        from knotsafe.backends import BackendHooks, register

        torch.set_default_dtype(torch.float32)
        register(
            GENERIC_HOOKS,
            BackendHooks(GENERIC_HOOKS, differentiable=True, stop_gradient=lambda a: a.detach()),
            matches=compat.is_torch_namespace,
        )
        cpu = torch.device("cpu")
        note = "PyTorch with hooks registered as a third-party autodiff backend would: only stop_gradient (detach)"
        return Driver(
            spec,
            label,
            ctorch,
            cpu,
            (cpu,),
            both,
            autodiff=AUTODIFF["torch"],
            expected_hooks=GENERIC_HOOKS,
            config_note=note,
        )
    # A third-party namespace module.
    xp = importlib.import_module(spec)
    info = xp.__array_namespace_info__()
    dev = info.default_device()
    floats = info.dtypes(device=dev, kind="real floating")
    dtypes = tuple(d for d in DTYPES if d in floats)
    missing = {d: f"n/a: {spec} has no {d} on {dev!r}" for d in DTYPES if d not in dtypes}
    from knotsafe.backends import hooks_for

    hooks = hooks_for(compat.array_namespace(xp.asarray(0.0, device=dev)))
    reason = (
        "n/a: no autodiff (hooks.differentiable=False)"
        if not hooks.differentiable
        else "n/a: the suite drives only JAX and PyTorch autodiff"
    )
    return Driver(
        spec,
        label,
        xp,
        dev,
        tuple(info.devices()),
        dtypes,
        missing,
        None,
        reason,
        expected_hooks=None,
        config_note=f"third-party namespace, inputs on {dev!r}",
    )


def process_env(x64: bool) -> dict[str, str]:
    """Environment of a pytest subprocess (JAX reads JAX_ENABLE_X64 at import)."""
    env = dict(os.environ)
    env["JAX_ENABLE_X64"] = "1" if x64 else "0"
    return env
