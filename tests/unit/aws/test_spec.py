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
    assert spec.secret_ref is None and spec.assume_role is None
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
    assert spec.assume_role is not None and spec.assume_role.duration_seconds == 900
    assert spec.probe_timeout() == 4 * (1 + 3) + 3 * 2
    assert "assumed with the keys of Secret keys" in spec.credential_source


def test_fingerprint_changes_with_the_spec_only() -> None:
    a = parse_connection_spec({"region": "us-east-1", "services": ["sts"]})
    b = parse_connection_spec({"region": "us-east-1", "services": ["sts"]})
    c = parse_connection_spec({"region": "us-east-1", "services": ["sts", "s3"]})
    assert a.fingerprint == b.fingerprint != c.fingerprint
