"""Settings of a running CPMS: one table of options, read from flags, environment and TOML.

Every option has a name (the TOML key), a ``CPMS_*`` environment variable, a ``--flag``, a
default and a parser that says what is allowed. Precedence, highest first: command-line flag,
environment variable, config file (``--config FILE`` or ``CPMS_CONFIG``), default. A value that
does not parse raises ``ConfigError`` naming the value as the user wrote it; ``cpms serve``
turns that into exit code 2.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cpms.admission import AdmissionPolicy
from cpms.errors import ConfigError
from cpms.event_loop import EventLoop, installed

__all__ = ["OPTIONS", "Option", "Settings", "load_settings", "normalise_database_url"]


class _Invalid(ValueError):
    """A value does not parse; the message says what is allowed."""


def _port(value: object) -> int:
    try:
        port = int(str(value).strip())
    except ValueError:
        raise _Invalid("an integer TCP port from 0 to 65535 (0 picks a free port)") from None
    if not 0 <= port <= 65535:
        raise _Invalid("an integer TCP port from 0 to 65535 (0 picks a free port)")
    return port


def _host(value: object) -> str:
    text = str(value).strip()
    if text in ("localhost", ""):
        return text or "127.0.0.1"
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", text):
            raise _Invalid("an IP address or host name to listen on, e.g. 127.0.0.1") from None
    return text


def _seconds(value: object) -> float:
    try:
        seconds = float(str(value).strip())
    except ValueError:
        raise _Invalid("a number of seconds greater than 0") from None
    if not seconds > 0:
        raise _Invalid("a number of seconds greater than 0")
    return seconds


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise _Invalid("true or false")


def _admission(value: object) -> AdmissionPolicy:
    try:
        return AdmissionPolicy(str(value).strip().lower())
    except ValueError:
        raise _Invalid(
            "'known' (only created stations connect), 'open' (register unknown ids) "
            "or 'pending' (register unknown ids, boot Pending until approved)"
        ) from None


def _event_loop(value: object) -> EventLoop:
    try:
        choice = EventLoop(str(value).strip().lower())
    except ValueError:
        raise _Invalid(
            "'auto' (uvloop where installed), 'uvloop' or 'asyncio' (the standard library's)"
        ) from None
    if choice is EventLoop.UVLOOP and not installed():
        raise _Invalid("'auto' or 'asyncio': uvloop is not installed on this machine")
    return choice


def _heartbeat(value: object) -> int:
    try:
        seconds = int(str(value).strip())
    except ValueError:
        raise _Invalid("a whole number of seconds from 1 to 86400") from None
    if not 1 <= seconds <= 86400:
        raise _Invalid("a whole number of seconds from 1 to 86400")
    return seconds


def _seconds_or_off(value: object) -> float:
    try:
        seconds = float(str(value).strip())
    except ValueError:
        raise _Invalid("a number of seconds, or 0 for never") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise _Invalid("a number of seconds, or 0 for never")
    return seconds


def _existing_file(value: object) -> str | None:
    text = str(value).strip()
    if not text:
        return None
    if not Path(text).is_file():
        raise _Invalid("the path of a readable PEM file")
    return text


def _log_level(value: object) -> str:
    text = str(value).strip().upper()
    if text not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise _Invalid("one of DEBUG, INFO, WARNING, ERROR")
    return text


def _pattern(regex: str, allowed: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = str(value).strip()
        if not re.fullmatch(regex, text):
            raise _Invalid(allowed)
        return text

    return parse


def _text(max_length: int) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = str(value).strip()
        if not 0 < len(text) <= max_length or any(c in text for c in "\r\n\t"):
            raise _Invalid(f"text of 1 to {max_length} characters on one line")
        return text

    return parse


def _time_zone(value: object) -> str:
    text = str(value).strip()
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise _Invalid("an IANA time zone name, e.g. Europe/Amsterdam") from None
    return text


def _optional_text(value: object) -> str | None:
    text = str(value).strip()
    return text or None


def normalise_database_url(url: str) -> str:
    """Return ``url`` with the async driver SQLAlchemy needs, or raise ``ValueError``.

    ``sqlite:///x.db`` becomes ``sqlite+aiosqlite:///x.db`` and ``postgresql://...`` becomes
    ``postgresql+asyncpg://...``, so users can paste the URLs they know.
    """
    text = url.strip()
    for prefix, driver in (
        ("sqlite+aiosqlite://", "sqlite+aiosqlite://"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql+asyncpg://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if text.startswith(prefix):
            return driver + text[len(prefix) :]
    raise ValueError(url)


def _database_url(value: object) -> str:
    try:
        return normalise_database_url(str(value))
    except ValueError:
        raise _Invalid(
            "a SQLAlchemy URL for SQLite (sqlite+aiosqlite:///./cpms.db) "
            "or PostgreSQL (postgresql://user@host:5432/db)"
        ) from None


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: its name, default, parser and help text."""

    name: str
    default: Any
    parse: Callable[[object], Any]
    help: str
    group: str = "general"

    @property
    def env(self) -> str:
        """The environment variable that sets this option."""
        return "CPMS_" + self.name.upper()

    @property
    def flag(self) -> str:
        """The command-line flag that sets this option."""
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("config", None, _optional_text, "TOML file with settings (keys as below)"),
    Option("log_level", "INFO", _log_level, "DEBUG, INFO, WARNING or ERROR"),
    Option(
        "event_loop",
        EventLoop.AUTO,
        _event_loop,
        "auto: uvloop where installed (quicker), else asyncio; or uvloop, or asyncio",
    ),
    # Listeners
    Option("ocpp_host", "127.0.0.1", _host, "address the OCPP websocket server binds", "ocpp"),
    Option("ocpp_port", 9000, _port, "port of ws://HOST:PORT/ocpp/{station_id}", "ocpp"),
    Option("ping_interval", 30.0, _seconds, "seconds between websocket pings", "ocpp"),
    Option("ping_timeout", 30.0, _seconds, "seconds to wait for a pong", "ocpp"),
    Option(
        "handshake_timeout",
        30.0,
        _seconds,
        "seconds a station may take to open its websocket (a reconnect storm needs time)",
        "ocpp",
    ),
    Option(
        "station_admission",
        AdmissionPolicy.KNOWN,
        _admission,
        "known: only created stations may connect; open: register unknown ids; "
        "pending: register them, boot Pending until approved",
        "ocpp",
    ),
    Option(
        "accept_unknown_tokens",
        False,
        _boolean,
        "let idTags nobody issued charge (demos, free charging); else they are refused",
        "ocpp",
    ),
    Option(
        "heartbeat_interval",
        300,
        _heartbeat,
        "HeartbeatInterval sent at boot (s); a station silent twice as long goes offline",
        "ocpp",
    ),
    Option(
        "command_timeout",
        30.0,
        _seconds,
        "seconds to wait for a station to answer a command",
        "ocpp",
    ),
    Option(
        "stuck_session_after",
        172800.0,
        _seconds_or_off,
        "close a session with no news from its station for this long (s) at its last "
        "trusted reading, with a CDR saying so; 0 never closes one",
        "ocpp",
    ),
    Option(
        "ocpp_tls_cert",
        None,
        _existing_file,
        "PEM certificate chain: serve wss:// (Security Profile 2); needs ocpp_tls_key",
        "ocpp",
    ),
    Option("ocpp_tls_key", None, _existing_file, "PEM private key of ocpp_tls_cert", "ocpp"),
    Option("http_host", "127.0.0.1", _host, "address the HTTP server (OCPI, API) binds", "http"),
    Option("http_port", 8080, _port, "port of the OCPI and operator API", "http"),
    Option(
        "public_url",
        None,
        _optional_text,
        "base URL partners reach the HTTP server at (default http://HOST:PORT)",
        "http",
    ),
    Option(
        "admin_token",
        None,
        _optional_text,
        "operator API bearer token (unset: one is generated on first start)",
        "http",
    ),
    Option(
        "secret_key_file",
        "cpms.key",
        _text(255),
        "file with the key that encrypts partners' OCPI tokens in the database "
        "(created on first start; keep it out of database backups)",
        "http",
    ),
    Option(
        "ocpi_command_timeout",
        60.0,
        _seconds,
        "seconds an eMSP is told to wait for a command's result (OCPI CommandResponse)",
        "http",
    ),
    Option(
        "ocpi_authorize_timeout",
        5.0,
        _seconds,
        "seconds to wait for an eMSP's real-time token authorization",
        "http",
    ),
    Option(
        "ocpi_push_retry_max",
        600.0,
        _seconds,
        "longest wait (s) between two tries of a push to a partner that is down",
        "http",
    ),
    # Database
    Option(
        "database_url",
        "sqlite+aiosqlite:///./cpms.db",
        _database_url,
        "SQLite file or PostgreSQL URL",
        "database",
    ),
    Option(
        "auto_migrate",
        True,
        _boolean,
        "create or upgrade the schema on start (false: refuse to start if behind)",
        "database",
    ),
    # Our identity as a CPO
    Option(
        "country_code",
        "NL",
        _pattern(r"[A-Z]{2}", "two capital letters (ISO 3166-1 alpha-2)"),
        "our OCPI country code",
        "cpo",
    ),
    Option(
        "party_id",
        "CPM",
        _pattern(r"[A-Z0-9]{3}", "three capital letters or digits"),
        "our OCPI party id",
        "cpo",
    ),
    # Where stations admitted under the `open` policy are put
    Option(
        "default_location_id",
        "DEFAULT",
        _pattern(r"[A-Za-z0-9._-]{1,36}", "1 to 36 of A-Z a-z 0-9 . _ -"),
        "id of the location admitted stations join",
        "default_location",
    ),
    Option("default_location_name", "Default location", _text(255), "its name", "default_location"),
    Option(
        "default_location_address",
        "Stationsplein 1",
        _text(255),
        "its street address",
        "default_location",
    ),
    Option("default_location_city", "Amsterdam", _text(45), "its city", "default_location"),
    Option(
        "default_location_postal_code", "1012 AB", _text(10), "its postal code", "default_location"
    ),
    Option(
        "default_location_country",
        "NLD",
        _pattern(r"[A-Z]{3}", "three capital letters (ISO 3166-1 alpha-3)"),
        "its country",
        "default_location",
    ),
    Option(
        "default_location_latitude",
        "52.378900",
        _pattern(r"-?[0-9]{1,2}\.[0-9]{5,7}", "a latitude like 52.37890 (5 to 7 decimals)"),
        "its latitude",
        "default_location",
    ),
    Option(
        "default_location_longitude",
        "4.900400",
        _pattern(r"-?[0-9]{1,3}\.[0-9]{5,7}", "a longitude like 4.90040 (5 to 7 decimals)"),
        "its longitude",
        "default_location",
    ),
    Option(
        "default_location_time_zone",
        "Europe/Amsterdam",
        _time_zone,
        "its IANA time zone",
        "default_location",
    ),
)

