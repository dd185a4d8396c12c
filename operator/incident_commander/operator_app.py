"""Assembles one operator: kopf settings, the kinds' handlers and the HTTP servers.

Everything is registered on an explicit ``kopf.OperatorRegistry`` built here, not
on kopf's global default registry, so building an operator has no import-time
side effects and tests can run one in-process if they want.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from incident_commander import API_GROUP
from incident_commander.api import watches as api_watches
from incident_commander.api.app import ApiContext, build_api_app
from incident_commander.api.budget_bridge import BudgetBridge
from incident_commander.api.directory import Directory
from incident_commander.api.history import History
from incident_commander.api.keyring import Keyring
from incident_commander.api.metrics import ApiMetrics
from incident_commander.budget.registry import BudgetRegistry
from incident_commander.config import OperatorConfig
from incident_commander.connections import ConnectionRegistry
from incident_commander.kinds import awsconnection, budgetpolicy, incidentpolicy
from incident_commander.kube_api import KubeApi, load_api_client
from incident_commander.metrics import OperatorMetrics
from incident_commander.policies import PolicyRegistry
from incident_commander.servers import HttpServers
from incident_commander.telemetry import aiohttp as traced_http
from incident_commander.telemetry.tracing import Tracing, disabled

logger = logging.getLogger(__name__)

FINALIZER = f"{API_GROUP}/finalizer"


def apply_settings(settings: kopf.OperatorSettings, *, namespaced: bool = False) -> None:
    """Our own finalizer and annotation prefix, and Events only for what we post ourselves.

    kopf mirrors handler log lines into Events by default; we post Events on
    condition transitions instead, so routine reconciliations create none.
    """
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    # kopf keeps a worker per object until it has seen no event for this long, holding that
    # object's last raw event (managedFields and all); 1 s instead of 5 s when thousands of
    # objects arrive at once (docs/performance.md, run 9).
    settings.queueing.idle_timeout = 1.0
    if namespaced:
        # Listed namespaces and known CRDs: nothing to discover, and the chart's namespaced RBAC
        # then needs no cluster-wide read of Namespaces or CRDs.
        settings.scanning.disabled = True


def build_registry(
    config: OperatorConfig, metrics: OperatorMetrics, tracing: Tracing | None = None
) -> kopf.OperatorRegistry:
    """A registry with every handler of this operator; ``tracing`` is shut down (flushed) at cleanup."""
    registry = kopf.OperatorRegistry()
    tracing = tracing or disabled()
    tracer = tracing.tracer
    kube = KubeApi(load_api_client())
    connections = ConnectionRegistry(
        kube=kube,
        metrics=metrics,
        client_cache=config.aws_client_cache,
        tracer=tracer,
        web_identity_token_dirs=config.web_identity_token_dirs,
    )
    budgets = BudgetRegistry(
        kube=kube,
        connections=connections,
        metrics=metrics,
        tracer=tracer,
        ledger_refresh=config.ledger_refresh.total_seconds(),
    )
    policies = PolicyRegistry(
        kube=kube,
        connections=connections,
        metrics=metrics,
        deletion_timeout=config.deletion_timeout,
        budget_state=budgets.state,
        tracer=tracer,
    )
    budgets.subscribe(policies.budget_changed)
    connections.subscribe(policies.connection_changed)
    connections.subscribe(budgets.connection_changed)
    history = History()
    keyring, directory = Keyring(), Directory(on_policy_deleted=history.forget)
    bridge = BudgetBridge(budgets)
    api = build_api_app(
        ApiContext(
            keyring=keyring,
            directory=directory,
            history=history,
            metrics=ApiMetrics(metrics.registry),
            effective_for=bridge.effective_for,
            usage=bridge,
            budgets=bridge,
            cors_origins=frozenset(config.cors_origins),
        )
    )
    if tracing.enabled:
        traced_http.instrument(api, tracer)
    servers = HttpServers(config=config, metrics=metrics, api=api)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        apply_settings(settings, namespaced=not config.all_namespaces)
        await asyncio.to_thread(
            api_watches.initial_sync,
            kube,
            keyring=keyring,
            directory=directory,
            namespaces=None if config.all_namespaces else config.namespaces,
        )
        await servers.start()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A private registry has none of kopf's implicit login handlers: in-cluster
        # service account first, then $KUBECONFIG or ~/.kube/config.
        info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
        return info or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def shutdown(**_: Any) -> None:
        await policies.close()
        await budgets.close()
        await connections.close()
        await servers.stop()
        await asyncio.to_thread(tracing.shutdown)

    awsconnection.register(registry, connections)
    incidentpolicy.register(registry, policies)
    budgetpolicy.register(registry, budgets)
    api_watches.register(registry, keyring=keyring, directory=directory)
    return registry
