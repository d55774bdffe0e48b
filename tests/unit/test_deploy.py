"""Unit tests for the file steps of rucio_rd.deploy: linking the RD and installing the config."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rucio_rd import checks, config, deploy, resources
from rucio_rd.config import ConfigError
from rucio_rd.deploy import DeployError, install_config, link_inputs

GOOD_CONFIG = '[rucio]\naccount = "operator"\n'


@pytest.fixture
def source(tmp_path: Path) -> Path:
    directory = tmp_path / "project" / "inputs" / "rucio"
    directory.mkdir(parents=True)
    (directory / "rucio.rd").write_text("<resource/>")
    return directory


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- link_inputs ----------------------------------------------------------------------


def test_link_is_created_to_the_resolved_source(tmp_path: Path, source: Path) -> None:
    inputs = tmp_path / "dachs" / "inputs"
    inputs.mkdir(parents=True)
    target = link_inputs(inputs, source)
    assert target == inputs / "rucio"
    assert target.is_symlink()
    assert Path(os.readlink(target)) == source.resolve()
    assert (target / "rucio.rd").read_text() == "<resource/>"


def test_link_creates_missing_inputs_dir(tmp_path: Path, source: Path) -> None:
    inputs = tmp_path / "not" / "there"
    target = link_inputs(inputs, source)
    assert target.is_symlink()
    assert target.resolve() == source.resolve()


def test_second_link_call_is_idempotent(tmp_path: Path, source: Path) -> None:
    inputs = tmp_path / "inputs"
    first = link_inputs(inputs, source)
    before = os.lstat(first)
    second = link_inputs(inputs, source)
    after = os.lstat(second)
    assert second == first
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in inputs.iterdir()) == ["rucio"]


def test_link_to_an_alias_of_the_source_is_kept(tmp_path: Path, source: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(source, target_is_directory=True)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "rucio").symlink_to(alias, target_is_directory=True)
    link_inputs(inputs, source)
    assert Path(os.readlink(inputs / "rucio")) == alias


def test_wrong_link_is_replaced(tmp_path: Path, source: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "rucio").symlink_to(elsewhere, target_is_directory=True)
    target = link_inputs(inputs, source)
    assert Path(os.readlink(target)) == source.resolve()
    assert (elsewhere / "keep.txt").read_text() == "keep"  # the old target is untouched


def test_dangling_link_is_replaced(tmp_path: Path, source: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "rucio").symlink_to(tmp_path / "gone", target_is_directory=True)
    target = link_inputs(inputs, source)
    assert target.resolve() == source.resolve()


def test_real_directory_is_refused_with_deploy_error(tmp_path: Path, source: Path) -> None:
    inputs = tmp_path / "inputs"
    (inputs / "rucio").mkdir(parents=True)
    (inputs / "rucio" / "local.rd").write_text("mine")
    with pytest.raises(DeployError) as caught:
        link_inputs(inputs, source)
    assert str(inputs / "rucio") in str(caught.value)
    assert "move it away" in str(caught.value)
    assert not (inputs / "rucio").is_symlink()
    assert (inputs / "rucio" / "local.rd").read_text() == "mine"


def test_real_file_is_refused_with_deploy_error(tmp_path: Path, source: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "rucio").write_text("a file")
    with pytest.raises(DeployError):
        link_inputs(inputs, source)
    assert (inputs / "rucio").read_text() == "a file"


def test_default_source_is_the_rd_directory_of_the_installed_package(tmp_path: Path) -> None:
    link = link_inputs(tmp_path / "inputs")
    assert link.resolve() == resources.rd_dir().resolve()
    assert (link / "rucio.rd").is_file()
    assert resources.config_template().is_file()


# --- install_config -------------------------------------------------------------------


def test_template_is_copied_when_there_is_no_config(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    target = install_config(etc, None)
    assert target == etc / "rucio_rd.toml"
    assert target.read_bytes() == resources.config_template().read_bytes()
    assert mode(target) == 0o640


def test_existing_config_is_kept_when_none_is_given(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    existing = etc / "rucio_rd.toml"
    existing.write_text(GOOD_CONFIG)
    existing.chmod(0o600)
    assert install_config(etc, None) == existing
    assert existing.read_text() == GOOD_CONFIG
    assert mode(existing) == 0o600


def test_existing_bad_config_is_reported_when_none_is_given(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "rucio_rd.toml").write_text('[rucio]\nauth = "kerberos"\n')
    with pytest.raises(ConfigError, match=r"\[rucio\] auth"):
        install_config(etc, None)


def test_given_config_is_copied_and_validated(tmp_path: Path) -> None:
    given = tmp_path / "mine.toml"
    given.write_text(GOOD_CONFIG)
    etc = tmp_path / "root" / "etc"
    target = install_config(etc, given)
    assert target == etc / "rucio_rd.toml"
    assert target.read_text() == GOOD_CONFIG
    assert mode(target) == 0o640
    assert config.load_settings(target, environ={}).rucio.account == "operator"


def test_given_config_replaces_an_existing_one(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "rucio_rd.toml").write_text("")
    (etc / "rucio_rd.toml").chmod(0o644)
    given = tmp_path / "mine.toml"
    given.write_text(GOOD_CONFIG)
    target = install_config(etc, given)
    assert target.read_text() == GOOD_CONFIG
    assert mode(target) == 0o640


def test_bad_given_config_raises_and_keeps_the_existing_good_one(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    existing = etc / "rucio_rd.toml"
    existing.write_text(GOOD_CONFIG)
    given = tmp_path / "bad.toml"
    given.write_text('[rucio]\npasword = "typo"\n')
    with pytest.raises(ConfigError, match="pasword"):
        install_config(etc, given)
    assert existing.read_text() == GOOD_CONFIG


def test_bad_given_config_does_not_create_a_target(tmp_path: Path) -> None:
    given = tmp_path / "bad.toml"
    given.write_text("[rucio\n")
    etc = tmp_path / "etc"
    with pytest.raises(ConfigError, match="not valid TOML"):
        install_config(etc, given)
    assert not (etc / "rucio_rd.toml").exists()


def test_missing_given_config_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        install_config(tmp_path / "etc", tmp_path / "absent.toml")
    assert not (tmp_path / "etc" / "rucio_rd.toml").exists()


def test_given_config_that_is_the_target_is_left_in_place(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    target = etc / "rucio_rd.toml"
    target.write_text(GOOD_CONFIG)
    target.chmod(0o600)
    assert install_config(etc, target) == target
    assert target.read_text() == GOOD_CONFIG
    assert mode(target) == 0o600  # not copied onto itself, so not chmodded either


def test_install_config_validates_with_environment_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = tmp_path / "mine.toml"
    given.write_text(GOOD_CONFIG)
    monkeypatch.setenv("RUCIO_RD_SITES_SOURCE", "nowhere")
    with pytest.raises(ConfigError, match=r"\[sites\] source"):
        install_config(tmp_path / "etc", given)


def test_written_config_belongs_to_the_servers_group(tmp_path: Path) -> None:
    import grp

    # A group other than ours, so that the test sees the chown happen.
    group = next(g for g in grp.getgrall() if g.gr_gid != os.getgid())
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to a group it is not in")
    target = install_config(tmp_path / "etc", None, group.gr_name)
    assert target.stat().st_gid == group.gr_gid != os.getgid()
    assert mode(target) == 0o640


def test_unknown_group_is_no_error(tmp_path: Path) -> None:
    assert install_config(tmp_path / "etc", None, "no-such-group-here").exists()


# --- preflight: nothing changes unless everything passes -------------------------------


def dachs_setup(root: Path, authority: str = "data.example.org") -> checks.DachsSetup:
    return checks.DachsSetup(
        root_dir=root, inputs_dir=root / "inputs", cache_dir=root / "cache",
        state_dir=root / "state",
        server_user="", group="", authority=authority, server_url="http://localhost:8080")


def snapshot(root: Path) -> dict[str, bytes | str]:
    return {str(path.relative_to(root)): (os.readlink(path) if path.is_symlink()
                                          else path.read_bytes() if path.is_file() else "dir")
            for path in sorted(root.rglob("*"))}


def test_unregistered_authority_fails_preflight_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "dachs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "rucio_rd.toml").write_text(GOOD_CONFIG)
    before = snapshot(root)
    with pytest.raises(DeployError, match="nothing was changed"):
        deploy.deploy(None, setup=dachs_setup(root, authority="x-unregistered"))
    assert "FAIL  DaCHS authority: [ivoa] authority is 'x-unregistered'" in capsys.readouterr().out
    assert snapshot(root) == before


def test_a_real_directory_in_place_of_the_link_fails_preflight(tmp_path: Path) -> None:
    setup = dachs_setup(tmp_path)
    (tmp_path / "inputs" / "rucio").mkdir(parents=True)
    outcomes = deploy.preflight(setup, tmp_path / "bad.toml")
    [blocked] = [outcome for outcome in outcomes if outcome.name == "resource descriptor"]
    assert blocked.status == checks.FAIL and "move it away" in blocked.message


def test_first_deploy_with_the_template_says_to_give_a_configuration(tmp_path: Path) -> None:
    outcomes = deploy.preflight(dachs_setup(tmp_path), resources.config_template())
    [configuration] = [outcome for outcome in outcomes if outcome.name == "configuration"]
    assert configuration.status == checks.FAIL
    assert "give it with --config" in configuration.message


def test_bad_given_configuration_fails_preflight_and_installs_nothing(tmp_path: Path) -> None:
    given = tmp_path / "bad.toml"
    given.write_text('[rucio]\npasword = "typo"\n')
    root = tmp_path / "dachs"
    root.mkdir()
    with pytest.raises(DeployError, match="nothing was changed"):
        deploy.deploy(given, setup=dachs_setup(root))
    assert snapshot(root) == {}


# --- the vocabulary seed ----------------------------------------------------------------


def test_vocabulary_cache_is_seeded_once_and_old(tmp_path: Path) -> None:
    assert deploy.seed_vocabulary_cache(tmp_path / "cache") is True
    cached = tmp_path / "cache" / deploy.UAT_CACHE_NAME
    assert cached.read_bytes() == resources.uat_seed().read_bytes()
    assert cached.stat().st_mtime == 0  # DaCHS refreshes it where it can download
    cached.write_text("a real download")
    assert deploy.seed_vocabulary_cache(tmp_path / "cache") is False
    assert cached.read_text() == "a real download"


def test_a_stale_pid_file_is_no_running_server(tmp_path: Path) -> None:
    setup = dachs_setup(tmp_path)
    assert setup.running_server() is None
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "web.pid").write_text(str(os.getpid()))  # alive, but not DaCHS
    assert setup.running_server() is None
    (tmp_path / "state" / "web.pid").write_text("not a pid")
    assert setup.running_server() is None


def test_skip_rucio_needs_no_rucio_credentials(tmp_path: Path) -> None:
    given = tmp_path / "table-only.toml"
    given.write_text('[metadata]\ndsn = "dbname=meta host=127.0.0.1 port=9 connect_timeout=1"\n')
    outcomes = deploy.preflight(dachs_setup(tmp_path), given, try_rucio=False)
    named = {outcome.name: outcome for outcome in outcomes}
    assert named["configuration"].status == checks.OK
    assert named["Rucio"].status == checks.WARN and "--skip-rucio" in named["Rucio"].message
    # the configuration check with Rucio refuses the same file, naming the key
    outcome, _ = checks.check_configuration(given)
    assert outcome.status == checks.FAIL and "[rucio] username" in outcome.message
