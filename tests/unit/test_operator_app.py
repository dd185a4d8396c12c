"""kopf settings the operator relies on (operator_app.apply_settings)."""

from __future__ import annotations

from pathlib import Path

import kopf
import prometheus_client
import pytest
from kubernetes.config import kube_config

from incident_commander.config import OperatorConfig
from incident_commander.metrics import OperatorMetrics
from incident_commander.operator_app import NoDiffBase, apply_settings, build_registry

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: unused}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def test_settings_post_only_our_events_and_let_idle_workers_go_soon() -> None:
    settings = kopf.OperatorSettings()
    apply_settings(settings)
    assert settings.posting.enabled is False  # a standby replica must write nothing
    assert settings.queueing.idle_timeout == 1.0
    assert isinstance(settings.persistence.diffbase_storage, NoDiffBase)
    assert settings.scanning.disabled is False


def test_namespaced_mode_needs_no_cluster_wide_discovery() -> None:
    settings = kopf.OperatorSettings()
    apply_settings(settings, namespaced=True)
    assert settings.scanning.disabled is True


def test_the_operator_registers_only_event_handlers_so_it_needs_no_diff_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NoDiffBase is right only while no handler asks kopf for a diff: changing (create, update,
    delete, resume) and spawning (daemon, timer) handlers do."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    # The client reads $KUBECONFIG once, when it is imported.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    registry = build_registry(
        OperatorConfig(), OperatorMetrics(registry=prometheus_client.CollectorRegistry())
    )
    assert registry._changing.get_all_handlers() == []
    assert registry._spawning.get_all_handlers() == []
    assert {h.id for h in registry._watching.get_all_handlers()} == {
        "watch-awsconnections",
        "watch-budgetpolicies",
        "watch-incidentpolicies",
        "watch-secrets",
    }


def test_no_diff_base_copies_nothing_and_refuses_to_store() -> None:
    storage = NoDiffBase()
    body = kopf.Body(
        {
            "metadata": {"name": "p", "labels": {"a": "b"}, "managedFields": [{"manager": "m"}]},
            "spec": {"severities": [{"name": "sev1"}]},
        }
    )
    assert storage.build(body=body, extra_fields=["spec.severities"]) == {}
    assert storage.fetch(body=body) is None
    with pytest.raises(RuntimeError, match="changing handler"):
        storage.store(body=body, patch=kopf.Patch(), essence=kopf.BodyEssence())
