"""Configuration from environment variables, parsed and validated once at start-up.

Every handler declares the variables it reads as one frozen dataclass, a :class:`Settings`
subclass whose fields are made by :func:`setting`: the field's type says how its value is
parsed (bool, int, float, str, Path, ``Literal[...]``). They are read together when the
handler is constructed; an invalid value raises :class:`ConfigError` naming the variable, so a
misconfigured function fails at start-up, not on the first request. The handler then reads
typed attributes (``self.settings.min_area``). The same declarations, seen as
:class:`Setting` rows, generate the environment-variable table in ``docs/configuration.md``.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

Parser = Callable[[Any], Any]


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, how to parse it, its default and what it does."""

    name: str
    parse: Parser
    default: Any
    help: str
    kind: str = "string"

    def read(self, value: Any) -> Any:
        """Parse a raw value (a string from the environment, or a Python value from a notebook)."""
        if value is None:
            return self.default
        try:
            return self.parse(value)
        except ConfigError as exc:
            raise ConfigError(f"{self.name}={value!r}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.name}={value!r}: expected {self.kind} ({exc})") from None

    def with_default(self, default: Any) -> Setting:
        """The same setting with another default (a subclass tuning an inherited setting)."""
        return replace(self, default=default)

    @property
    def default_text(self) -> str:
        """The default as written in an environment variable."""
        if self.default is None:
            return ""
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)


def boolean(value: Any) -> bool:
    """Parse true/false, 1/0, yes/no, on/off (case-insensitive)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError("expected true or false")


def number(low: float | None = None, high: float | None = None, *, integer: bool = False) -> Parser:
    """A parser for a finite number (optionally an integer) within [low, high]."""

    def parse(value: Any) -> float | int:
        if isinstance(value, bool):
            raise ConfigError("expected a number, got a boolean")
        if integer:
            text = str(value).strip()
            result: float | int = int(text) if isinstance(value, str) else int(value)
            if not isinstance(value, str) and result != value:
                raise ConfigError("expected an integer")
        else:
            result = float(value)
            if not math.isfinite(result):
                raise ConfigError("expected a finite number")
        if low is not None and result < low:
            raise ConfigError(f"must be >= {low}")
        if high is not None and result > high:
            raise ConfigError(f"must be <= {high}")
        return result

    return parse


def choice(*options: str) -> Parser:
    """A parser for one of a fixed set of strings (case-insensitive)."""

    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in options:
            raise ConfigError(f"expected one of {', '.join(options)}")
        return text

    return parse


def file_path(value: Any) -> Path:
    """A file path, checked when the model loads (:func:`required_file`), not when parsed:
    the default path of a setting is never parsed, so only a load-time check covers it."""
    return Path(text(value)).expanduser()


def _file_problem(path: Path) -> str | None:
    if not path.is_file():
        return "file not found"
    if not os.access(path, os.R_OK):
        return "file not readable"
    return None


def existing_file(value: Any) -> Path:
    """A path that must name a readable file now (a parser: the error gets the name added)."""
    path = file_path(value)
    problem = _file_problem(path)
    if problem:
        raise ConfigError(f"{problem}: {path}")
    return path


def required_file(name: str, value: Any, hint: str = "") -> Path:
    """The readable file setting ``name`` points at; else ConfigError ``NAME=path: file not
    found[; hint]``. The one check every model file goes through at start-up."""
    path = file_path(value)
    problem = _file_problem(path)
    if problem:
        raise ConfigError(f"{name}={path}: {problem}" + (f"; {hint}" if hint else ""))
    return path


def text(value: Any) -> str:
    """A non-empty string."""
    result = str(value).strip()
    if not result:
        raise ConfigError("must not be empty")
    return result


def device(value: Any) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; ``auto`` picks cuda:0 when CUDA is available."""
    result = str(value).strip().lower()
    if result == "auto":
        return result
    if result == "cpu" or result == "cuda" or (result.startswith("cuda:") and result[5:].isdigit()):
        return result
    raise ConfigError("expected auto, cpu, cuda or cuda:N")


def resolve_device(name: str) -> str:
    """Turn a DEVICE value into a torch device string, checking that CUDA is really there."""
    if name == "cpu":
        return name
    try:
        import torch
    except ImportError:
        if name == "auto":
            return "cpu"
        raise ConfigError(f"DEVICE={name!r}: torch is not installed") from None
    available = torch.cuda.is_available()
    if name == "auto":
        return "cuda:0" if available else "cpu"
    if not available:
        raise ConfigError(f"DEVICE={name!r}: CUDA is not available on this machine")
    index = int(name.split(":")[1]) if ":" in name else 0
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"DEVICE={name!r}: only {torch.cuda.device_count()} CUDA device(s) present"
        )
    return f"cuda:{index}"


