from datetime import UTC, datetime, timedelta

from incident_commander.credentials import api_keys
from incident_commander.credentials.api_keys import (
    ClientSecret,
    ClientSpec,
    DeleteSecret,
    Issue,
    KeyIndex,
    Prune,
    ResolvePending,
    Revoke,
    StartRotation,
    generate_key,
    next_step,
    parse_key_id,
    verify_key,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
AGENT = ClientSpec(
    name="agent", role="responder", rotation_period=timedelta(hours=1), grace_period=timedelta(minutes=5)
)


def issue(index: KeyIndex, client: ClientSpec, now: datetime = NOW) -> tuple[KeyIndex, api_keys.IssuedKey]:
    key = generate_key()
    pending = api_keys.with_pending(index, client, key, now)
    return api_keys.with_activated(pending, key.key_id, client.grace_period, now), key


def plan(
    index: KeyIndex,
    secrets: dict[str, ClientSecret],
    now: datetime = NOW,
    rotate: str | None = None,
    clients: tuple[ClientSpec, ...] = (AGENT,),
) -> api_keys.Step | None:
    return next_step(clients=clients, index=index, secrets_by_client=secrets, rotate_request=rotate, now=now)


def test_key_format_and_verification() -> None:
    key = generate_key()
    assert key.plaintext.startswith(f"ick_{key.key_id}_") and parse_key_id(key.plaintext) == key.key_id
    assert len(key.plaintext.split("_", 2)[2]) == 43  # 256 bits, URL-safe base64 without padding
    index, issued = issue(KeyIndex(), AGENT)
    assert verify_key(issued.plaintext, index, NOW) is not None
    altered = issued.plaintext[:-1] + ("B" if issued.plaintext.endswith("A") else "A")
    assert verify_key(altered, index, NOW) is None  # (a fixed "A" matched the key itself 1 time in 64)
    assert verify_key("ick_" + "0" * 16 + "_x", index, NOW) is None
    assert verify_key("Bearer nonsense", index, NOW) is None
    assert issued.plaintext not in str(index.to_json())


def test_first_key_is_issued_then_nothing_to_do() -> None:
    assert plan(KeyIndex(), {}) == Issue(client="agent", reason="Initial")
    index, key = issue(KeyIndex(), AGENT)
    assert plan(index, {"agent": ClientSecret(key_id=key.key_id, role="responder")}) is None


def test_pending_left_by_a_crash_is_finished_or_dropped() -> None:
    key = generate_key()
    pending = api_keys.with_pending(KeyIndex(), AGENT, key, NOW)
    # Crash before the Secret was written: nobody holds the key, drop it.
    assert plan(pending, {}) == ResolvePending(client="agent", key_id=key.key_id, activate=False)
    # Crash after the Secret was written: finish the activation.
    held = {"agent": ClientSecret(key_id=key.key_id, role="responder")}
    assert plan(pending, held) == ResolvePending(client="agent", key_id=key.key_id, activate=True)


def test_rotation_keeps_the_previous_key_for_the_grace_period_only() -> None:
    index, first = issue(KeyIndex(), AGENT)
    due = NOW + timedelta(hours=1)
    secrets = {"agent": ClientSecret(key_id=first.key_id, role="responder")}
    assert plan(index, secrets, now=due) == Issue(client="agent", reason="RotationPeriodElapsed")
    rotated, second = issue(index, AGENT, now=due)
    states = {e.key_id: e.state for e in rotated.entries}
    assert states == {first.key_id: "Rotating", second.key_id: "Active"}
    assert verify_key(first.plaintext, rotated, due + timedelta(minutes=4)) is not None
    assert verify_key(first.plaintext, rotated, due + timedelta(minutes=5)) is None
    secrets = {"agent": ClientSecret(key_id=second.key_id, role="responder")}
    step = plan(rotated, secrets, now=due + timedelta(minutes=5))
    assert step == Revoke(key_ids=(first.key_id,), reason="GracePeriodEnded")
    assert api_keys.next_due(rotated) == due + timedelta(minutes=5)


def test_rotate_annotation_queues_every_client_once() -> None:
    other = ClientSpec(
        name="ui", role="viewer", rotation_period=timedelta(hours=1), grace_period=timedelta(minutes=1)
    )
    index, a = issue(KeyIndex(), AGENT)
    index, b = issue(index, other)
    secrets = {
        "agent": ClientSecret(key_id=a.key_id, role="responder"),
        "ui": ClientSecret(key_id=b.key_id, role="viewer"),
    }
    step = plan(index, secrets, rotate="1", clients=(AGENT, other))
    assert step == StartRotation(request="1", clients=("agent", "ui"))
    assert isinstance(step, StartRotation)
    index = api_keys.with_rotation_started(index, step)
    assert plan(index, secrets, rotate="1", clients=(AGENT, other)) == Issue(
        client="agent", reason="RotationRequested"
    )
    index, a2 = issue(index, AGENT)
    secrets["agent"] = ClientSecret(key_id=a2.key_id, role="responder")
    assert index.rotation_queue == ("ui",)
    assert plan(index, secrets, rotate="1", clients=(AGENT, other)) == Issue(
        client="ui", reason="RotationRequested"
    )
    index, b2 = issue(index, other)
    secrets["ui"] = ClientSecret(key_id=b2.key_id, role="viewer")
    assert plan(index, secrets, rotate="1", clients=(AGENT, other)) is None


def test_removed_client_is_revoked_before_its_secret_is_deleted() -> None:
    index, key = issue(KeyIndex(), AGENT)
    secrets = {"agent": ClientSecret(key_id=key.key_id, role="responder")}
    assert plan(index, secrets, clients=()) == Revoke(key_ids=(key.key_id,), reason="ClientRemoved")
    revoked = api_keys.with_revoked(index, [key.key_id], NOW)
    assert plan(revoked, secrets, clients=()) == DeleteSecret(client="agent")
    assert plan(revoked, {}, clients=()) is None
    assert plan(revoked, {}, clients=(), now=NOW + timedelta(days=8)) == Prune(key_ids=(key.key_id,))


def test_role_change_or_tampered_secret_rotates() -> None:
    index, key = issue(KeyIndex(), AGENT)
    admin = ClientSpec(
        name="agent", role="admin", rotation_period=timedelta(hours=1), grace_period=timedelta(0)
    )
    held = {"agent": ClientSecret(key_id=key.key_id, role="responder")}
    assert plan(index, held, clients=(admin,)) == Issue(client="agent", reason="RoleChanged")
    assert plan(index, {}) == Issue(client="agent", reason="SecretMissingOrAltered")
    assert plan(index, {"agent": ClientSecret(key_id="f" * 16, role="responder")}) == Issue(
        client="agent", reason="SecretMissingOrAltered"
    )


def test_index_round_trips_through_json() -> None:
    index, _ = issue(KeyIndex(rotate_handled="x"), AGENT)
    assert KeyIndex.from_json(index.to_json()) == index
