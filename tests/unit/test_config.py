import pytest

from incident_commander.aws.clients import DEFAULT_CLIENT_CACHE
from incident_commander.config import config_from_args


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
