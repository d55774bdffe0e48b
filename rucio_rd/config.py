"""The plugin's one source of configuration: a TOML file plus environment overrides.

The file is found at ``$RUCIO_RD_CONFIG`` or, inside DaCHS, at
``<rootDir>/etc/rucio_rd.toml``.  Any key can be overridden by an
environment variable ``RUCIO_RD_<SECTION>_<KEY>`` (upper case), which is how
secrets reach a deployment without being written into the file.

Everything is validated when loaded; an error names the bad key and says what
was expected.  This module reads files and the environment only: it never
opens a connection.  The one list of site sources is
:data:`rucio_rd.sites.SITE_SOURCES`, which validation consults.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rucio_rd.model import LINK_AUTH_VALUES
from rucio_rd.soda import PROTOTYPE_ID_TEMPLATE, id_template_problem

__all__ = [
    "ConfigError",
    "GeoIPSettings",
    "MetadataSettings",
    "RucioSettings",
    "Settings",
    "SiteSettings",
    "find_config_file",
    "load_settings",
]

ENV_PREFIX = "RUCIO_RD_"
CONFIG_ENV = "RUCIO_RD_CONFIG"
CONFIG_FILE_NAME = "rucio_rd.toml"


class ConfigError(ValueError):
    """The configuration is unusable; the message names the key and the way out."""


@dataclass(frozen=True)
class MetadataSettings:
    """Where Rucio's POSTGRES_JSON did-meta plugin keeps its table."""

    dsn: str = "dbname=rucio_meta host=127.0.0.1"
    table: str = "dids"
    # The Rucio VO whose files are published ("def" on a single-VO Rucio).
    vo: str = "def"
    # How many skipped records an import names one by one; 0 names them all.
    max_bad_records_reported: int = 20
    # The access_url published per file: "datalink" (this DaCHS's own DataLink
    # service, from [web] serverURL) or "metadata" (the URL in the metadata).
    access_url: str = "datalink"


@dataclass(frozen=True)
class RucioSettings:
    """How the datalink service reaches Rucio's REST API."""

    url: str = "http://127.0.0.1:18100"
    auth: str = "userpass"
    account: str = "root"
    username: str = ""
    # Secrets: never shown by repr(); better given as files or environment.
    password: str = field(default="", repr=False)
    password_file: str = ""
    token_file: str = ""
    oidc_token_url: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = field(default="", repr=False)
    oidc_client_secret_file: str = ""
    oidc_scope: str = ""
    oidc_audience: str = ""
    timeout: float = 10.0
    # DataLink requests that may wait on Rucio at once (of DaCHS's 10 threads);
    # more are answered at once with a TransientFault.  0: no limit.
    concurrent_calls: int = 6
    # Failed calls in a row (timeouts, refusals, 5xx) after which Rucio is taken to
    # be down and requests fail at once, until a probe after circuit_retry_after s.
    circuit_failures: int = 3
    circuit_retry_after: float = 15.0
    # Seconds a file's replicas are reused for repeated IDs; 0 turns that off.
    replica_cache_ttl: float = 10.0


@dataclass(frozen=True)
class SiteSettings:
    """Where RSE positions and site services come from."""

    source: str = "site_directory"
    url: str = "http://127.0.0.1:18200"
    file: str = ""
    ttl: float = 300.0
    timeout: float = 5.0
    # The longest a request waits for the very first site information.
    first_wait: float = 2.0
    # DataLink's link_auth for replicas at sites whose source does not say:
    # SKA storage wants a bearer token.
    link_auth: str = "true"
    # The form of ID the sites' SODA services take where the site source does
    # not say (rucio_rd.soda): the SKA prototype's by default.
    soda_id_template: str = PROTOTYPE_ID_TEMPLATE
    # {authority} in those IDs; empty: DaCHS's [ivoa] authority.
    soda_id_authority: str = ""


@dataclass(frozen=True)
class GeoIPSettings:
    """The GeoIP2 City database; empty means the embedded GeoLite2 (2018)."""

    database: str = ""
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    metadata: MetadataSettings = field(default_factory=MetadataSettings)
    rucio: RucioSettings = field(default_factory=RucioSettings)
    sites: SiteSettings = field(default_factory=SiteSettings)
    geoip: GeoIPSettings = field(default_factory=GeoIPSettings)


_SECTIONS: dict[str, type] = {
    "metadata": MetadataSettings,
    "rucio": RucioSettings,
    "sites": SiteSettings,
    "geoip": GeoIPSettings,
}

# Keys whose values are never quoted back in an error message.
SECRET_KEYS = ("password", "oidc_client_secret")

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")

#: Per ``[rucio] auth``, the keys naming files that hold its secrets.
AUTH_SECRET_FILES = {
    "userpass": ("password_file",),
    "token_file": ("token_file",),
    "oidc": ("oidc_client_secret_file",),
}
_CHOICES = {
    ("rucio", "auth"): tuple(AUTH_SECRET_FILES),
    ("metadata", "access_url"): ("datalink", "metadata"),
    # "" leaves link_auth empty (unknown) where the site source does not say.
    ("sites", "link_auth"): (*LINK_AUTH_VALUES, ""),
}


