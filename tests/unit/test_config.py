import argparse
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from incident_commander.aws.clients import DEFAULT_CLIENT_CACHE
from incident_commander.config import VARIABLES, Variable, build_parser, config_from_args


def test_defaults_watch_all_namespaces_with_json_logs() -> None:
    config = config_from_args(["run"], environ={})
    assert config.all_namespaces and config.namespaces == ()
    assert (config.metrics_port, config.api_port, config.log_format) == (9090, 8443, "json")
    assert config.leader_election is None
    assert config.liveness_endpoint == "http://0.0.0.0:8080/healthz"


def test_liveness_follows_the_bind_address_unless_given() -> None:
    assert config_from_args(["run", "--bind-address", "127.0.0.1"], environ={}).liveness_endpoint == (
        "http://127.0.0.1:8080/healthz"
    )
    given = config_from_args(["run", "--liveness", "http://127.0.0.1:0/healthz"], environ={})
    assert given.liveness_endpoint == "http://127.0.0.1:0/healthz"


def test_namespaces_flag_narrows_the_scope() -> None:
    config = config_from_args(["run", "-n", "a", "--namespace", "b"], environ={})
    assert config.namespaces == ("a", "b") and not config.all_namespaces


def test_environment_supplies_defaults_and_flags_win() -> None:
    env = {"IC_NAMESPACES": "x,y", "IC_METRICS_PORT": "9999", "IC_LOG_FORMAT": "text"}
    config = config_from_args(["run", "--metrics-port", "1234"], environ=env)
    assert config.namespaces == ("x", "y")
    assert config.metrics_port == 1234
    assert config.log_format == "text"


def test_all_namespaces_and_namespace_are_exclusive() -> None:
    with pytest.raises(SystemExit):
        config_from_args(["run", "-A", "-n", "a"], environ={})


def test_bad_log_format_is_refused() -> None:
    with pytest.raises(SystemExit):
        config_from_args(["run", "--log-format", "xml"], environ={})


def test_leader_election_from_flags_env_or_the_old_peering_flag() -> None:
    assert config_from_args(["run", "--leader-elect"], environ={}).leader_election == "incident-commander"
    assert (
        config_from_args(["run", "--leader-election-id", "shard-a"], environ={}).leader_election == "shard-a"
    )
    assert (
        config_from_args(["run"], environ={"IC_LEADER_ELECT": "true"}).leader_election == "incident-commander"
    )
    assert config_from_args(["run", "--peering", "old"], environ={}).leader_election == "old"


def test_each_replica_gets_its_own_identity_from_its_pod() -> None:
    drawn = {config_from_args(["run"], environ={"K8S_POD_NAME": "ic-7f9"}).identity for _ in range(10)}
    assert len(drawn) == 10 and all(identity.startswith("ic-7f9-") for identity in drawn)


def test_tls_needs_both_files() -> None:
    with pytest.raises(SystemExit):
        config_from_args(["run", "--tls-cert-file", "/c.pem"], environ={})
    config = config_from_args(["run", "--tls-cert-file", "/c.pem", "--tls-key-file", "/k.pem"], environ={})
    assert (config.tls_cert_file, config.tls_key_file) == ("/c.pem", "/k.pem")


def test_ledger_refresh_is_short_with_leader_election_and_long_standalone() -> None:
    assert config_from_args(["run"], environ={}).ledger_refresh.total_seconds() == 600
    assert config_from_args(["run", "--leader-elect"], environ={}).ledger_refresh.total_seconds() == 1
    assert (
        config_from_args(["run", "--ledger-refresh", "30s"], environ={}).ledger_refresh.total_seconds() == 30
    )


def test_aws_client_cache_from_flag_or_env_and_at_least_one() -> None:
    assert config_from_args(["run"], environ={}).aws_client_cache == DEFAULT_CLIENT_CACHE == 32
    assert config_from_args(["run"], environ={"IC_AWS_CLIENT_CACHE": "48"}).aws_client_cache == 48
    assert config_from_args(["run", "--aws-client-cache", "8"], environ={}).aws_client_cache == 8
    with pytest.raises(SystemExit):
        config_from_args(["run", "--aws-client-cache", "0"], environ={})


def test_web_identity_token_dirs_are_none_by_default_and_absolute() -> None:
    assert config_from_args(["run"], environ={}).web_identity_token_dirs == ()
    env = {"IC_WEB_IDENTITY_TOKEN_DIRS": "/var/run/a,/var/run/b"}
    assert config_from_args(["run"], environ=env).web_identity_token_dirs == ("/var/run/a", "/var/run/b")
    flags = ["run", "--web-identity-token-dir", "/t1", "--web-identity-token-dir", "/t2"]
    assert config_from_args(flags, environ={}).web_identity_token_dirs == ("/t1", "/t2")
    with pytest.raises(SystemExit):
        config_from_args(["run", "--web-identity-token-dir", "relative/dir"], environ={})


# --- Every IC_* variable goes through its flag's parser ------------------------------------------

