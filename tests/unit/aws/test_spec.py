import pytest

from incident_commander.aws.spec import parse_connection_spec


def test_defaults_mirror_the_crd() -> None:
    spec = parse_connection_spec({"region": "us-east-1"})
    assert spec.services == ("sts",)
    assert (spec.retry.mode, spec.retry.max_attempts, spec.retry.base_delay, spec.retry.max_delay) == (
        "standard",
        3,
        0.2,
        20.0,
    )
    assert (spec.connect_timeout, spec.read_timeout, spec.probe_interval) == (5.0, 10.0, 60.0)
    assert spec.secret_ref is None and spec.web_identity is None and spec.role_chain == ()
    assert spec.credential_source == "the default credential chain"


def test_full_spec_and_probe_timeout() -> None:
    spec = parse_connection_spec(
        {
            "region": "eu-west-1",
            "endpointUrl": "http://localstack:4566",
            "credentials": {
                "secretRef": {"name": "keys", "accessKeyIdKey": "id"},
                "assumeRole": {"roleArn": "arn:aws:iam::123456789012:role/r", "durationSeconds": 900},
            },
            "services": ["sts", "s3"],
            "retry": {"mode": "adaptive", "maxAttempts": 4, "baseDelay": "100ms", "maxDelay": "2s"},
            "timeouts": {"connect": "1s", "read": "3s"},
            "probeInterval": "30s",
        }
    )
    assert spec.secret_ref is not None and spec.secret_ref.access_key_id_key == "id"
    assert spec.secret_ref.secret_access_key_key == "AWS_SECRET_ACCESS_KEY"
    [role] = spec.role_chain
    assert role.role_arn.endswith(":role/r") and role.duration_seconds == 900
    assert spec.probe_timeout() == 4 * (1 + 3) + 3 * 2
    assert "assumed with the keys of Secret keys" in spec.credential_source


def test_fingerprint_changes_with_the_spec_only() -> None:
    a = parse_connection_spec({"region": "us-east-1", "services": ["sts"]})
    b = parse_connection_spec({"region": "us-east-1", "services": ["sts"]})
    c = parse_connection_spec({"region": "us-east-1", "services": ["sts", "s3"]})
    assert a.fingerprint == b.fingerprint != c.fingerprint


ROLE = "arn:aws:iam::123456789012:role/"


def test_a_chain_keeps_its_order_and_each_hop_its_own_settings() -> None:
    spec = parse_connection_spec(
        {
            "region": "us-east-1",
            "credentials": {
                "secretRef": {"name": "keys"},
                "assumeRoleChain": [
                    {"roleArn": ROLE + "hub", "externalId": "ext-1", "sessionName": "first"},
                    {"roleArn": ROLE + "spoke"},
                ],
            },
        }
    )
    assert [(r.role_arn, r.external_id, r.session_name, r.duration_seconds) for r in spec.role_chain] == [
        (ROLE + "hub", "ext-1", "first", 3600),
        (ROLE + "spoke", None, "incident-commander", 3600),
    ]
    assert (
        spec.credential_source == f"role {ROLE}spoke assumed through {ROLE}hub with the keys of Secret keys"
    )


def test_web_identity_as_the_source() -> None:
    spec = parse_connection_spec(
        {
            "region": "us-east-1",
            "credentials": {"webIdentity": {"tokenFile": "/var/run/t/token", "roleArn": ROLE + "irsa"}},
        }
    )
    assert spec.web_identity is not None
    assert (spec.web_identity.session_name, spec.web_identity.duration_seconds) == (
        "incident-commander",
        3600,
    )
    assert spec.credential_source == f"web identity token file /var/run/t/token for role {ROLE}irsa"
    chained = parse_connection_spec(
        {
            "region": "us-east-1",
            "credentials": {
                "webIdentity": {"tokenFile": "/t", "roleArn": ROLE + "irsa"},
                "assumeRole": {"roleArn": ROLE + "target"},
            },
        }
    )
    assert (
        chained.credential_source
        == f"role {ROLE}target assumed with web identity token file /t for role {ROLE}irsa"
    )
    assert chained.fingerprint != spec.fingerprint


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        (
            {"secretRef": {"name": "k"}, "webIdentity": {"tokenFile": "/t", "roleArn": ROLE + "r"}},
            "secretRef",
        ),
        ({"assumeRole": {"roleArn": ROLE + "r"}, "assumeRoleChain": [{"roleArn": ROLE + "r"}]}, "assumeRole"),
        ({"assumeRoleChain": []}, "at least one"),
    ],
)
def test_contradicting_sources_are_refused_even_if_admitted(
    credentials: dict[str, object], message: str
) -> None:
    """The CRD's CEL rules refuse these; objects admitted before the rules existed fail closed."""
    with pytest.raises(ValueError, match=message):
        parse_connection_spec({"region": "us-east-1", "credentials": credentials})