_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings. Build with ``load_settings``; tests may use ``Settings(...)``."""

    config: str | None = None
    log_level: str = "INFO"
    event_loop: EventLoop = EventLoop.AUTO
    ocpp_host: str = "127.0.0.1"
    ocpp_port: int = 9000
    ping_interval: float = 30.0
    ping_timeout: float = 30.0
    handshake_timeout: float = 30.0
    station_admission: AdmissionPolicy = AdmissionPolicy.KNOWN
    accept_unknown_tokens: bool = False
    heartbeat_interval: int = 300
    command_timeout: float = 30.0
    stuck_session_after: float = 172800.0
    ocpp_tls_cert: str | None = None
    ocpp_tls_key: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    public_url: str | None = None
    admin_token: str | None = None
    secret_key_file: str = "cpms.key"
    ocpi_command_timeout: float = 60.0
    ocpi_authorize_timeout: float = 5.0
    ocpi_push_retry_max: float = 600.0
    database_url: str = "sqlite+aiosqlite:///./cpms.db"
    auto_migrate: bool = True
    country_code: str = "NL"
    party_id: str = "CPM"
    default_location_id: str = "DEFAULT"
    default_location_name: str = "Default location"
    default_location_address: str = "Stationsplein 1"
    default_location_city: str = "Amsterdam"
    default_location_postal_code: str = "1012 AB"
    default_location_country: str = "NLD"
    default_location_latitude: str = "52.378900"
    default_location_longitude: str = "4.900400"
    default_location_time_zone: str = "Europe/Amsterdam"

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied (no validation: for tests and the runtime)."""
        return dataclasses.replace(self, **changes)

    def base_url(self, http_port: int | None = None) -> str:
        """Return the public base URL of the HTTP server, without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::", "") else self.http_host
        return f"http://{host}:{http_port if http_port is not None else self.http_port}"


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}".replace("-", "_")
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "_"))
        else:
            flat[name] = value
    return flat


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        with Path(path).open("rb") as file:
            table = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError("config", path, "an existing TOML file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("config", path, f"valid TOML ({error})") from None
    values = _flatten(table)
    for key in values:
        if key not in _BY_NAME or key == "config":
            raise ConfigError(
                f"{path}: {key}", values[key], "a known setting (see `cpms serve --help`)"
            )
    return values


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build validated settings from flags, environment and the config file they name.

    ``flags`` maps option names to values given on the command line (``None`` = not given).
    ``overrides`` replace defaults (``cpms demo`` uses it: open admission) and lose to
    everything the user set. Raises ``ConfigError`` for the first value that does not parse.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = environ if environ is not None else {}
    sources: list[tuple[str, Callable[[Option], str], Mapping[str, Any]]] = [
        ("flag", lambda o: o.flag, flags),
        ("env", lambda o: o.env, {o.name: environ[o.env] for o in OPTIONS if o.env in environ}),
    ]
    config_path = flags.get("config") or environ.get("CPMS_CONFIG")
    if config_path:
        file_values = _read_config_file(str(config_path))
        sources.append(("file", lambda o: f"{config_path}: {o.name}", file_values))

    # Every value given is checked, also one another source overrides: it would bite later.
    parsed: list[dict[str, Any]] = []
    for _source, label, table in sources:
        checked: dict[str, Any] = {}
        for option in OPTIONS:
            if option.name in table:
                raw = table[option.name]
                try:
                    checked[option.name] = option.parse(raw)
                except _Invalid as invalid:
                    raise ConfigError(label(option), raw, str(invalid)) from None
        parsed.append(checked)
    values: dict[str, Any] = {}
    for option in OPTIONS:
        given = [checked[option.name] for checked in parsed if option.name in checked]
        values[option.name] = (
            given[0] if given else (overrides or {}).get(option.name, option.default)
        )
    if (values["ocpp_tls_cert"] is None) != (values["ocpp_tls_key"] is None):
        missing = "ocpp_tls_key" if values["ocpp_tls_key"] is None else "ocpp_tls_cert"
        option = _BY_NAME[missing]
        raise ConfigError(option.env, None, "set both ocpp_tls_cert and ocpp_tls_key, or neither")
    return Settings(**values)
