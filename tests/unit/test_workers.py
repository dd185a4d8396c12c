from incident_commander.workers import Dependents


def body(**spec: object) -> dict[str, object]:
    return {"spec": spec}


def test_dependents_follow_references_as_they_change_and_go() -> None:
    dependents = Dependents("connectionRef", "budgetRef")
    dependents.track(("a", "p1"), body(connectionRef={"name": "c"}, budgetRef={"name": "b"}))
    dependents.track(("a", "p2"), body(connectionRef={"name": "c"}))
    dependents.track(("other", "p3"), body(connectionRef={"name": "c"}))
    assert dependents.of("a", "connectionRef", "c") == [("a", "p1"), ("a", "p2")]
    assert dependents.of("a", "budgetRef", "b") == [("a", "p1")]
    assert dependents.of("a", "budgetRef", "c") == []  # the kind of reference matters

    dependents.track(("a", "p1"), body(connectionRef={"name": "d"}))  # edited: new connection, no budget
    assert dependents.of("a", "connectionRef", "c") == [("a", "p2")]
    assert dependents.of("a", "connectionRef", "d") == [("a", "p1")]
    assert dependents.of("a", "budgetRef", "b") == []

    dependents.untrack(("a", "p2"))
    dependents.untrack(("a", "never-tracked"))
    assert dependents.of("a", "connectionRef", "c") == []
    assert dependents.of("other", "connectionRef", "c") == [("other", "p3")]


def test_a_body_without_the_reference_names_nothing() -> None:
    dependents = Dependents("budgetRef")
    dependents.track(("a", "p"), body(budgetRef=None))
    dependents.track(("a", "q"), {"spec": None})
    assert dependents.of("a", "budgetRef", "None") == []