def find_config_file(dachs_root: str | os.PathLike | None = None) -> Path | None:
    """Return the configuration file to use, or None when there is none.

    ``$RUCIO_RD_CONFIG`` wins; it must then exist.  Otherwise
    ``<dachs_root>/etc/rucio_rd.toml`` is used if present.
    """
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}={explicit} does not name a readable file")
        return path
    if dachs_root is not None:
        candidate = Path(dachs_root) / "etc" / CONFIG_FILE_NAME
        if candidate.is_file():
            return candidate
    return None


def _choices(section: str, key: str) -> tuple[str, ...] | None:
    """The values a key may take, where they are a closed set."""
    if (section, key) == ("sites", "source"):
        # The table of site sources is the one list of them.
        from rucio_rd.sites import SITE_SOURCES

        return tuple(SITE_SOURCES)
    return _CHOICES.get((section, key))


def _coerce(section: str, key: str, value: Any, default: Any) -> Any:
    """Turn a file or environment value into the type of the default."""
    name = f"[{section}] {key}"
    if isinstance(default, bool):
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, not {value!r}")
    if isinstance(default, int | float):
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a number, not {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, not {value!r}") from None
        if not math.isfinite(number) or number < 0:
            raise ConfigError(f"{name} must be a finite number >= 0, not {value!r}")
        if key == "timeout" and number == 0:
            raise ConfigError(f"{name} must be more than 0 seconds")
        if isinstance(default, int):
            if number != int(number):
                raise ConfigError(f"{name} must be a whole number, not {value!r}")
            return int(number)
        return number
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be a list of strings, not {value!r}")
        return tuple(str(item) for item in value)
    if not isinstance(value, str):
        shown = "a secret" if key in SECRET_KEYS else repr(value)
        raise ConfigError(f"{name} must be a string, not {shown}")
    choices = _choices(section, key)
    if choices and value not in choices:
        raise ConfigError(f"{name} = {value!r} is not one of {', '.join(choices)}")
    if (section, key) == ("sites", "soda_id_authority") and value and not re.fullmatch(
            r"[A-Za-z0-9][A-Za-z0-9._~-]*", value):
        raise ConfigError(f"{name} = {value!r} is not an IVOA authority (a name such as"
                          " skao.int, without ivo:// or a path)")
    if (section, key) == ("sites", "soda_id_template"):
        problem = id_template_problem(value)
        if problem:
            raise ConfigError(f"{name}: {problem}")
    return value


def _section(
    section: str, cls: type, from_file: dict[str, Any], environ: dict[str, str]
) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(from_file) - set(known))
    if unknown:
        raise ConfigError(
            f"[{section}] has unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    defaults = cls()
    values = {}
    for name in known:
        default = getattr(defaults, name)
        raw = from_file.get(name, default)
        env_name = f"{ENV_PREFIX}{section}_{name}".upper()
        if env_name in environ:
            raw = environ[env_name]
        values[name] = _coerce(section, name, raw, default)
    return cls(**values)


def _read_secret(key: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as source:
            secret = source.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"[rucio] {key} = {path!r} cannot be read: {reason}") from None
    if not secret:
        raise ConfigError(f"[rucio] {key} = {path!r} is empty")
    _check_secret(key, secret)
    return secret


def _check_secret(key: str, secret: str) -> None:
    """Secrets travel in HTTP headers: printable ASCII only.  Never quote the value."""
    if not all(" " <= char <= "~" for char in secret):
        raise ConfigError(
            f"[rucio] {key}: the secret has control or non-ASCII characters,"
            " which cannot be sent to Rucio"
        )


def _read_secret_files(rucio: RucioSettings) -> RucioSettings:
    """Take secrets from the files named by *_file keys (they win over inline values)."""
    for key in SECRET_KEYS:
        if getattr(rucio, key):
            _check_secret(key, getattr(rucio, key))
    changes = {}
    if rucio.password_file:
        changes["password"] = _read_secret("password_file", rucio.password_file)
    if rucio.oidc_client_secret_file:
        changes["oidc_client_secret"] = _read_secret(
            "oidc_client_secret_file", rucio.oidc_client_secret_file
        )
    return replace(rucio, **changes) if changes else rucio


def load_settings(
    path: str | os.PathLike | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Read and validate the configuration.

    Parameters
    ----------
    path
        The TOML file; None means defaults plus environment only.
    environ
        The environment to take overrides from (defaults to ``os.environ``).
    """
    environ = dict(os.environ if environ is None else environ)
    document: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as source:
                document = tomllib.load(source)
        except OSError as exc:
            raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"configuration {path} is not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(document) - set(_SECTIONS))
    if unknown:
        raise ConfigError(
            f"unknown section(s) {', '.join(unknown)}; known: {', '.join(_SECTIONS)}"
        )
    parts = {}
    for section, cls in _SECTIONS.items():
        from_file = document.get(section, {})
        if not isinstance(from_file, dict):
            raise ConfigError(f"[{section}] must be a table of keys")
        parts[section] = _section(section, cls, from_file, environ)
    parts["rucio"] = _read_secret_files(parts["rucio"])
    for proxy in parts["geoip"].trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                f"[geoip] trusted_proxies: {proxy!r} is not an IP address or network"
            ) from None
    settings = Settings(**parts)
    if not _TABLE_NAME.fullmatch(settings.metadata.table):
        raise ConfigError(
            f"[metadata] table = {settings.metadata.table!r} must be a plain"
            " (optionally schema-qualified) table name"
        )
    return settings
