from incident_commander.api.directory import Directory
from incident_commander.api.history import History


def body(name: str) -> dict[str, object]:
    return {"metadata": {"namespace": "team", "name": name}, "spec": {}}


def test_a_deleted_policy_takes_its_history_with_it() -> None:
    history = History()
    directory = Directory(on_policy_deleted=history.forget)
    for name in ("gone", "kept"):
        directory.observe("IncidentPolicy", "ADDED", body(name))
        history.record(("team", name), "decision", {"model": "small"})
    directory.observe("AwsConnection", "DELETED", body("gone"))  # another kind: history stays
    assert history.counts(("team", "gone")) == {"decision": 1}
    directory.observe("IncidentPolicy", "DELETED", body("gone"))
    assert history.counts(("team", "gone")) == {} and history.recent(("team", "gone"), 10) == []
    assert history.counts(("team", "kept")) == {"decision": 1}
    assert directory.policy("team", "gone") is None
