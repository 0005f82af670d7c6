"""Hooks: the one interception lifecycle every attention reader and perturber of i2am is built on.

A ``Hooks`` records each change it makes to a model or a module so that ``restore()`` undoes all of them, newest
first, leaving every processor, method, module attribute and hook list exactly as it was (the very same objects).
Three kinds of change:

- ``processor(attention, wrapper)``: the attention module runs ``wrapper`` (given its current processor) instead;
- ``replace(owner, name, value)``: an attribute of an object or a Python module (an instance's method, a backend
  function such as diffusers' ``dispatch_attention_fn``) becomes ``value``; an attribute the instance did not hold
  itself (a class's method) is deleted again rather than copied onto the instance;
- ``hook(module, fn, pre=..., with_kwargs=...)``: a forward (pre-)hook, returned as its removable handle.

Used as a context manager (or through ``activate(install)`` and ``restore()``), it restores on a normal exit and
after an exception, also when installation itself fails half-way. Replacing the same attribute or processor twice
in one ``Hooks`` is refused, since the second change would hide the first from the restoration; restoring twice
does nothing the second time. Nesting is fine: each reader keeps its own ``Hooks`` and wraps what the enclosing one
installed.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

_MISSING = object()


class Hooks:
    """A stack of installed interceptions, undone in reverse order by ``restore()`` (see the module docstring).

    ``owner``: the name of who installs them (e.g. "AttributionCapture"), for the errors.
    """

    def __init__(self, owner: str = "hooks"):
        self.owner = owner
        self._undo: list[Callable[[], None]] = []
        self._targets: set[tuple[int, str]] = set()
        self._active = False

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> Hooks:
        if self._active:
            raise RuntimeError(f"this {self.owner} is already active")
        self._active = True
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def activate(self, install: Callable[[Hooks], None]) -> None:
        """Enter and run ``install(self)``; if it raises, what it installed so far is restored first."""
        self.__enter__()
        try:
            install(self)
        except BaseException:
            self.restore()
            raise

    @property
    def installed(self) -> int:
        """How many changes are in place."""
        return len(self._undo)

    def restore(self) -> None:
        """Undo every change, newest first; every undo runs even if an earlier one raised (its error is raised)."""
        error = None
        while self._undo:
            try:
                self._undo.pop()()
            except Exception as exc:   # noqa: BLE001 - keep unwinding, then report the first failure
                error = error or exc
        self._targets.clear()
        self._active = False
        if error is not None:
            raise error

    # ---------------------------------------------------------------- installation
    def _claim(self, owner: Any, name: str) -> None:
        key = (id(owner), name)
        if key in self._targets:
            raise RuntimeError(f"{type(owner).__name__}.{name} is intercepted twice by one {self.owner}; "
                               f"install each target once")
        self._targets.add(key)

    def replace(self, owner: Any, name: str, value: Any) -> Any:
        """Set ``owner.name = value``; returns what ``owner.name`` gave before (e.g. the bound method or the
        original backend function, for ``value`` to call)."""
        self._claim(owner, name)
        previous = getattr(owner, name)
        own = vars(owner).get(name, _MISSING)

        def undo():
            if own is _MISSING:   # gone already if an inner wrapper deleted the instance attribute: nothing to do
                vars(owner).pop(name, None)
            else:
                setattr(owner, name, own)

        setattr(owner, name, value)
        self._undo.append(undo)
        return previous

    def processor(self, attention: nn.Module, wrap: Callable[[Any], Any]) -> Any:
        """Give a diffusers ``Attention`` module the processor ``wrap(current processor)``; returns the current one.
        ``set_processor`` is used both ways, so a processor that is a submodule (IP-Adapter) is registered again."""
        self._claim(attention, "processor")
        original = attention.processor
        attention.set_processor(wrap(original))
        self._undo.append(lambda: attention.set_processor(original))
        return original

    def hook(self, module: nn.Module, fn: Callable, *, pre: bool = False, with_kwargs: bool = False,
             prepend: bool = False):
        """Register ``fn`` as a forward hook (``pre=True``: a forward pre-hook) of ``module``; returns its handle,
        which may also be removed earlier (removal is idempotent). ``prepend``: run before the hooks already
        registered (e.g. to tell a capture entered earlier about the call)."""
        register = module.register_forward_pre_hook if pre else module.register_forward_hook
        handle = register(fn, with_kwargs=with_kwargs, prepend=prepend)
        self._undo.append(handle.remove)
        return handle
