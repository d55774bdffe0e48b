"""Unit tests for rucio_rd.config: the TOML file, environment overrides and validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rucio_rd import config
from rucio_rd.config import ConfigError, find_config_file, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "res" / "rucio_rd.toml.example"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RUCIO_RD_* variable of the calling shell may leak into a test."""
    import os

    for name in list(os.environ):
        if name.startswith(config.ENV_PREFIX):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "rucio_rd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- defaults and files ---------------------------------------------------------------


def test_defaults_with_no_file_and_no_environment() -> None:
    settings = load_settings(None, environ={})
    assert settings == config.Settings()
    assert settings.metadata.table == "dids"
    assert settings.metadata.max_bad_records_reported == 20
    assert settings.rucio.auth == "userpass"
    assert settings.rucio.timeout == 10.0
    assert settings.sites.source == "site_directory"
    assert settings.geoip.trusted_proxies == ()


def test_values_from_toml_file_replace_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [metadata]
        dsn = "dbname=meta host=db.example"
        table = "public.did_meta"
        max_bad_records_reported = 5

        [rucio]
        url = "https://rucio.example"
        auth = "oidc"
        timeout = 3

        [sites]
        source = "file"
        file = "/etc/sites.json"
        ttl = 60.5

        [geoip]
        database = "/var/lib/GeoLite2-City.mmdb"
        trusted_proxies = ["10.0.0.1", "10.0.0.2"]
        """,
    )
    settings = load_settings(path, environ={})
    assert settings.metadata.dsn == "dbname=meta host=db.example"
    assert settings.metadata.table == "public.did_meta"
    assert settings.metadata.max_bad_records_reported == 5
    assert settings.rucio.url == "https://rucio.example"
    assert settings.rucio.auth == "oidc"
    assert settings.rucio.timeout == 3.0
    assert isinstance(settings.rucio.timeout, float)
    assert settings.sites.source == "file"
    assert settings.sites.file == "/etc/sites.json"
    assert settings.sites.ttl == 60.5
    assert settings.geoip.database == "/var/lib/GeoLite2-City.mmdb"
    assert settings.geoip.trusted_proxies == ("10.0.0.1", "10.0.0.2")


def test_keys_missing_from_file_keep_their_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, '[rucio]\naccount = "alice"\n')
    settings = load_settings(path, environ={})
    assert settings.rucio.account == "alice"
    assert settings.rucio.url == config.RucioSettings().url
    assert settings.metadata == config.MetadataSettings()


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, ""), environ={}) == config.Settings()


def test_shipped_example_config_is_valid() -> None:
    settings = load_settings(EXAMPLE, environ={})
    assert settings.metadata.table == "dids"
    assert settings.geoip.trusted_proxies == ()


# --- environment overrides ------------------------------------------------------------


def test_env_override_wins_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[rucio]\npassword = "from-file"\ntimeout = 4\n')
    settings = load_settings(
        path, environ={"RUCIO_RD_RUCIO_PASSWORD": "from-env", "RUCIO_RD_RUCIO_TIMEOUT": "7.5"}
    )
    assert settings.rucio.password == "from-env"
    assert settings.rucio.timeout == 7.5


def test_env_override_applies_without_a_file() -> None:
    settings = load_settings(None, environ={"RUCIO_RD_METADATA_MAX_BAD_RECORDS_REPORTED": "3"})
    assert settings.metadata.max_bad_records_reported == 3


def test_env_override_name_must_be_upper_case() -> None:
    settings = load_settings(None, environ={"rucio_rd_rucio_account": "lower"})
    assert settings.rucio.account == "root"


def test_env_override_is_read_from_os_environ_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUCIO_RD_SITES_URL", "http://sites.example")
    assert load_settings(None).sites.url == "http://sites.example"


def test_explicit_environ_ignores_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUCIO_RD_SITES_URL", "http://sites.example")
    assert load_settings(None, environ={}).sites.url == config.SiteSettings().url


def test_env_override_of_string_may_be_empty(tmp_path: Path) -> None:
    path = write(tmp_path, '[rucio]\npassword = "secret"\n')
    assert load_settings(path, environ={"RUCIO_RD_RUCIO_PASSWORD": ""}).rucio.password == ""


def test_env_override_is_validated_and_error_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"\[rucio\] timeout must be a number.*'soon'"):
        load_settings(None, environ={"RUCIO_RD_RUCIO_TIMEOUT": "soon"})


def test_trusted_proxies_from_comma_separated_env_string() -> None:
    settings = load_settings(
        None, environ={"RUCIO_RD_GEOIP_TRUSTED_PROXIES": " 10.0.0.1, ,192.168.1.0/24 ,"}
    )
    assert settings.geoip.trusted_proxies == ("10.0.0.1", "192.168.1.0/24")


def test_trusted_proxies_empty_env_string_gives_empty_tuple(tmp_path: Path) -> None:
    path = write(tmp_path, '[geoip]\ntrusted_proxies = ["10.0.0.1"]\n')
    settings = load_settings(path, environ={"RUCIO_RD_GEOIP_TRUSTED_PROXIES": ""})
    assert settings.geoip.trusted_proxies == ()


# --- unknown names --------------------------------------------------------------------


def test_unknown_section_error_names_the_section(tmp_path: Path) -> None:
    path = write(tmp_path, '[rucoi]\nurl = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert "rucoi" in message
    assert "known: metadata, rucio, sites, geoip" in message


def test_unknown_key_error_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[rucio]\npasword = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert "[rucio]" in message
    assert "pasword" in message
    assert "password" in message  # the known keys are listed


def test_nested_table_is_an_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[rucio.extra]\na = 1\n")
    with pytest.raises(ConfigError, match=r"\[rucio\] has unknown key\(s\) extra"):
        load_settings(path, environ={})


def test_section_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "rucio = 5\n")
    with pytest.raises(ConfigError, match=r"\[rucio\] must be a table"):
        load_settings(path, environ={})


# --- choices --------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["userpass", "token_file", "oidc"])
def test_each_rucio_auth_choice_is_accepted(auth: str) -> None:
    assert load_settings(None, environ={"RUCIO_RD_RUCIO_AUTH": auth}).rucio.auth == auth


@pytest.mark.parametrize("auth", ["kerberos", "USERPASS", "oidc ", ""])
def test_bad_rucio_auth_choice_is_refused_with_the_choices(tmp_path: Path, auth: str) -> None:
    path = write(tmp_path, f'[rucio]\nauth = "{auth}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert "[rucio] auth" in message
    assert repr(auth) in message
    assert "userpass, token_file, oidc" in message


@pytest.mark.parametrize("source", ["site_directory", "file", "rucio"])
def test_each_sites_source_choice_is_accepted(source: str) -> None:
    settings = load_settings(None, environ={"RUCIO_RD_SITES_SOURCE": source})
    assert settings.sites.source == source


def test_bad_sites_source_from_env_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\[sites\] source = 'grafana' is not one of"):
        load_settings(None, environ={"RUCIO_RD_SITES_SOURCE": "grafana"})


# --- numbers, strings, lists ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[rucio]\ntimeout = -1\n", "[rucio] timeout"),
        ("[sites]\nttl = -0.5\n", "[sites] ttl"),
        ("[metadata]\nmax_bad_records_reported = -3\n", "[metadata] max_bad_records_reported"),
    ],
)
def test_negative_number_is_refused_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), environ={})
    assert key in str(caught.value)
    assert "must be a finite number >= 0" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[rucio]\ntimeout = "ten"\n', "[rucio] timeout"),
        ("[sites]\nttl = [1]\n", "[sites] ttl"),
    ],
)
def test_non_numeric_number_is_refused_naming_the_key(
    tmp_path: Path, text: str, key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), environ={})
    assert key in str(caught.value)
    assert "must be a number" in str(caught.value)


def test_numeric_string_in_file_is_coerced(tmp_path: Path) -> None:
    path = write(tmp_path, '[rucio]\ntimeout = "2.5"\n[metadata]\nmax_bad_records_reported = "7"\n')
    settings = load_settings(path, environ={})
    assert settings.rucio.timeout == 2.5
    assert settings.metadata.max_bad_records_reported == 7


def test_zero_is_an_accepted_number() -> None:
    env = {"RUCIO_RD_METADATA_MAX_BAD_RECORDS_REPORTED": "0", "RUCIO_RD_SITES_TTL": "0"}
    settings = load_settings(None, environ=env)
    assert settings.metadata.max_bad_records_reported == 0
    assert settings.sites.ttl == 0.0


def test_nan_timeout_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\[rucio\] timeout"):
        load_settings(None, environ={"RUCIO_RD_RUCIO_TIMEOUT": "nan"})


def test_boolean_is_not_a_number(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[rucio\] timeout"):
        load_settings(write(tmp_path, "[rucio]\ntimeout = true\n"), environ={})


def test_fractional_count_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[metadata]\nmax_bad_records_reported = 2.5\n")
    with pytest.raises(ConfigError, match="max_bad_records_reported"):
        load_settings(path, environ={})


@pytest.mark.parametrize("text", ["[rucio]\nurl = 5\n", "[rucio]\nurl = [\"a\"]\n"])
def test_non_string_for_string_key_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"\[rucio\] url must be a string"):
        load_settings(write(tmp_path, text), environ={})


def test_trusted_proxies_from_comma_string_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[geoip]\ntrusted_proxies = "10.0.0.1,10.0.0.2"\n')
    assert load_settings(path, environ={}).geoip.trusted_proxies == ("10.0.0.1", "10.0.0.2")


def test_trusted_proxies_list_items_become_strings(tmp_path: Path) -> None:
    path = write(tmp_path, '[geoip]\ntrusted_proxies = ["10.0.0.1", "10.1.0.0/16"]\n')
    assert load_settings(path, environ={}).geoip.trusted_proxies == ("10.0.0.1", "10.1.0.0/16")


def test_trusted_proxy_that_is_no_address_is_refused_at_load(tmp_path: Path) -> None:
    path = write(tmp_path, '[geoip]\ntrusted_proxies = ["10.0.0.1", "proxy.example"]\n')
    with pytest.raises(ConfigError, match="'proxy.example' is not an IP address or network"):
        load_settings(path, environ={})


def test_zero_timeout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[rucio\] timeout must be more than 0"):
        load_settings(write(tmp_path, "[rucio]\ntimeout = 0\n"), environ={})


def test_mistyped_secret_is_not_quoted(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "[rucio]\npassword = 123456789\n"), environ={})
    assert "123456789" not in str(caught.value)


@pytest.mark.parametrize("secret", ["part1\npart2", "p\u00e4ssw\u00f6rd", "tab\there"])
def test_secret_files_with_characters_no_header_can_carry_are_refused(
    tmp_path: Path, secret: str
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret, encoding="utf-8")
    path = write(tmp_path, f'[rucio]\npassword_file = "{secret_file}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert "password_file" in str(caught.value)
    assert secret not in str(caught.value) and "part2" not in str(caught.value)


def test_trusted_proxies_that_is_a_number_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[geoip]\ntrusted_proxies = 5\n")
    with pytest.raises(ConfigError, match=r"\[geoip\] trusted_proxies must be a list"):
        load_settings(path, environ={})


# --- coercion of booleans (no bool setting exists yet: exercised directly) -------------


@pytest.mark.parametrize("raw", ["1", "true", "Yes", " ON ", True])
def test_bool_coercion_truthy(raw: object) -> None:
    assert config._coerce("s", "k", raw, False) is True


@pytest.mark.parametrize("raw", ["0", "false", "NO", "off", False])
def test_bool_coercion_falsy(raw: object) -> None:
    assert config._coerce("s", "k", raw, True) is False


@pytest.mark.parametrize("raw", ["maybe", "", 1, 0, None, 1.0])
def test_bool_coercion_refuses_other_values_naming_the_key(raw: object) -> None:
    with pytest.raises(ConfigError, match=r"\[s\] k must be true or false"):
        config._coerce("s", "k", raw, False)


def test_tuple_coercion_accepts_a_tuple() -> None:
    assert config._coerce("geoip", "trusted_proxies", ("a", "b"), ()) == ("a", "b")


# --- unreadable or broken files -------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["[rucio\n", 'url = "unterminated\n', "[rucio]\nurl = 1\nurl = 2\n", "= 1\n"]
)
def test_invalid_toml_is_a_config_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert str(path) in str(caught.value)
    assert "not valid TOML" in str(caught.value)


def test_missing_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert str(path) in str(caught.value)
    assert "No such file" in str(caught.value)


def test_directory_as_config_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_settings(tmp_path, environ={})


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[rucio]\naccount = "r\xe9mi"\n')
    with pytest.raises(ConfigError):
        load_settings(path, environ={})


# --- table-name validation ------------------------------------------------------------


@pytest.mark.parametrize("table", ["dids", "did_meta", "public.dids", "Rucio2.DIDS_v2"])
def test_plain_or_schema_qualified_table_name_is_accepted(table: str) -> None:
    settings = load_settings(None, environ={"RUCIO_RD_METADATA_TABLE": table})
    assert settings.metadata.table == table


@pytest.mark.parametrize(
    "table", ["", "dids; DROP TABLE x", "di ds", 'public."dids"', "dids--", "a-b", "."]
)
def test_table_name_with_other_characters_is_refused(table: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={"RUCIO_RD_METADATA_TABLE": table})
    assert "[metadata] table" in str(caught.value)
    assert repr(table) in str(caught.value)


@pytest.mark.parametrize("table", [".dids", "dids.", "public..dids"])
def test_table_name_with_empty_part_is_refused(table: str) -> None:
    with pytest.raises(ConfigError):
        load_settings(None, environ={"RUCIO_RD_METADATA_TABLE": table})


# --- find_config_file -----------------------------------------------------------------


def test_find_config_file_env_names_missing_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv("RUCIO_RD_CONFIG", str(missing))
    with pytest.raises(ConfigError) as caught:
        find_config_file(tmp_path)
    assert f"RUCIO_RD_CONFIG={missing}" in str(caught.value)


def test_find_config_file_env_naming_a_directory_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RUCIO_RD_CONFIG", str(tmp_path))
    with pytest.raises(ConfigError, match="does not name a readable file"):
        find_config_file()


def test_find_config_file_env_wins_over_dachs_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    explicit = write(tmp_path, "", name="explicit.toml")
    (tmp_path / "root" / "etc").mkdir(parents=True)
    write(tmp_path / "root" / "etc", "")
    monkeypatch.setenv("RUCIO_RD_CONFIG", str(explicit))
    assert find_config_file(tmp_path / "root") == explicit


def test_find_config_file_falls_back_to_root_etc(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RUCIO_RD_CONFIG", raising=False)
    (tmp_path / "etc").mkdir()
    expected = write(tmp_path / "etc", "")
    assert find_config_file(tmp_path) == expected
    assert find_config_file(str(tmp_path)) == expected


def test_find_config_file_empty_env_is_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RUCIO_RD_CONFIG", "")
    (tmp_path / "etc").mkdir()
    expected = write(tmp_path / "etc", "")
    assert find_config_file(tmp_path) == expected


def test_find_config_file_none_when_root_has_no_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RUCIO_RD_CONFIG", raising=False)
    assert find_config_file(tmp_path) is None
    assert find_config_file(None) is None


def test_find_config_file_ignores_directory_named_like_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RUCIO_RD_CONFIG", raising=False)
    (tmp_path / "etc" / "rucio_rd.toml").mkdir(parents=True)
    assert find_config_file(tmp_path) is None


# --- every key is documented ----------------------------------------------------------


def test_every_key_is_in_the_template_and_the_readme_reference() -> None:
    from dataclasses import fields

    from rucio_rd.config import _SECTIONS

    template = EXAMPLE.read_text(encoding="utf-8")
    readme = (EXAMPLE.parents[1] / "README.md").read_text(encoding="utf-8")
    for section, cls in _SECTIONS.items():
        assert f"[{section}]" in template
        for key in fields(cls):
            if key.name not in ("password", "oidc_client_secret"):  # never in a file
                assert re.search(rf"^{key.name} = ", template, re.MULTILINE), key.name
            assert f"| `[{section}] {key.name}` |" in readme, f"[{section}] {key.name}"


# --- DataLink's per-site defaults -------------------------------------------------------


def test_the_soda_id_template_is_checked_when_loaded(tmp_path: Path) -> None:
    assert load_settings(None, environ={}).sites.soda_id_template == (
        "ivo://{authority}?{scope}/{path}")
    path = write(tmp_path, '[sites]\nsoda_id_template = "{did}"\n')
    assert load_settings(path, environ={}).sites.soda_id_template == "{did}"
    with pytest.raises(ConfigError, match=r"\[sites\] soda_id_template: .*uses \{pth\}"):
        load_settings(None, environ={"RUCIO_RD_SITES_SODA_ID_TEMPLATE": "ivo://a?{pth}"})


@pytest.mark.parametrize("value", ["true", "false", "optional", ""])
def test_link_auth_takes_datalinks_values_or_nothing(value: str) -> None:
    assert load_settings(None, environ={"RUCIO_RD_SITES_LINK_AUTH": value}).sites.link_auth == (
        value)


def test_another_link_auth_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\[sites\] link_auth = 'yes' is not one of"):
        load_settings(None, environ={"RUCIO_RD_SITES_LINK_AUTH": "yes"})


@pytest.mark.parametrize("value", ["ivo://skao.int", "skao.int/x", "a b", "?"])
def test_the_soda_id_authority_is_a_bare_authority(value: str) -> None:
    with pytest.raises(ConfigError, match="is not an IVOA authority"):
        load_settings(None, environ={"RUCIO_RD_SITES_SODA_ID_AUTHORITY": value})
    assert load_settings(None, environ={"RUCIO_RD_SITES_SODA_ID_AUTHORITY": "skao.int"}
                         ).sites.soda_id_authority == "skao.int"
