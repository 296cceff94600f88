"""While a student's function is graded, the library's own version of the same concept is unavailable.

Every exercise asks for something the library already implements. A checker that compares the
student's function with the library would pass an answer that just calls the library, so each checker
runs the student's function inside

    with library_unavailable("leave_one_out_baseline", ["reinforce_edu.core.baselines.LeaveOneOutBaseline"]):
        got = fn(...)

which replaces the named objects by a stub that raises `LibraryUnavailableError` ("this exercise asks
you to write leave_one_out_baseline yourself ..."): in their home module, in every `reinforce_edu`
module that imported them, in `__main__` (a notebook's namespace) and in the globals of every frame
on the call stack (a grade cell run by `exec`), and in the closure of the student's function. A module imported during the call (`from ... import`
inside the student's function) is patched as soon as it is imported. Everything is restored on exit,
so the checker computes its reference answer with the real library before or after.

A new exercise module uses it in one line: ``_run(..., forbid=["reinforce_edu.module.name"])``
(`reinforce_edu.teaching.feedback._run`), or the context manager above around its own call.
"""

from __future__ import annotations

import builtins
import importlib
import sys
from contextlib import contextmanager
from typing import Iterator, Sequence

from reinforce_edu.teaching.feedback import ExerciseError


class LibraryUnavailableError(ExerciseError):
    """The student's function called the library implementation of the concept it is asked to write."""


class _Blocked:
    """Stands in for a library object while an exercise is graded: calling it (or its attributes) raises."""

    def __init__(self, exercise: str, target: str) -> None:
        self._message = (f"this exercise asks you to write {exercise} yourself: the library's {target} is "
                         f"unavailable while {exercise} is graded. Write it from the formula in the exercise text.")

    def __call__(self, *args, **kwargs):
        raise LibraryUnavailableError(self._message)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise LibraryUnavailableError(self._message)

    def __repr__(self) -> str:
        return "<unavailable while graded>"


def _resolve(target: str) -> tuple[str, str, object] | None:
    """'pkg.module.name' -> (module name, attribute, object), or None when its module is not imported yet."""
    module_name, _, attr = target.rpartition(".")
    module = sys.modules.get(module_name)
    if module is None or not hasattr(module, attr):
        return None
    return module_name, attr, getattr(module, attr)


def _namespaces() -> Iterator[dict]:
    """Module dicts of reinforce_edu.* and __main__, and the globals of every frame on the stack."""
    seen: set[int] = set()
    for name, module in list(sys.modules.items()):
        if module is not None and (name == "__main__" or name.startswith("reinforce_edu")):
            ns = getattr(module, "__dict__", None)
            if ns is not None and id(ns) not in seen:
                seen.add(id(ns))
                yield ns
    frame = sys._getframe(1)
    while frame is not None:
        if id(frame.f_globals) not in seen:
            seen.add(id(frame.f_globals))
            yield frame.f_globals
        frame = frame.f_back


class _Patcher:
    def __init__(self, exercise: str, targets: Sequence[str], functions: Sequence[object] = ()) -> None:
        self.exercise, self.targets, self.functions = exercise, list(targets), list(functions)
        self.saved: list[tuple[object, str, object]] = []  # (namespace dict or closure cell, key, original)
        self.stubs: dict[int, _Blocked] = {}  # id(original) -> its stub

    def apply(self) -> None:
        for target in self.targets:
            found = _resolve(target)
            if found is not None and id(found[2]) not in self.stubs and not isinstance(found[2], _Blocked):
                self.stubs[id(found[2])] = _Blocked(self.exercise, target)
        if not self.stubs:
            return
        for ns in _namespaces():
            for key, value in list(ns.items()):
                stub = self.stubs.get(id(value))
                if stub is not None:
                    self.saved.append((ns, key, value))
                    ns[key] = stub
        for fn in self.functions:
            self._patch_closure(fn, depth=3)

    def _patch_closure(self, fn: object, depth: int) -> None:
        """Library objects captured in the closure of the student's function (and of functions it captured)."""
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            stub = self.stubs.get(id(value))
            if stub is not None:
                self.saved.append((cell, "", value))
                cell.cell_contents = stub
            elif depth > 0 and callable(value) and hasattr(value, "__closure__"):
                self._patch_closure(value, depth - 1)

    def restore(self) -> None:
        for ns, key, value in reversed(self.saved):
            if isinstance(ns, dict):
                ns[key] = value
            else:
                ns.cell_contents = value
        self.saved.clear()


@contextmanager
def library_unavailable(exercise: str, targets: Sequence[str], functions: Sequence[object] = ()) -> Iterator[None]:
    """Inside the block, each dotted `targets` object raises `LibraryUnavailableError` naming `exercise`.

    `functions`: the student's functions, whose closures are searched too (an import inside an enclosing function).
    """
    if isinstance(targets, str):
        raise TypeError("targets must be a list of dotted names, e.g. ['reinforce_edu.core.kl.kl_estimate']")
    patcher = _Patcher(exercise, targets, functions)
    real_import, real_import_module = builtins.__import__, importlib.import_module

    loaded = [len(sys.modules)]

    def after_import(module):
        if len(sys.modules) != loaded[0]:  # a module was imported for the first time inside the student's function:
            loaded[0] = len(sys.modules)  # patch it too (an import of a loaded module finds it patched already)
            patcher.apply()
        return module

    def patched_import(*args, **kwargs):
        return after_import(real_import(*args, **kwargs))

    def patched_import_module(*args, **kwargs):
        return after_import(real_import_module(*args, **kwargs))

    patcher.apply()
    builtins.__import__, importlib.import_module = patched_import, patched_import_module
    try:
        yield
    finally:
        builtins.__import__, importlib.import_module = real_import, real_import_module
        patcher.restore()
