"""The one typed IncidentPolicy spec: its defaults are the CRD's, and every reader gets the same."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from incident_commander.kinds.incidentpolicy import spec as policy_spec
from incident_commander.kinds.incidentpolicy.spec import InvalidPolicySpec, parse_policy_spec
from incident_commander.storage.provisioner import SEARCH_NAME, derived_collection_name

CRD = Path(__file__).resolve().parents[4] / "crds" / "incidentpolicy.yaml"
MINIMAL = {"connectionRef": {"name": "conn"}, "modelRouting": {"simpleModel": "s", "complexModel": "c"}}


def schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])


def test_the_defaults_are_the_crds() -> None:
    properties = schema()
    jwt = properties["auth"]["properties"]["jwt"]["properties"]
    rate = properties["auth"]["properties"]["rateLimit"]["properties"]
    sampling = properties["sampling"]["properties"]
    client = properties["apiClients"]["items"]["properties"]
    assert jwt["issuer"]["default"] == policy_spec.DEFAULT_ISSUER
    assert jwt["audience"]["default"] == policy_spec.DEFAULT_AUDIENCE
    assert jwt["ttl"]["default"] == policy_spec.DEFAULT_TOKEN_TTL
    assert jwt["algorithm"]["default"] == policy_spec.DEFAULT_ALGORITHM
    assert rate["requestsPerMinute"]["default"] == policy_spec.DEFAULT_REQUESTS_PER_MINUTE
    assert rate["burst"]["default"] == policy_spec.DEFAULT_BURST
    assert properties["modelRouting"]["properties"]["complexityThreshold"]["default"] == (
        policy_spec.DEFAULT_COMPLEXITY_THRESHOLD
    )
    assert sampling["detectionRate"]["default"] == policy_spec.DEFAULT_DETECTION_RATE
    assert sampling["minDetectionRate"]["default"] == policy_spec.DEFAULT_MIN_DETECTION_RATE
    assert client["rotationPeriod"]["default"] == policy_spec.DEFAULT_ROTATION_PERIOD
    assert client["gracePeriod"]["default"] == policy_spec.DEFAULT_GRACE_PERIOD
    assert (
        properties["storage"]["properties"]["deletionPolicy"]["default"]
        == policy_spec.DEFAULT_DELETION_POLICY
    )
    severities = [
        {
            "name": s.name,
            "autoRemediate": s.auto_remediate,
            "requireApproval": s.require_approval,
            "quorum": s.quorum,
        }
        for s in policy_spec.DEFAULT_SEVERITIES
    ]
    assert properties["severities"]["default"] == severities


def test_a_minimal_spec_reads_with_every_default() -> None:
    parsed = parse_policy_spec(MINIMAL)
    assert parsed.token.ttl == timedelta(minutes=15) and parsed.algorithm == "EdDSA"
    assert (parsed.rate_limit.per_minute, parsed.rate_limit.burst) == (600, 60)
    assert parsed.critical_severity == "critical" and parsed.budget is None and parsed.clients == ()
    assert parsed.routing.complexity_threshold == 0.7 and parsed.deletion_policy == "Retain"


def test_severities_order_names_the_critical_one() -> None:
    parsed = parse_policy_spec({**MINIMAL, "severities": [{"name": "sev1", "quorum": 3}, {"name": "sev2"}]})
    assert parsed.critical_severity == "sev1"
    assert parsed.severity("sev1").quorum == 3  # type: ignore[union-attr]
    assert parse_policy_spec({**MINIMAL, "severities": []}).critical_severity is None


@pytest.mark.parametrize(
    "broken",
    [
        {"modelRouting": {"simpleModel": "s"}},
        {**MINIMAL, "auth": {"jwt": {"ttl": "forever"}}},
        {**MINIMAL, "apiClients": [{"role": "viewer"}]},
        {**MINIMAL, "auth": {"rateLimit": {"burst": "many"}}},
    ],
)
def test_an_unreadable_spec_is_one_clear_error(broken: dict[str, Any]) -> None:
    with pytest.raises(InvalidPolicySpec, match="spec could not be read"):
        parse_policy_spec(broken)


def test_management_policy() -> None:
    base = {"connectionRef": {"name": "c"}, "modelRouting": {"simpleModel": "s", "complexModel": "c"}}
    assert parse_policy_spec(base).management_policy == "Manage"
    assert not parse_policy_spec(base).observe_only
    observed = parse_policy_spec({**base, "storage": {"managementPolicy": "Observe"}})
    assert observed.observe_only


def test_the_search_collection_is_off_by_default_as_in_the_crd() -> None:
    search = schema()["storage"]["properties"]["searchCollection"]["properties"]
    assert search["enabled"]["default"] is policy_spec.SearchSettings().enabled is False
    names = parse_policy_spec(MINIMAL).storage_names(namespace="team", policy="prod", account="123456789012")
    assert names.search is None


def test_an_enabled_search_collection_gets_a_derived_name_and_the_spec_settings() -> None:
    kms = "arn:aws:kms:us-east-1:123456789012:key/k-1"
    parsed = parse_policy_spec(
        {
            **MINIMAL,
            "storage": {
                "searchCollection": {"enabled": True, "kmsKeyArn": kms, "vpcEndpoints": ["vpce-1", "vpce-2"]}
            },
        }
    )
    names = parsed.storage_names(namespace="team", policy="prod", account="123456789012")
    assert names.search is not None
    assert (
        names.search.name.startswith("ic-team-prod-") and len(names.search.name) == len("ic-team-prod-") + 8
    )
    assert names.search.kms_key_arn == kms and names.search.vpc_endpoints == ("vpce-1", "vpce-2")
    named = parse_policy_spec(
        {**MINIMAL, "storage": {"searchCollection": {"enabled": True, "name": "incidents"}}}
    ).storage_names(namespace="team", policy="prod", account="123456789012")
    assert named.search is not None and named.search.name == "incidents" and named.search.kms_key_arn is None
    disabled = parse_policy_spec({**MINIMAL, "storage": {"searchCollection": {"name": "incidents"}}})
    assert disabled.storage_names(namespace="team", policy="prod", account="1").search is None


def test_the_crd_patterns_accept_derived_collection_names() -> None:
    pattern = schema()["storage"]["properties"]["searchCollection"]["properties"]["name"]["pattern"]
    assert pattern == SEARCH_NAME.pattern
    for namespace, policy in [("a", "b"), ("x" * 63, "y" * 253), ("1ns", "p.q"), ("team", "prod")]:
        assert re.fullmatch(pattern, derived_collection_name(namespace, policy))
