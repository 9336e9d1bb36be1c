"""An unpickler for checkpoints that rebuilds objects and never calls what it should only rebuild.

A pickle is a program: ``GLOBAL`` names any importable object, ``REDUCE`` calls it with
arguments. An allowlist of names is not enough while the unpickler may *call* an allowed class
(MMSegmentation's ``EncoderDecoder(backbone=dict(type="subprocess.run", ...))`` builds its
backbone through a registry that imports any dotted name). :class:`Unpickler` tells the two
apart:

- a model class (a ``torch.nn.Module`` layer of torch or ultralytics, ultralytics'
  detection, segmentation and pose models, MMEngine's log buffers) is only *rebuilt*: created
  by ``NEWOBJ`` without its ``__init__``, then its attributes set by ``BUILD``. Named alone it
  is an inert :class:`ClassRef`, so it can never be called, whatever the pickle does with it;
- ``REDUCE`` calls only :func:`callables`: torch's tensor and parameter rebuilders, plain
  containers, NumPy's array rebuilders and a few value types, some with their arguments
  checked (:func:`restricted_getattr`, :func:`restricted_reconstructor`, :func:`latin1`);
- every other name is refused before anything is imported; list, dict and set opcodes apply
  only to lists, dicts and sets.

The module is a ``pickle_module`` for ``torch.load`` (it has ``Unpickler`` and ``load``), so
torch's zip and legacy formats are read through it; :mod:`.checkpoints` uses it.
"""

from __future__ import annotations

import _compat_pickle
import collections
import datetime
import importlib
import pathlib
import pickle
import re
import types
from typing import IO, Any


class RefusedPickle(pickle.UnpicklingError):
    """The pickle names or calls something a checkpoint does not need (one line)."""


class ClassRef:
    """A class a checkpoint may rebuild (NEWOBJ, then BUILD) but never call."""

    __slots__ = ("cls",)

    def __init__(self, cls: type) -> None:
        self.cls = cls

    def __repr__(self) -> str:
        return f"{self.cls.__module__}.{self.cls.__qualname__}"


REBUILT_MODELS = ("DetectionModel", "SegmentationModel", "PoseModel")
"""ultralytics.nn.tasks models a YOLO function loads."""

LAYER_MODULE = re.compile(r"^(torch\.nn\.modules|ultralytics\.nn\.modules)\.[a-z_][a-z0-9_]*$")
"""Modules whose ``torch.nn.Module`` classes (a model's layers) may be rebuilt."""

HISTORY_BUFFER = "mmengine.logging.history_buffer.HistoryBuffer"
STATISTICS = ("min", "max", "current", "mean")
"""The methods MMEngine's ``HistoryBuffer`` pickles by name (its ``_statistics_methods``)."""

REBUILT_NAMES = frozenset(
    {
        HISTORY_BUFFER,
        "argparse.Namespace",
        *(f"ultralytics.nn.tasks.{name}" for name in REBUILT_MODELS),
    }
)
"""Other classes that may be rebuilt (imported on first use)."""

NAMESPACES = {
    "types.SimpleNamespace": "types",
    "ultralytics.utils.IterableSimpleNamespace": "ultralytics.utils",
}
"""Attribute bags, pickled as a call with no argument then BUILD: the only classes ``REDUCE``
may call, and only with no argument."""


def restricted_getattr(target: Any, name: str) -> Any:
    """``getattr`` as checkpoints use it: a layer's ``forward`` (or ``forward_fuse``), of a
    rebuilt layer or of its class (ultralytics), and a ``HistoryBuffer`` statistic (MMEngine)."""
    import torch

    cls = target.cls if isinstance(target, ClassRef) else type(target)
    is_layer = issubclass(cls, torch.nn.Module) and name in ("forward", "forward_fuse")
    is_statistic = f"{cls.__module__}.{cls.__qualname__}" == HISTORY_BUFFER and name in STATISTICS
    if not isinstance(target, (ClassRef, torch.nn.Module)) or not (is_layer or is_statistic):
        raise RefusedPickle(f"its pickle calls getattr({cls.__name__}, {name!r})")
    if isinstance(target, ClassRef):
        return getattr(target.cls, name)
    return getattr(cls, name).__get__(target)


