from __future__ import annotations

from incident_commander.readiness import Readiness


def test_ready_only_with_the_key_the_first_listing_and_a_recent_answer() -> None:
    now = [0.0]
    readiness = Readiness(stale_after=10, monotonic=lambda: now[0])
    assert len(readiness.reasons()) == 3 and not readiness.ready
    readiness.key_loaded = True
    readiness.synced = True
    assert readiness.reasons() == ["the Kubernetes API has not answered for over 10s"]
    readiness.contact()
    assert readiness.ready
    now[0] = 10.5  # cut off from the apiserver: fail closed
    assert not readiness.ready
    readiness.contact()
    assert readiness.ready
