"""Import what serving runs without `torch._dynamo`, the compiler a classifier never uses.

Two module-level lines of torchvision import it, for code no classifier runs:
`torchvision.ops.roi_align` does `from torch._dynamo.utils import is_compile_supported`
(and every `import torchvision` imports it), and `torchvision.tv_tensors` decorates a
function with `@torch.compiler.disable` (which imports `torch._dynamo` to mark it). That
import is most of torchvision's import time and about 100 MiB of memory.

While serving's modules are imported, a meta-path finder hands out two small stand-ins
for `torch._dynamo` and `torch._dynamo.utils`; then it removes itself and them, so a later
`import torch._dynamo` by anything gets the real module. Installed files are never touched.
The stand-ins behave like the real names: `is_compile_supported` calls the real one, and
`disable` leaves a function as it is until the real `torch._dynamo` is imported (nothing
can compile before), then applies the real `disable`. Anything else asked of them drops
the stand-ins and returns the real thing, so a torchvision that uses more of
`torch._dynamo` only makes the import as slow as it is without this module
(tests/runtime/test_lean_imports.py fails loudly when it does).
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

PACKAGE = "torch._dynamo"
UTILS = "torch._dynamo.utils"


@contextmanager
def without_dynamo() -> Iterator[None]:
    """Imports made inside get stand-ins for `torch._dynamo`; no-op if it is imported already."""
    if PACKAGE in sys.modules:
        yield
        return
    stand_ins = _DynamoStandIns()
    # A new list, not an insert: another thread may be iterating the old one in an import.
    sys.meta_path = [stand_ins, *sys.meta_path]
    try:
        yield
    finally:
        stand_ins.remove()


class _DynamoStandIns(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finder and loader of the stand-ins; `remove` puts everything back as it was."""

    def __init__(self) -> None:
        self.modules: dict[str, types.ModuleType] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in (PACKAGE, UTILS):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=fullname == PACKAGE)
        if fullname.startswith(PACKAGE + "."):  # a submodule the stand-in package cannot provide
            return importlib.machinery.ModuleSpec(fullname, _RealModule(self))
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name, "A stand-in; see lambda_src.lean_imports.")
        module.__getattr__ = self._real_attribute(spec.name)  # type: ignore[method-assign]
        if spec.name == PACKAGE:
            module.disable = self._disable  # type: ignore[attr-defined]
        else:
            module.is_compile_supported = self._is_compile_supported  # type: ignore[attr-defined]
        self.modules[spec.name] = module
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: `create_module` made the stand-in complete."""

    def real(self, name: str) -> types.ModuleType:
        """The real module `name`, the stand-ins gone for good."""
        self.remove()
        return importlib.import_module(name)

    def remove(self) -> None:
        """Stop handing out stand-ins and forget the ones handed out (idempotent)."""
        if self in sys.meta_path:
            sys.meta_path = [finder for finder in sys.meta_path if finder is not self]
        for name, module in self.modules.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
        stand_in = self.modules.get(PACKAGE)
        torch = sys.modules.get("torch")
        if stand_in is not None and torch is not None and torch.__dict__.get("_dynamo") is stand_in:
            del torch._dynamo  # torch's module __getattr__ imports the real one on first use

    def _real_attribute(self, module_name: str) -> Callable[[str], Any]:
        def __getattr__(name: str) -> Any:
            if name.startswith("__"):  # the import system probing the module (__path__, __file__...)
                raise AttributeError(name)
            return getattr(self.real(module_name), name)

        return __getattr__

    def _is_compile_supported(self, device_type: str) -> bool:
        return bool(self.real(UTILS).is_compile_supported(device_type))

    def _disable(
        self, fn: Callable[..., Any] | None = None, recursive: bool = True, *, reason: str | None = None
    ) -> Any:
        if fn is None:  # used as @disable(recursive=...)
            return functools.partial(self._disable, recursive=recursive, reason=reason)
        disabled: Callable[..., Any] | None = None

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            nonlocal disabled
            dynamo = sys.modules.get(PACKAGE)
            if dynamo is None or dynamo is self.modules.get(PACKAGE):
                return fn(*args, **kwargs)  # no compiler loaded, so nothing to disable
            if disabled is None:
                disabled = dynamo.disable(fn, recursive, reason=reason)
            return disabled(*args, **kwargs)

        return call


class _RealModule(importlib.abc.Loader):
    """Loads a submodule of `torch._dynamo` as the real one, after dropping the stand-ins."""

    def __init__(self, stand_ins: _DynamoStandIns) -> None:
        self.stand_ins = stand_ins
        self.real_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = self.stand_ins.real(spec.name)
        self.real_spec = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        if module.__spec__ is not self.real_spec:  # the import system gave it this loader's spec
            module.__spec__ = self.real_spec
