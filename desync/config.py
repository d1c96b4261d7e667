"""The config file (``$HOME/.config/desync/config.json``, same shape as the Go desync's).

``store-options`` sets per-location store options, keyed by location or
glob pattern (``*`` does not cross ``/``), so one machine can talk to
several stores with different certificates, timeouts or credentials.
``s3-credentials`` is kept for S3 stores.  Exactly one key may match a
location: two matches would make the result depend on key order.

This module knows nothing of stores: whoever opens a store (the CLI)
reads the settings for its location here and passes them in.
"""

from __future__ import annotations

import os

from .errors import DesyncError

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    import re
    from typing import Any, Final

# Keys of a store-options entry and the type each must have.
OPTION_TYPES: Final[dict[str, type]] = {
    "timeout": float,
    "error-retry": int,
    "error-retry-base-interval": float,
    "client-cert": str,
    "client-key": str,
    "ca-cert": str,
    "trust-insecure": bool,
    "skip-verify": bool,
    "uncompressed": bool,
    "http-auth": str,
    "http-cookie": str,
}
# Keys of an s3-credentials entry (desync.stores.s3auth interprets them).
S3_CREDENTIAL_KEYS: Final = ("access-key", "secret-key", "session-token", "aws-credentials-file", "aws-profile",
                             "aws-region")
# Top-level settings of older Go desync configs, kept as defaults for every store -> the store option they set.
LEGACY_DEFAULTS: Final = {"http-timeout": "timeout", "http-error-retry": "error-retry"}
# The sections of the file.
TOP_LEVEL_KEYS: Final = ("s3-credentials", "store-options", *LEGACY_DEFAULTS)
_DURATION_PATTERN: Final = r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)"
_duration: list[re.Pattern[str]] = []  # compiled on first use: no regex compiling at start-up
_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def default_path() -> str:
    home = os.environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".config", "desync", "config.json")


class Config:
    """The file's sections, checked (a plain class: dataclasses cost start-up time)."""

    __slots__ = ("path", "store_options", "s3_credentials", "defaults")

    def __init__(self, path: str = "", store_options: dict[str, dict[str, Any]] | None = None,
                 s3_credentials: dict[str, dict[str, Any]] | None = None,
                 defaults: dict[str, Any] | None = None) -> None:
        self.path = path
        self.store_options: dict[str, dict[str, Any]] = {} if store_options is None else store_options
        self.s3_credentials: dict[str, dict[str, Any]] = {} if s3_credentials is None else s3_credentials
        # Store options every location gets unless its store-options entry says otherwise.
        self.defaults: dict[str, Any] = {} if defaults is None else defaults

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return (self.path == other.path and self.store_options == other.store_options
                and self.s3_credentials == other.s3_credentials and self.defaults == other.defaults)

    def __repr__(self) -> str:
        return (f"Config(path={self.path!r}, store_options={self.store_options!r}, "
                f"s3_credentials={self.s3_credentials!r}, defaults={self.defaults!r})")

    def to_json(self) -> str:
        import json


        doc: dict[str, Any] = {"s3-credentials": self.s3_credentials, "store-options": self.store_options}
        for legacy, option in LEGACY_DEFAULTS.items():
            if option in self.defaults:
                doc[legacy] = self.defaults[option]
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"

    def options_for(self, location: str) -> dict[str, Any]:
        """The store-options entry matching ``location`` (empty if none); two matches are an error."""
        matches = [key for key in self.store_options if location_matches(key, location)]
        if len(matches) > 1:
            raise DesyncError(f"config {self.path}: several store-options entries match {location!r}: "
                              + ", ".join(sorted(matches)))
        return {**self.defaults, **(self.store_options[matches[0]] if matches else {})}

    def s3_credentials_for(self, endpoint: str) -> dict[str, Any]:
        """The s3-credentials entry for ``endpoint`` ("http://host:port", as the Go tool keys them).

        Keys may be globs; an ``s3+`` in front of a key is ignored.  Two matches are an error.
        """
        matches = [key for key in self.s3_credentials
                   if location_matches(key[3:] if key.lower().startswith("s3+") else key, endpoint)]
        if len(matches) > 1:
            raise DesyncError(f"config {self.path}: several s3-credentials entries match {endpoint!r}: "
                              + ", ".join(sorted(matches)))
        return dict(self.s3_credentials[matches[0]]) if matches else {}


