"""Where an S3 store's credentials and region come from, by the Go desync's rules.

First the environment: ``S3_ACCESS_KEY``/``S3_SECRET_KEY``/``S3_SESSION_TOKEN``,
or failing those ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``.
Then the config file's ``s3-credentials`` entry for the endpoint, keyed
like ``http://host:port`` (the location without ``s3+`` and without the
bucket): ``access-key``/``secret-key``/``session-token``, or an
``aws-credentials-file`` with an ``aws-profile``.  Nothing found means
anonymous requests, as with the Go tool; the user's own ``~/.aws`` files
are read only when a config entry names them, so a store never picks up
credentials nobody pointed it at.

Whoever opens an S3 store (the CLI, from the config file ``--config``
names) resolves them with :func:`credentials_for` and passes them in
:attr:`StoreOptions.s3_credentials <desync.stores.base.StoreOptions>`;
a store opened without them uses the environment only.
"""

from __future__ import annotations

import os

from ..config import S3_CREDENTIAL_KEYS
from ..errors import DesyncError

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from typing import Any, Final

    from ..config import Config

DEFAULT_REGION: Final = "us-east-1"


class S3Credentials:
    """Keys and region for S3 requests (a plain class: dataclasses cost start-up time)."""

    __slots__ = ("access_key", "secret_key", "session_token", "region")

    def __init__(self, access_key: str = "", secret_key: str = "", session_token: str = "",
                 region: str = "") -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.session_token = session_token
        self.region = region

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, S3Credentials):
            return NotImplemented
        return (self.access_key == other.access_key and self.secret_key == other.secret_key
                and self.session_token == other.session_token and self.region == other.region)

    def __repr__(self) -> str:
        # The secrets stay out of logs and tracebacks.
        return f"S3Credentials(access_key={self.access_key!r}, region={self.region!r})"

    @property
    def anonymous(self) -> bool:
        return not self.access_key and not self.secret_key


def endpoint_of(location: str) -> str:
    """``s3+http://host:port/bucket/...`` -> ``http://host:port`` (the server; the key of s3-credentials)."""
    import urllib.parse  # S3 locations only: it costs start-up time

    parts = urllib.parse.urlsplit(location)
    return f"{parts.scheme.lower()[3:]}://{parts.netloc}"


def is_s3_location(location: str) -> bool:
    return location.lower().startswith(("s3+http://", "s3+https://"))


def credentials_for(endpoint: str, config: Config | None = None) -> S3Credentials:
    """Credentials and region for ``endpoint`` ("http://host:port" or "https://host").

    Without ``config``, from the environment only.
    """
    env = os.environ
    creds = S3Credentials(env.get("S3_ACCESS_KEY", ""), env.get("S3_SECRET_KEY", ""), env.get("S3_SESSION_TOKEN", ""))
    if creds.anonymous:
        creds = S3Credentials(env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", ""),
                              env.get("AWS_SESSION_TOKEN", ""))
    fields = _fields(config.s3_credentials_for(endpoint), endpoint, config.path) if config is not None else {}
    if creds.anonymous:
        if fields.get("access-key") or fields.get("secret-key"):
            creds = S3Credentials(fields.get("access-key", ""), fields.get("secret-key", ""),
                                  fields.get("session-token", ""))
        elif fields.get("aws-credentials-file"):
            profile = fields.get("aws-profile") or env.get("AWS_PROFILE") or "default"
            creds = read_aws_credentials(fields["aws-credentials-file"], profile)
    creds.region = (env.get("S3_REGION") or fields.get("aws-region") or env.get("AWS_REGION")
                    or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION)
    return creds


_KNOWN: Final = S3_CREDENTIAL_KEYS


def _fields(entry: dict[str, Any], endpoint: str, path: str) -> dict[str, str]:
    """The entry's known fields, each checked to be a string."""
    fields: dict[str, str] = {}
    for name in _KNOWN:
        value = entry.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise DesyncError(f"config {path}: s3-credentials entry for {endpoint}: {name} must be a string")
        fields[name] = value
    return fields


def read_aws_credentials(path: str, profile: str) -> S3Credentials:
    """One profile of an AWS shared credentials file (INI: ``[profile]`` with ``aws_access_key_id`` ...)."""
    import configparser  # only when a config entry names such a file: every store imports this module

    parser = configparser.RawConfigParser(default_section="\x00")
    expanded = os.path.expanduser(path)
    try:
        with open(expanded, encoding="utf-8") as f:
            parser.read_file(f, expanded)
    except OSError as exc:
        raise DesyncError(f"cannot read AWS credentials file {path}: {exc.strerror}") from None
    except (configparser.Error, UnicodeDecodeError) as bad:
        raise DesyncError(f"AWS credentials file {path} is not valid: {' '.join(str(bad).split())}") from None
    section = profile if parser.has_section(profile) else f"profile {profile}"
    if not parser.has_section(section):
        raise DesyncError(f"AWS credentials file {path} has no profile {profile!r}")
    values = dict(parser.items(section))
    access_key = values.get("aws_access_key_id", "").strip()
    secret_key = values.get("aws_secret_access_key", "").strip()
    if not access_key or not secret_key:
        raise DesyncError(f"profile {profile!r} in AWS credentials file {path} lacks aws_access_key_id "
                          "or aws_secret_access_key")
    return S3Credentials(access_key, secret_key, values.get("aws_session_token", "").strip())
