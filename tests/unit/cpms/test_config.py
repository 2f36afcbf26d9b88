"""Settings: defaults from DESIGN.md, precedence, and errors that name the value."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cpms.admission import AdmissionPolicy
from cpms.config import OPTIONS, Settings, load_settings, normalise_database_url
from cpms.errors import ConfigError


def test_defaults_are_the_contract_in_design_md() -> None:
    settings = load_settings({}, {})
    assert (settings.ocpp_host, settings.ocpp_port) == ("127.0.0.1", 9000)
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8080)
    assert settings.database_url == "sqlite+aiosqlite:///./cpms.db"
    assert settings.station_admission is AdmissionPolicy.KNOWN
    assert settings.base_url() == "http://127.0.0.1:8080"


def test_every_option_is_a_settings_field_with_the_same_default() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(Settings)}
    assert set(fields) == {option.name for option in OPTIONS}
    for option in OPTIONS:
        assert fields[option.name] == option.default, option.name


def test_every_option_has_a_cpms_variable_and_a_flag() -> None:
    for option in OPTIONS:
        assert option.env == "CPMS_" + option.name.upper()
        assert option.flag.startswith("--")
        assert "_" not in option.flag


def test_a_flag_beats_a_variable_which_beats_the_file(tmp_path: Path) -> None:
    config = tmp_path / "cpms.toml"
    config.write_text('http_port = 1111\nocpp_port = 2222\nlog_level = "debug"\n')
    env = {"CPMS_CONFIG": str(config), "CPMS_HTTP_PORT": "3333", "CPMS_OCPP_PORT": "4444"}
    settings = load_settings({"ocpp_port": "5555"}, env)
    assert settings.http_port == 3333
    assert settings.ocpp_port == 5555
    assert settings.log_level == "DEBUG"


def test_overrides_change_defaults_but_lose_to_the_user() -> None:
    open_policy = {"station_admission": AdmissionPolicy.OPEN}
    assert load_settings({}, {}, overrides=open_policy).station_admission is AdmissionPolicy.OPEN
    user = {"CPMS_STATION_ADMISSION": "known"}
    settings = load_settings({}, user, overrides=open_policy)
    assert settings.station_admission is AdmissionPolicy.KNOWN


def test_nested_toml_tables_name_grouped_settings(tmp_path: Path) -> None:
    config = tmp_path / "cpms.toml"
    config.write_text('[default_location]\nname = "Depot"\ntime_zone = "Europe/Berlin"\n')
    settings = load_settings({"config": str(config)}, {})
    assert settings.default_location_name == "Depot"
    assert settings.default_location_time_zone == "Europe/Berlin"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CPMS_HTTP_PORT": "abc"}, "CPMS_HTTP_PORT"),
        ({"CPMS_OCPP_PORT": "65536"}, "CPMS_OCPP_PORT"),
        ({"CPMS_STATION_ADMISSION": "maybe"}, "CPMS_STATION_ADMISSION"),
        ({"CPMS_DATABASE_URL": "mysql://db/x"}, "CPMS_DATABASE_URL"),
        ({"CPMS_PING_INTERVAL": "0"}, "CPMS_PING_INTERVAL"),
        ({"CPMS_AUTO_MIGRATE": "perhaps"}, "CPMS_AUTO_MIGRATE"),
        ({"CPMS_COUNTRY_CODE": "nl"}, "CPMS_COUNTRY_CODE"),
        ({"CPMS_DEFAULT_LOCATION_TIME_ZONE": "Mars/Olympus"}, "CPMS_DEFAULT_LOCATION_TIME_ZONE"),
        ({"CPMS_DEFAULT_LOCATION_LATITUDE": "52.3"}, "CPMS_DEFAULT_LOCATION_LATITUDE"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable_and_what_is_allowed(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({}, env)
    message = str(raised.value)
    assert message.startswith(named + "=")
    assert "not allowed" in message
    assert raised.value.allowed


def test_a_bad_flag_is_named_as_a_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--http-port='x'"):
        load_settings({"http_port": "x"}, {})


def test_a_bad_file_value_names_the_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "cpms.toml"
    config.write_text('http_port = "x"\n')
    with pytest.raises(ConfigError) as raised:
        load_settings({"config": str(config)}, {})
    assert str(config) in str(raised.value)
    assert "http_port" in str(raised.value)


def test_an_unknown_file_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "cpms.toml"
    config.write_text("htp_port = 1\n")
    with pytest.raises(ConfigError, match="htp_port"):
        load_settings({"config": str(config)}, {})


def test_a_missing_or_broken_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="existing TOML file"):
        load_settings({"config": str(tmp_path / "absent.toml")}, {})
    broken = tmp_path / "broken.toml"
    broken.write_text("http_port = = 1\n")
    with pytest.raises(ConfigError, match="valid TOML"):
        load_settings({"config": str(broken)}, {})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u@h:5432/d", "postgresql+asyncpg://u@h:5432/d"),
        ("postgres://u@h/d", "postgresql+asyncpg://u@h/d"),
    ],
)
def test_database_urls_get_their_async_driver(given: str, expected: str) -> None:
    assert normalise_database_url(given) == expected


def test_public_url_wins_over_the_listening_address() -> None:
    settings = Settings(http_host="0.0.0.0", public_url="https://cpms.example.com/")
    assert settings.base_url() == "https://cpms.example.com"
    assert Settings(http_host="0.0.0.0").base_url(8081) == "http://127.0.0.1:8081"
