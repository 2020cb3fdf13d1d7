import pytest

from pathlib import Path

from puller import settings
from puller.config import ServerConfig, from_sources, parse_listen
from puller.core._errors import InvalidRequest


def test_defaults_listen_on_loopback():
    config = from_sources({}, environ={})
    assert config.listen == "127.0.0.1:9006" and config.loopback_only
    assert config.docker_socket == "/var/run/docker.sock"


def test_flags_win_over_environment():
    env = {"LISTEN_ADDR": ":9999", "DOCKER_SOCKET": "/env.sock"}
    assert from_sources({}, environ=env).listen == ":9999"
    config = from_sources({"listen": "127.0.0.1:1", "docker_socket": "/flag.sock"}, environ=env)
    assert (config.listen, config.docker_socket) == ("127.0.0.1:1", "/flag.sock")


def test_colon_port_means_all_interfaces():
    assert parse_listen(":9006") == ("0.0.0.0", 9006)
    assert parse_listen("[::1]:80") == ("::1", 80)
    assert not ServerConfig(listen=":9006").loopback_only


@pytest.mark.parametrize("flags,env,field", [
    ({"listen": "nope"}, {}, "--listen"),
    ({"backoff_base": "-1s"}, {}, "--backoff-base"),
    ({}, {"PULLER_BACKOFF_BASE": "0s"}, "PULLER_BACKOFF_BASE"),
    ({"deadline": "NaNs"}, {}, "--deadline"),
    ({"drain_timeout": "-5s"}, {}, "--drain-timeout"),
    ({"connections": "0"}, {}, "--connections"),
    ({"max_daemon_pulls": "many"}, {}, "--max-daemon-pulls"),
    ({"header_timeout": "0"}, {}, "--header-timeout"),
    ({}, {"PULLER_IDLE_TIMEOUT": "-1m"}, "PULLER_IDLE_TIMEOUT"),
    ({}, {"PULLER_TOKEN": "   "}, "PULLER_TOKEN"),
    ({}, {"PULLER_TOKEN": ""}, "PULLER_TOKEN"),
    ({}, {"LISTEN_ADDR": "  "}, "LISTEN_ADDR"),
    ({}, {"PULLER_DEADLINE": "soon"}, "PULLER_DEADLINE"),
    ({"max_images": 0}, {}, "--max-images"),
    ({"token_file": "/does/not/exist"}, {}, "--token-file"),
])
def test_bad_settings_name_the_source(flags, env, field):
    with pytest.raises(InvalidRequest) as info:
        from_sources(flags, environ=env)
    assert info.value.field == field


def test_token_never_shown(tmp_path):
    f = tmp_path / "t"
    f.write_text("s3cret\n")
    config = from_sources({"token_file": str(f)}, environ={})
    assert config.token == "s3cret"
    assert "s3cret" not in repr(config) and "s3cret" not in str(config.public())
    assert from_sources({}, environ={"PULLER_TOKEN": "abc"}).token == "abc"


def test_engine_config_takes_the_socket_path():
    assert from_sources({"docker_socket": "/x.sock"}, environ={}).engine_config().docker_host == "unix:///x.sock"


def test_empty_token_file_is_refused(tmp_path):
    f = tmp_path / "t"
    f.write_text("  \n")
    with pytest.raises(InvalidRequest) as info:
        from_sources({"token_file": str(f)}, environ={})
    assert info.value.field == "--token-file" and "empty" in info.value.message


def test_secret_values_are_not_echoed_in_errors():
    with pytest.raises(InvalidRequest) as info:
        from_sources({}, environ={"PULLER_TOKEN": " \t "})
    assert "blank" in info.value.message


def test_every_setting_has_a_flag_or_variable_and_dump_hides_secrets():
    config = from_sources({}, environ={"PULLER_TOKEN": "tok-xyz"})
    shown = config.public()
    assert shown["token"] == "set" and "tok-xyz" not in str(shown)
    assert shown["deadline"] == "30m0s" and shown["backoff_base"] == "500ms"
    assert {s.env for s in settings.SETTINGS} >= {"LISTEN_ADDR", "DOCKER_SOCKET", "PULLER_TOKEN"}


def test_readme_table_is_generated_from_the_settings():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    assert settings.markdown_table() in readme, "README is out of date: run python -m puller.settings"


def test_default_state_dir_is_one_per_listen_address(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    first = from_sources({"listen": "127.0.0.1:9006"}, environ={})
    second = from_sources({"listen": "127.0.0.1:9007"}, environ={})
    assert first.state_path == str(tmp_path / "puller" / "127.0.0.1-9006")
    assert second.state_path != first.state_path
    assert from_sources({"listen": "127.0.0.1:9006"}, environ={}).state_path == first.state_path
    assert from_sources({"listen": ":9006"}, environ={}).state_path.endswith("0.0.0.0-9006")
    assert from_sources({"listen": "[::1]:9006"}, environ={}).state_path.endswith("[::1]-9006")


def test_explicit_state_dir_keeps_its_meaning(tmp_path):
    config = from_sources({"listen": "127.0.0.1:9006", "state_dir": str(tmp_path / "s")}, environ={})
    assert config.state_path == str(tmp_path / "s")


@pytest.mark.parametrize("flags,env,runtime,docker", [
    ({"runtime_endpoint": "unix:///c.sock"}, {"DOCKER_HOST": "unix:///d.sock"}, "unix:///c.sock", None),
    ({"docker_socket": "/d.sock"}, {"CONTAINER_RUNTIME_ENDPOINT": "unix:///c.sock"}, None, "/d.sock"),
    ({}, {"CONTAINER_RUNTIME_ENDPOINT": "unix:///c.sock", "DOCKER_HOST": "unix:///d.sock"}, "unix:///c.sock", None),
    ({}, {"DOCKER_HOST": "unix:///d.sock"}, None, "unix:///d.sock"),
])
def test_one_runtime_flags_win_then_the_cri_variable(flags, env, runtime, docker):
    config = from_sources(flags, environ=env)
    assert config.runtime_endpoint == runtime
    if docker:
        assert config.docker_socket == docker


def test_runtime_endpoint_and_docker_socket_together_are_refused():
    with pytest.raises(InvalidRequest) as err:
        from_sources({"runtime_endpoint": "unix:///c.sock", "docker_socket": "/d.sock"}, environ={})
    assert err.value.field == "--runtime-endpoint" and "give one of them" in err.value.message


def test_a_cri_server_shows_no_docker_socket_it_never_uses():
    config = from_sources({"runtime_endpoint": "unix:///c.sock"}, environ={})
    assert "docker_socket" not in config.public() and config.public()["runtime_endpoint"] == "unix:///c.sock"
    assert "docker_socket" in from_sources({}, environ={}).public()
