"""kopf settings the operator relies on (operator_app.apply_settings)."""

from __future__ import annotations

import kopf

from incident_commander.operator_app import apply_settings


def test_settings_post_only_our_events_and_let_idle_workers_go_soon() -> None:
    settings = kopf.OperatorSettings()
    apply_settings(settings)
    assert settings.posting.enabled is False  # a standby replica must write nothing
    assert settings.queueing.idle_timeout == 1.0
    assert settings.scanning.disabled is False


def test_namespaced_mode_needs_no_cluster_wide_discovery() -> None:
    settings = kopf.OperatorSettings()
    apply_settings(settings, namespaced=True)
    assert settings.scanning.disabled is True