# A value each variable's flag refuses, and one it accepts (with what it becomes).
BAD_AND_GOOD = {
    "IC_NAMESPACES": ("Team_A", "team-a"),
    "IC_METRICS_PORT": ("abc", "9091"),
    "IC_API_PORT": ("70000", "0"),
    "IC_BIND_ADDRESS": ("localhost:80", "127.0.0.1"),
    "IC_LIVENESS_ENDPOINT": ("0.0.0.0:8080", "http://127.0.0.1:8081/healthz"),
    "IC_LOG_FORMAT": ("xml", "text"),
    "IC_LOG_LEVEL": ("LOUD", "debug"),
    "IC_PEERING": ("Not A Name", "ic-peering"),
    "IC_LEADER_ELECT": ("maybe", "true"),
    "IC_LEADER_ELECTION_ID": ("Not A Name", "ic-shard-a"),
    "IC_LEADER_ELECT_TIMING": ("2s,10s,15s", "6s,4s,1s"),
    "IC_STATE_NAMESPACE": ("Ops_System", "ic-system"),
    "IC_WEB_IDENTITY_TOKEN_DIRS": ("relative/dir", "/var/run/tokens"),
    "IC_API_MAX_CONNECTIONS": ("0", "64"),
    "IC_API_IDLE_TIMEOUT": ("0s", "5s"),
    "IC_CORS_ORIGINS": ("console.example.com", "https://console.example.com"),
    "IC_DELETION_TIMEOUT": ("5 minutes", "90s"),
    "IC_LEDGER_REFRESH": ("0s", "30s"),
    "IC_INCIDENT_SWEEP_INTERVAL": ("0s", "5s"),
    "IC_AWS_CLIENT_CACHE": ("0", "8"),
}


def test_every_flag_with_a_value_has_a_variable_and_every_variable_a_flag() -> None:
    run = next(
        action for action in build_parser({})._actions if isinstance(action, argparse._SubParsersAction)
    ).choices["run"]
    flags = {
        option
        for action in run._actions
        if action.nargs != 0  # -A and --help take no value
        for option in action.option_strings
        if option.startswith("--")
    }
    assert flags == {variable.flag for variable in VARIABLES}
    free_text = {"IC_TLS_CERT_FILE", "IC_TLS_KEY_FILE"}  # paths: read (and checked) at startup
    assert set(BAD_AND_GOOD) == {variable.name for variable in VARIABLES} - free_text


@pytest.mark.parametrize("variable", [v for v in VARIABLES if v.name in BAD_AND_GOOD], ids=lambda v: v.name)
def test_a_variable_is_refused_exactly_when_its_flag_is(
    variable: Variable, capsys: pytest.CaptureFixture[str]
) -> None:
    bad, good = BAD_AND_GOOD[variable.name]
    with pytest.raises(SystemExit) as flag_exit:
        config_from_args(["run", f"{variable.flag}={bad}"], environ={})
    assert flag_exit.value.code == 2
    capsys.readouterr()

    with pytest.raises(SystemExit) as env_exit:
        config_from_args(["run"], environ={variable.name: bad})
    assert env_exit.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"incident-commander: error: environment variable {variable.name}: {bad!r}")

    from_env = config_from_args(["run"], environ={variable.name: good})
    from_flag = config_from_args(["run", f"{variable.flag}={good}"], environ={})
    field = {
        "--namespace": "namespaces",
        "--cors-origin": "cors_origins",
        "--peering": "leader_election",
        "--leader-elect": "leader_election",
        "--leader-election-id": "leader_election",
        "--leader-elect-timing": "leader_timing",
        "--web-identity-token-dir": "web_identity_token_dirs",
    }.get(variable.flag, variable.flag.removeprefix("--").replace("-", "_"))
    field = {"liveness": "liveness_endpoint"}.get(field, field)
    assert getattr(from_env, field) == getattr(from_flag, field)
    assert getattr(from_env, field) != getattr(config_from_args(["run"], environ={}), field)


def test_log_level_and_format_values() -> None:
    assert config_from_args(["run"], environ={"IC_LOG_LEVEL": "warning"}).log_level == "WARNING"
    for bad in ({"IC_LOG_FORMAT": "xml"}, {"IC_LOG_LEVEL": "LOUD"}, {"IC_METRICS_PORT": "abc"}):
        with pytest.raises(SystemExit) as exit_info:
            config_from_args(["run"], environ=bad)
        assert exit_info.value.code == 2


def test_a_bad_variable_is_refused_even_when_its_flag_overrides_it() -> None:
    with pytest.raises(SystemExit):
        config_from_args(["run", "--metrics-port=9091"], environ={"IC_METRICS_PORT": "abc"})


def test_repeatable_flags_replace_the_environment_list() -> None:
    env = {"IC_NAMESPACES": "x,y", "IC_CORS_ORIGINS": "https://a.example"}
    config = config_from_args(["run", "-n", "a", "--cors-origin", "https://b.example"], environ=env)
    assert config.namespaces == ("a",)
    assert config.cors_origins == ("https://b.example",)
    assert config_from_args(["run"], environ=env).namespaces == ("x", "y")


def test_durations_from_flag_or_env() -> None:
    config = config_from_args(["run"], environ={"IC_DELETION_TIMEOUT": "90s", "IC_LEDGER_REFRESH": "1m"})
    assert (config.deletion_timeout, config.ledger_refresh) == (timedelta(seconds=90), timedelta(minutes=1))
    # 0s is a deletion timeout (give up at once; the chart's schema allows it), not a refresh interval.
    assert config_from_args(["run"], environ={"IC_DELETION_TIMEOUT": "0s"}).deletion_timeout == timedelta(0)


@pytest.mark.parametrize(
    ("env", "argv"),
    [
        ({"IC_METRICS_PORT": "abc"}, ["run", "--help"]),
        ({"IC_LOG_LEVEL": "LOUD"}, ["run"]),
    ],
)
def test_the_console_script_prints_one_line_and_exits_2(env: dict[str, str], argv: list[str]) -> None:
    """The installed entry point, as the container runs it: no traceback, even with --help."""
    script = Path(sys.executable).parent / "incident-commander"
    result = subprocess.run(
        [str(script), *argv],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    name = next(iter(env))
    assert line.startswith(f"incident-commander: error: environment variable {name}: {env[name]!r}")
