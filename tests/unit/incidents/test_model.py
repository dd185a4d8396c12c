"""The incident lifecycle, proposals and their quorum, detection sampling and MTTR, as pure decisions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from incident_commander.incidents import model
from incident_commander.incidents.model import (
    Actor,
    Change,
    Incident,
    IncidentError,
    Resolution,
    SeverityRule,
)

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
A = Actor(client="agent-a", role="responder")
B = Actor(client="agent-b", role="responder")
C = Actor(client="agent-c", role="responder")
FIXED = Resolution(code="fixed", summary="rolled back")
CRITICAL = SeverityRule(name="critical", auto_remediate=False, require_approval=True, quorum=2)
LOW = SeverityRule(name="low", auto_remediate=True, require_approval=False, quorum=1)
PLAIN = SeverityRule(name="info", auto_remediate=False, require_approval=False, quorum=1)


def opened(severity: str = "critical", dedup_key: str | None = "db-down") -> Incident:
    return model.plan_open(
        incident_id=model.new_incident_id(T0),
        title="db down",
        severity=severity,
        actor=A,
        now=T0,
        dedup_key=dedup_key,
    ).incident


def at(incident: Incident, status: model.Status) -> Incident:
    """The incident moved to ``status`` through the planners themselves."""
    if status in ("acknowledged", "resolved"):
        incident = model.plan_acknowledge(incident, A, T0 + timedelta(minutes=1)).incident
    if status in ("resolved", "closed"):
        incident = model.plan_resolve(incident, A, T0 + timedelta(minutes=5), FIXED).incident
    if status == "closed":
        incident = model.plan_close(incident, A, T0 + timedelta(minutes=6), None).incident
    return incident


def test_open_is_version_one_with_its_audit_entry_and_the_whole_item() -> None:
    change = model.plan_open(
        incident_id="inc-0123456789abcdef012345",
        title="db down",
        severity="critical",
        actor=A,
        now=T0,
        dedup_key="db",
        labels={"team": "payments"},
        trace_parent="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    )
    assert (change.expected_version, change.version, change.action) == (0, 1, "open")
    assert change.head["pk"] == change.head["sk"] == "I#inc-0123456789abcdef012345"
    assert change.head["status"] == "open" and change.head["artifacts"] == {}
    assert change.event["eventId"] == "inc-0123456789abcdef012345:1"
    assert (change.event["from"], change.event["to"], change.event["by"]) == (None, "open", A.to_json())
    assert change.event["details"] == {"title": "db down", "dedupKey": "db"}


TRANSITIONS = [
    # (status, action, outcome: new status or the refusal's reason)
    ("open", "acknowledge", "acknowledged"),
    ("acknowledged", "acknowledge", "AlreadyAcknowledged"),
    ("resolved", "acknowledge", "IllegalTransition"),
    ("closed", "acknowledge", "IllegalTransition"),
    ("open", "resolve", "resolved"),
    ("acknowledged", "resolve", "resolved"),
    ("resolved", "resolve", "AlreadyResolved"),
    ("closed", "resolve", "IllegalTransition"),
    ("open", "close", "ResolutionRequired"),
    ("acknowledged", "close", "ResolutionRequired"),
    ("open", "close-with-resolution", "closed"),
    ("resolved", "close", "closed"),
    ("closed", "close", "AlreadyClosed"),
    ("closed", "attach", "IllegalTransition"),
    ("resolved", "attach", "resolved"),
    ("resolved", "propose", "IllegalTransition"),
]


@pytest.mark.parametrize(("status", "action", "outcome"), TRANSITIONS)
def test_the_transition_table(status: model.Status, action: str, outcome: str) -> None:
    incident = at(opened(), status)
    now = T0 + timedelta(hours=1)
    plans = {
        "acknowledge": lambda: model.plan_acknowledge(incident, B, now),
        "resolve": lambda: model.plan_resolve(incident, B, now, FIXED),
        "close": lambda: model.plan_close(incident, B, now, None),
        "close-with-resolution": lambda: model.plan_close(incident, B, now, FIXED),
        "attach": lambda: model.plan_attach(
            incident, B, now, artifact_id="art-1", name="a.txt", content_type="text/plain"
        ),
        "propose": lambda: model.plan_propose(
            incident,
            B,
            now,
            rule=CRITICAL,
            proposal_id="prop-1",
            action={"x": 1},
            description="d",
            timeout_seconds=60,
        ),
    }
    if outcome[0].isupper():
        with pytest.raises(IncidentError) as refused:
            plans[action]()
        assert (refused.value.status, refused.value.reason) == (409, outcome)
        assert incident.id in refused.value.message
    else:
        change = plans[action]()
        assert change.incident.status == outcome
        assert (change.expected_version, change.version) == (incident.version, incident.version + 1)
        assert change.event["from"] == status and change.event["to"] == outcome
        assert change.head["version"] == change.version


def test_resolving_an_unacknowledged_incident_acknowledges_it_and_frees_its_dedup_key() -> None:
    incident = opened()
    change = model.plan_resolve(incident, B, T0 + timedelta(minutes=10), FIXED)
    assert change.time_to_acknowledge == change.time_to_resolve == 600
    assert change.incident.acknowledged_by == B and change.head["acknowledgedBy"] == B.to_json()
    assert change.release_dedup == "db-down"
    assert change.resolution_marker == (T0 + timedelta(minutes=10), 600)
    acked = at(opened(), "acknowledged")
    change = model.plan_resolve(acked, B, T0 + timedelta(minutes=10), FIXED)
    assert change.time_to_acknowledge is None and change.time_to_resolve == 600
    # Closing a resolved incident is not a second resolution.
    closing = model.plan_close(change.incident, B, T0 + timedelta(hours=1), None)
    assert (
        closing.resolution_marker is None
        and closing.time_to_resolve is None
        and closing.release_dedup is None
    )


def test_acknowledging_measures_mtta() -> None:
    change = model.plan_acknowledge(opened(), B, T0 + timedelta(seconds=90))
    assert change.time_to_acknowledge == 90 and change.event["details"] == {"secondsToAcknowledge": 90.0}


def proposed(rule: SeverityRule = CRITICAL, timeout: int = 600) -> tuple[Incident, str]:
    change = model.plan_propose(
        at(opened(rule.name), "acknowledged"),
        A,
        T0 + timedelta(minutes=2),
        rule=rule,
        proposal_id="prop-0123456789abcdef",
        action={"kind": "rollback"},
        description="roll back",
        timeout_seconds=timeout,
    )
    assert change.proposal is not None and change.proposal.create
    return change.incident, "prop-0123456789abcdef"


def test_severities_decide_how_a_proposal_is_approved() -> None:
    incident, pid = proposed(CRITICAL)
    proposal = incident.proposal(pid)
    assert proposal is not None
    assert (proposal.mode, proposal.state, proposal.quorum, proposal.signalled) == (
        "quorum",
        "Pending",
        2,
        False,
    )
    for rule, mode in ((LOW, "autoRemediate"), (PLAIN, "notRequired")):
        incident, pid = proposed(rule)
        proposal = incident.proposal(pid)
        assert proposal is not None
        assert (proposal.mode, proposal.state, proposal.decided_by) == (mode, "Approved", model.POLICY)
        assert proposal.signalled, "nothing for the state machine to do"


def test_approvals_come_from_distinct_principals_other_than_the_proposer_until_the_quorum() -> None:
    incident, pid = proposed()
    now = T0 + timedelta(minutes=3)
    with pytest.raises(IncidentError, match="may not approve") as own:
        model.plan_approve(incident, A, now, pid)
    assert own.value.reason == "SelfApproval"
    first = model.plan_approve(incident, B, now, pid)
    assert first.incident.proposal(pid).state == "Pending"  # type: ignore[union-attr]
    assert first.event["details"] == {"proposalId": pid, "approvals": 1, "quorum": 2, "quorumReached": False}
    with pytest.raises(IncidentError) as twice:
        model.plan_approve(first.incident, B, now, pid)
    assert (twice.value.status, twice.value.reason) == (409, "AlreadyApproved")
    second = model.plan_approve(first.incident, C, now, pid)
    proposal = second.incident.proposal(pid)
    assert (
        proposal is not None
        and proposal.state == "Approving"
        and proposal.approvers == ("agent-b", "agent-c")
    )
    for actor, reason in ((Actor(client="agent-d", role="admin"), "QuorumReached"),):
        with pytest.raises(IncidentError) as late:
            model.plan_approve(second.incident, actor, now, pid)
        assert late.value.reason == reason
    with pytest.raises(IncidentError) as refused:
        model.plan_refuse(second.incident, B, now, pid, "no")
    assert refused.value.reason == "QuorumReached"


def test_a_proposal_past_its_deadline_takes_no_vote_and_a_missing_one_is_404() -> None:
    incident, pid = proposed(timeout=60)
    late = T0 + timedelta(minutes=3, seconds=1)
    for plan in (
        lambda: model.plan_approve(incident, B, late, pid),
        lambda: model.plan_refuse(incident, B, late, pid, "too late"),
    ):
        with pytest.raises(IncidentError) as expired:
            plan()
        assert expired.value.reason == "ProposalExpired"
    with pytest.raises(IncidentError) as missing:
        model.plan_approve(incident, B, T0, "prop-ffffffffffffffff")
    assert missing.value.status == 404


def test_a_refusal_vetoes_and_waits_to_be_told_to_the_state_machine() -> None:
    incident, pid = proposed()
    change = model.plan_refuse(incident, B, T0 + timedelta(minutes=3), pid, "loses orders")
    proposal = change.incident.proposal(pid)
    assert proposal is not None
    assert (proposal.state, proposal.reason, proposal.decided_by, proposal.signalled) == (
        "Refused",
        "loses orders",
        B,
        False,
    )
    assert change.proposal is not None and "status" not in change.proposal.remove
    with pytest.raises(IncidentError) as again:
        model.plan_approve(change.incident, C, T0 + timedelta(minutes=3), pid)
    assert again.value.reason == "ProposalRefused"


def test_the_workflow_s_decision_is_recorded_once() -> None:
    incident, pid = proposed()
    incident = model.plan_approve(incident, B, T0 + timedelta(minutes=3), pid).incident
    approving = model.plan_approve(incident, C, T0 + timedelta(minutes=3), pid).incident
    decided = model.plan_decide(approving, T0 + timedelta(minutes=4), pid, "Approved", "quorum")
    assert decided is not None and decided.incident.proposal(pid).state == "Approved"  # type: ignore[union-attr]
    assert decided.event["by"] == model.CONSENSUS.to_json()
    assert decided.proposal is not None and decided.proposal.remove == ("status",)
    assert model.plan_decide(decided.incident, T0, pid, "Expired", "late") is None
    # The workflow approving what the table never saw reach the quorum is a failure, not an approval.
    pending, pid = proposed()
    failed = model.plan_decide(pending, T0 + timedelta(minutes=4), pid, "Approved", "?")
    assert failed is not None and failed.incident.proposal(pid).state == "Failed"  # type: ignore[union-attr]
    # A decision is a fact about the workflow: it is recorded even on a closed incident.
    closed = model.plan_close(pending, A, T0 + timedelta(minutes=5), FIXED).incident
    assert model.plan_decide(closed, T0 + timedelta(hours=1), pid, "Expired", "timeout") is not None


@pytest.mark.parametrize(
    ("severity", "rate", "halted", "draw", "expected"),
    [
        ("critical", 0.0, True, 0.99, "open"),  # the most severe: never sampled away, even halted
        ("high", 1.0, True, 0.0, "halted"),
        ("high", 0.25, False, 0.2499, "open"),
        ("high", 0.25, False, 0.25, "sampled_out"),
        ("high", 0.0, False, 0.0, "sampled_out"),
        ("high", 1.0, False, 0.9999, "open"),
    ],
)
def test_detection_sampling(severity: str, rate: float, halted: bool, draw: float, expected: str) -> None:
    assert (
        model.detection_decision(
            severity=severity, most_severe="critical", sampling_rate=rate, halted=halted, draw=draw
        )
        == expected
    )


def test_mttr_percentiles_are_nearest_rank() -> None:
    assert model.percentile([], 0.5) is None
    assert model.percentile([7.0], 0.9) == 7.0
    values = [float(v) for v in range(1, 11)]
    assert (model.percentile(values, 0.5), model.percentile(values, 0.9)) == (5.0, 9.0)
    summary = model.mttr_by_severity([("high", 60.0), ("critical", 30.0), ("high", 600.0), ("high", 120.0)])
    assert summary == {
        "critical": {"count": 1, "p50Seconds": 30.0, "p90Seconds": 30.0},
        "high": {"count": 3, "p50Seconds": 120.0, "p90Seconds": 600.0},
    }


def test_ids_sort_by_opening_time_and_items_round_trip() -> None:
    ids = [model.new_incident_id(T0 + timedelta(milliseconds=ms)) for ms in (0, 1, 1000, 86_400_000)]
    assert ids == sorted(ids) and len(set(ids)) == 4
    incident, pid = proposed()
    change: Change = model.plan_attach(
        incident, B, T0 + timedelta(minutes=4), artifact_id="art-1", name="log.txt", content_type="text/plain"
    )
    incident = change.incident
    proposal = incident.proposal(pid)
    assert proposal is not None
    items = [model.proposal_item(incident.id, proposal)]
    back = model.incident_from_items(model.head_item(incident), items, {"upTo": 5, "publishedUpTo": 3})
    assert back == replace(incident, pending_events=2)