@contextlib.contextmanager
def temporary_environment(values: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set for the block and restored afterwards: how a library
    that reads its own variable (SimpleLama's LAMA_MODEL) or a test run gets its settings."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


SETTING_INFO = "quadratseg.setting"
"""The key of a settings field's metadata that holds its :class:`SettingInfo`."""


@dataclass(frozen=True)
class SettingInfo:
    """What a settings field says beyond its name, type and default: its meaning, the bounds
    of a number, and a parser where the type's own is not enough."""

    help: str
    low: float | None = None
    high: float | None = None
    parse: Parser | None = None


def setting(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    parse: Parser | None = None,
) -> Any:
    """A field of a :class:`Settings` dataclass: one environment variable (the field's name in
    upper case), its default and its meaning. Its parser and kind come from the field's type
    (:func:`type_parser`); ``low``/``high`` bound a number, ``parse`` replaces the parser."""
    return field(default=default, metadata={SETTING_INFO: SettingInfo(help, low, high, parse)})


def retuned(settings: type[Settings], name: str, default: Any) -> Any:
    """The field ``name`` of ``settings`` with another default: how a subclass tunes an
    inherited setting without repeating its meaning."""
    for inherited in fields(settings):
        if inherited.name == name:
            return field(default=default, metadata=inherited.metadata)
    raise TypeError(f"{settings.__name__} has no setting {name}")


KINDS: dict[Any, tuple[str, Callable[[SettingInfo], Parser]]] = {
    bool: ("boolean", lambda info: boolean),
    int: ("integer", lambda info: number(info.low, info.high, integer=True)),
    float: ("number", lambda info: number(info.low, info.high)),
    str: ("string", lambda info: text),
    Path: ("path", lambda info: file_path),
}
"""A settings field's type -> its kind (in messages) and the parser of its values."""


def type_parser(annotation: Any, info: SettingInfo) -> tuple[str, Parser]:
    """The kind and parser of a field of type ``annotation``: bool, int, float, str, Path,
    ``Literal[...]`` (a choice), or one of them ``| None`` (the default may be None)."""
    arguments = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is Literal:
        kind, parser = "choice", choice(*(str(a) for a in get_args(annotation)))
    elif len(arguments) == 1 and type(None) in get_args(annotation):
        return type_parser(arguments[0], info)
    elif annotation in KINDS:
        kind, make = KINDS[annotation]
        parser = make(info)
    else:
        raise TypeError(f"settings field of type {annotation!r}: no parser for it")
    return kind, info.parse or parser


SettingsT = TypeVar("SettingsT", bound="Settings")


@dataclass(frozen=True)
class Settings:
    """A handler's settings: a frozen dataclass whose fields (made by :func:`setting`) are its
    environment variables, read once at start-up and then used as typed attributes
    (``settings.conf_threshold``). Subclasses add fields; :func:`retuned` changes a default."""

    @classmethod
    def declared(cls) -> list[Setting]:
        """Every field as a :class:`Setting` (name, parser, default, meaning, kind), in order:
        what the docs table, ``quadratseg settings`` and ``package --env`` read."""
        hints = get_type_hints(cls)
        declared = []
        for each in fields(cls):
            info: SettingInfo = each.metadata[SETTING_INFO]
            kind, parser = type_parser(hints[each.name], info)
            declared.append(Setting(each.name.upper(), parser, each.default, info.help, kind))
        return declared

    @classmethod
    def load(
        cls: type[SettingsT],
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> SettingsT:
        """Read every field from ``overrides`` (keyword names, any case) or else the
        environment (:func:`load_config`); ConfigError names the variable."""
        values = load_config(cls.declared(), overrides, environ)
        return cls(**{name.lower(): value for name, value in values.items()})


def load_config(
    settings: Iterable[Setting],
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Read every setting from ``overrides`` (keyword names, any case) or else the environment.

    Empty environment values count as unset. Unknown override names raise ConfigError so a
    typo in a notebook does not pass silently.
    """
    env = os.environ if environ is None else environ
    declared = {setting.name: setting for setting in settings}
    given = {key.upper(): value for key, value in (overrides or {}).items()}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(declared))}"
        )
    values: dict[str, Any] = {}
    for name, setting in declared.items():
        if name in given:
            raw = given[name]
        else:
            raw = env.get(name)
            if raw is not None and raw.strip() == "":
                raw = None
        values[name] = setting.read(raw)
    return values


def combined_table(declared: Mapping[str, Iterable[Setting]]) -> str:
    """One Markdown table of the settings of several functions (function name -> settings).

    A variable read by several functions is one row; where their defaults differ, the most
    common default is given and the functions that differ are named.
    """
    rows: dict[str, list[tuple[str, Setting]]] = {}
    for function, settings in declared.items():
        for setting in settings:
            rows.setdefault(setting.name, []).append((function, setting))
    lines = ["| Variable | Default | Used by | Meaning |", "| --- | --- | --- | --- |"]
    for name, uses in rows.items():
        counts = Counter(setting.default_text for _, setting in uses)
        common = counts.most_common(1)[0][0]
        default = f"`{common}`" if common else "(none)"
        exceptions = [
            f"{function}: `{setting.default_text}`"
            for function, setting in uses
            if setting.default_text != common
        ]
        if exceptions:
            default += " (" + "; ".join(exceptions) + ")"
        functions = sorted(function for function, _ in uses)
        used_by = "all" if len(functions) == len(declared) else ", ".join(functions)
        lines.append(f"| `{name}` | {default} | {used_by} | {uses[0][1].help} |")
    return "\n".join(lines)


def markdown_table(settings: Iterable[Setting]) -> str:
    """The settings as a Markdown table: variable, default, meaning."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for setting in settings:
        default = f"`{setting.default_text}`" if setting.default_text else "(none)"
        lines.append(f"| `{setting.name}` | {default} | {setting.help} |")
    return "\n".join(lines)