def restricted_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` limited to rebuilding: a rebuilt class, created with
    ``object.__new__`` (no ``__init__`` of any class runs)."""
    if not isinstance(cls, ClassRef) or base is not object or state is not None:
        raise RefusedPickle(f"its pickle calls copyreg._reconstructor{(cls, base, state)!r}"[:200])
    return object.__new__(cls.cls)


def latin1(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles write bytes: latin-1 text only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise RefusedPickle(f"its pickle calls _codecs.encode(..., {encoding!r})")
    return text.encode("latin1")


def config_dict(mapping: dict[str, Any]) -> Any:
    """MMEngine's ``ConfigDict(mapping)``, as it pickles itself: from a dict only."""
    from mmengine.config import ConfigDict

    if type(mapping) is not dict:
        raise RefusedPickle(f"its pickle calls ConfigDict({type(mapping).__name__})")
    return ConfigDict(mapping)


def _callables() -> dict[str, Any]:
    """The functions and value types ``REDUCE`` may call, by the name a pickle gives them."""
    import numpy as np
    import torch

    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy 1
        from numpy.core import multiarray  # type: ignore[no-redef]

    table: dict[str, Any] = {
        "collections.OrderedDict": collections.OrderedDict,
        "builtins.set": set,
        "builtins.frozenset": frozenset,
        "builtins.slice": slice,
        "builtins.complex": complex,
        "builtins.getattr": restricted_getattr,
        "copyreg._reconstructor": restricted_reconstructor,
        "_codecs.encode": latin1,
        "datetime.datetime": datetime.datetime,
        "datetime.date": datetime.date,
        "datetime.timedelta": datetime.timedelta,
        "torch.Size": torch.Size,
        "torch.device": torch.device,
        "numpy.dtype": np.dtype,
        "mmengine.config.config.ConfigDict": config_dict,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[f"{module}._reconstruct"] = multiarray._reconstruct
        table[f"{module}.scalar"] = multiarray.scalar
    for path in ("pathlib", "pathlib._local"):
        for name in ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"):
            table[f"{path}.{name}"] = pathlib.PurePosixPath if "Pure" in name else pathlib.Path
    for name in (
        "_rebuild_tensor",
        "_rebuild_tensor_v2",
        "_rebuild_tensor_v3",
        "_rebuild_parameter",
        "_rebuild_parameter_with_state",
    ):
        table[f"torch._utils.{name}"] = getattr(torch._utils, name)
    return table


_TABLES: dict[str, dict[str, Any]] = {}


def callables() -> dict[str, Any]:
    """:func:`_callables`, built once (it imports torch and NumPy)."""
    if "callables" not in _TABLES:
        _TABLES["callables"] = _callables()
    return _TABLES["callables"]


def _values() -> dict[str, Any]:
    """Objects a pickle may name as plain values, never call: NumPy's array type, torch's
    dtypes and legacy storage types (read by torch's own storage loader)."""
    import numpy as np
    import torch

    table: dict[str, Any] = {"numpy.ndarray": np.ndarray}
    for name in dir(torch):
        value = getattr(torch, name, None)
        if isinstance(value, torch.dtype) or (
            isinstance(value, type) and name.endswith("Storage") and name != "Storage"
        ):
            table[f"torch.{name}"] = value
    return table


def values() -> dict[str, Any]:
    """:func:`_values`, built once."""
    if "values" not in _TABLES:
        _TABLES["values"] = _values()
    return _TABLES["values"]


def rebuildable(module: str, name: str) -> type | None:
    """The class ``module.name`` if a checkpoint may rebuild it, else None (nothing imported
    unless the name is one of a layer module's or :data:`REBUILT_NAMES`)."""
    import torch

    full = f"{module}.{name}"
    if full not in REBUILT_NAMES and not LAYER_MODULE.match(module):
        return None
    if not name.isidentifier():
        return None
    try:
        target = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    if not isinstance(target, type) or target.__module__ != module:
        return None
    if full in REBUILT_NAMES or issubclass(target, torch.nn.Module):
        return target
    return None


_PurePythonUnpickler: Any = pickle._Unpickler
"""``pickle``'s unpickler written in Python, whose opcodes a subclass can replace."""


class Unpickler(_PurePythonUnpickler):
    """``pickle``'s own unpickler with the opcodes that call code restricted (module doc)."""

    dispatch: dict[int, Any] = dict(_PurePythonUnpickler.dispatch)

    def __init__(self, file: IO[bytes], **options: Any) -> None:
        super().__init__(file, **options)
        self.rebuilt: set[type] = set()
        self.allowed_calls = {id(value) for value in callables().values()}

    def find_class(self, module: str, name: str) -> Any:
        """An allowed object by name: a callable of :func:`callables`, a plain value, an
        attribute bag or a :class:`ClassRef`; RefusedPickle for anything else."""
        if self.proto < 3 and self.fix_imports:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        full = f"{module}.{name}"
        for table in (callables(), values()):
            if full in table:
                return table[full]
        if full in NAMESPACES:
            return getattr(importlib.import_module(NAMESPACES[full]), name)
        target = rebuildable(module, name)
        if target is None:
            raise RefusedPickle(f"its pickle names {full}")
        self.rebuilt.add(target)
        return ClassRef(target)

    def call(self, func: Any, args: tuple[Any, ...]) -> Any:
        """``func(*args)`` for an allowed callable (REDUCE, INST, OBJ)."""
        if isinstance(func, type) and issubclass(func, types.SimpleNamespace) and not args:
            return func()
        if isinstance(func, ClassRef):
            raise RefusedPickle(
                f"its pickle calls {func!r} (a class a checkpoint only rebuilds, never calls)"
            )
        if id(func) not in self.allowed_calls:
            raise RefusedPickle(f"its pickle calls {func!r}"[:200])
        return func(*args)

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self.call(self.stack[-1], tuple(args))

    def _instantiate(self, klass: Any, args: list[Any]) -> None:
        self.append(self.call(klass, tuple(args)))

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self.new(cls, args, {}))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self.new(cls, args, kwargs))

    def new(self, cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``cls.__new__`` of a rebuilt class: the object, without its ``__init__``."""
        if not isinstance(cls, ClassRef):
            raise RefusedPickle(f"its pickle creates {cls!r}"[:200])
        return cls.cls.__new__(cls.cls, *args, **kwargs)

    def load_build(self) -> None:
        import numpy as np

        inst = self.stack[-2]
        kinds = (collections.OrderedDict, types.SimpleNamespace, np.ndarray, np.dtype)
        if type(inst) not in self.rebuilt and not isinstance(inst, kinds):
            raise RefusedPickle(f"its pickle sets the state of a {type(inst).__name__}")
        super().load_build()

    def load_append(self) -> None:
        self.expect(list, "appends to", depth=2)
        super().load_append()

    def load_appends(self) -> None:
        items = self.pop_mark()
        self.expect(list, "appends to")
        self.stack[-1].extend(items)

    def load_setitem(self) -> None:
        self.expect(dict, "sets an item of", depth=3)
        super().load_setitem()

    def load_setitems(self) -> None:
        items = self.pop_mark()
        self.expect(dict, "sets an item of")
        target = self.stack[-1]
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def load_additems(self) -> None:
        items = self.pop_mark()
        self.expect(set, "adds to")
        self.stack[-1].update(items)

    def expect(self, kind: type, action: str, depth: int = 1) -> None:
        """Refuse a container opcode on anything but a list, a dict (or a dict class that was
        rebuilt) or a set."""
        target = self.stack[-depth]
        if type(target) is not kind and not (kind is dict and isinstance(target, dict)):
            raise RefusedPickle(f"its pickle {action} a {type(target).__name__}")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.ADDITEMS[0]] = load_additems


def load(file: IO[bytes], **options: Any) -> Any:
    """``pickle.load`` through :class:`Unpickler` (torch reads its legacy headers with it)."""
    return Unpickler(file, **options).load()
