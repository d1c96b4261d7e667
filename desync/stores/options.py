"""Per-store settings, apart from the store classes so that reading them costs no store imports.

Commands build a :class:`StoreOptions` for every location before they know
whether any store gets opened (``list-chunks`` and ``info`` read an index
only), so this module imports nothing heavy.
"""

from __future__ import annotations

from ..digest import DEFAULT

TYPE_CHECKING = False
if TYPE_CHECKING:  # type names only: importing typing costs milliseconds at start-up
    from ..digest import Digest
    from .s3auth import S3Credentials

_FIELDS = ("digest", "skip_verify", "uncompressed", "timeout", "error_retry", "error_retry_base_interval",
           "trust_insecure", "ca_cert", "client_cert", "client_key", "http_auth", "http_cookie", "workers",
           "s3_credentials", "compression", "rate_limit")


class StoreOptions:
    """Per-store settings; the config file can set them per location.

    A plain class with keyword defaults (a dataclass costs start-up time);
    compared by value.
    """

    __slots__ = ("digest", "skip_verify", "uncompressed", "timeout", "error_retry", "error_retry_base_interval",
                 "trust_insecure", "ca_cert", "client_cert", "client_key", "http_auth", "http_cookie", "workers",
                 "s3_credentials", "compression", "rate_limit")

    def __init__(self, digest: Digest = DEFAULT, skip_verify: bool = False, uncompressed: bool = False,
                 timeout: float = 60.0, error_retry: int = 3, error_retry_base_interval: float = 0.5,
                 trust_insecure: bool = False, ca_cert: str = "", client_cert: str = "", client_key: str = "",
                 http_auth: str = "", http_cookie: str = "", workers: int = 10,
                 s3_credentials: S3Credentials | None = None, compression: str = "zstd",
                 rate_limit: int = 0) -> None:
        self.digest = digest
        self.skip_verify = skip_verify
        self.uncompressed = uncompressed
        self.timeout = timeout
        self.error_retry = error_retry
        self.error_retry_base_interval = error_retry_base_interval
        self.trust_insecure = trust_insecure
        self.ca_cert = ca_cert
        self.client_cert = client_cert
        self.client_key = client_key
        self.http_auth = http_auth
        self.http_cookie = http_cookie
        self.workers = workers
        # S3 stores: credentials resolved by whoever opens the store (see desync.stores.s3auth).
        self.s3_credentials = s3_credentials
        # How new chunk files are compressed: zstd (default), or xz or gzip as casync --compression writes.
        self.compression = compression
        # Bytes per second over the network, all connections of the store together (0: no bound); casync's
        # --rate-limit-bps.  HTTP(S) stores and the SSH sessions of casync's command line honour it.
        self.rate_limit = rate_limit

    def _values(self) -> tuple[object, ...]:
        return (self.digest, self.skip_verify, self.uncompressed, self.timeout, self.error_retry,
                self.error_retry_base_interval, self.trust_insecure, self.ca_cert, self.client_cert,
                self.client_key, self.http_auth, self.http_cookie, self.workers, self.s3_credentials,
                self.compression, self.rate_limit)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoreOptions):
            return NotImplemented
        return self._values() == other._values()

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in zip(_FIELDS, self._values()))
        return f"StoreOptions({shown})"