def location_matches(pattern: str, location: str) -> bool:
    """Glob match segment by segment, ignoring a trailing ``/`` on either side."""
    pat = pattern.rstrip("/") or pattern
    loc = location.rstrip("/") or location
    if pat == loc:
        return True
    pat_parts, loc_parts = pat.split("/"), loc.split("/")
    if len(pat_parts) != len(loc_parts):
        return False
    import fnmatch

    return all(fnmatch.fnmatchcase(s, p) for p, s in zip(pat_parts, loc_parts))


def parse_duration(value: object, where: str) -> float:
    """Seconds from a number or a Go duration string (``"1m30s"``, ``"500ms"``)."""
    if isinstance(value, bool):
        raise DesyncError(f"{where}: expected a duration, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        pos, total = 0, 0.0
        if not _duration:
            import re

            _duration.append(re.compile(_DURATION_PATTERN))
        for m in _duration[0].finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos == len(text) and text:
            return total
    raise DesyncError(f"{where}: invalid duration {value!r}")


def _check_entry(key: str, entry: object, path: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise DesyncError(f"config {path}: store-options[{key!r}] must be an object")
    checked: dict[str, Any] = {}
    for name, value in entry.items():
        where = f"config {path}: store-options[{key!r}].{name}"
        want = OPTION_TYPES.get(name)
        if want is None:
            raise _unknown_key(path, name, f"store-options[{key!r}]", tuple(OPTION_TYPES))
        if want is float:
            checked[name] = parse_duration(value, where)
        elif want is int:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise DesyncError(f"{where}: expected a non-negative integer")
            checked[name] = value
        elif not isinstance(value, want):
            raise DesyncError(f"{where}: expected a {want.__name__}")
        else:
            checked[name] = value
    return checked


def _unknown_key(path: str, name: object, where: str, known: tuple[str, ...]) -> DesyncError:
    """A misspelt key would otherwise be ignored without a word (a timeout that never applies)."""
    return DesyncError(f"config {path}: unknown key {name!r} in {where} (known: {', '.join(known)})")


def parse_config(text: str, path: str) -> Config:
    doc: object = {}
    if text.strip():
        import json  # only when there is a file: json costs start-up time

        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DesyncError(f"config {path}: invalid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(doc, dict):
        raise DesyncError(f"config {path}: expected a JSON object")
    for name in doc:
        if name not in TOP_LEVEL_KEYS:
            raise _unknown_key(path, name, "the top level", TOP_LEVEL_KEYS)
    cfg = Config(path=path)
    options = doc.get("store-options", {})
    creds = doc.get("s3-credentials", {})
    if not isinstance(options, dict) or not isinstance(creds, dict):
        raise DesyncError(f"config {path}: store-options and s3-credentials must be objects")
    cfg.store_options = {str(k): _check_entry(str(k), v, path) for k, v in options.items()}
    legacy = {option: doc[name] for name, option in LEGACY_DEFAULTS.items() if name in doc}
    if isinstance(legacy.get("timeout"), int) and not isinstance(legacy["timeout"], bool):
        legacy["timeout"] = legacy["timeout"] / 1e9  # Go writes a time.Duration as nanoseconds
    cfg.defaults = _check_entry("*", legacy, path) if legacy else {}
    for key, value in creds.items():
        if not isinstance(value, dict):
            raise DesyncError(f"config {path}: s3-credentials[{key!r}] must be an object")
        for name in value:
            if name not in S3_CREDENTIAL_KEYS:
                raise _unknown_key(path, name, f"s3-credentials[{key!r}]", S3_CREDENTIAL_KEYS)
    cfg.s3_credentials = {str(k): dict(v) for k, v in creds.items()}
    return cfg


_cache: dict[str, Config] = {}


def load_config(path: str | None = None, required: bool | None = None) -> Config:
    """The config at ``path`` (default location if None).

    A missing file is an empty config, unless ``required`` (default: when
    ``path`` was given explicitly, as a mistyped ``--config`` should not
    silently mean "no config").
    """
    where = path or default_path()
    must_exist = bool(path) if required is None else required
    found = _cache.get(where)
    if found is not None:
        return found
    try:
        with open(where, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if must_exist:
            raise DesyncError(f"config file {where} does not exist") from None
        text = ""
    except OSError as exc:
        raise DesyncError(f"cannot read config {where}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise DesyncError(f"config {where}: not UTF-8 text") from None
    cfg = parse_config(text, where)
    _cache[where] = cfg
    return cfg


def save_config(cfg: Config, path: str) -> None:
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as exc:
        raise DesyncError(f"cannot create the directory of {path}: {exc.strerror}") from None
    from . import fsutil

    try:
        fsutil.write_file_atomic(path, cfg.to_json().encode(), 0o600)
    except OSError as exc:
        raise DesyncError(f"cannot write {path}: {exc.strerror}") from None
