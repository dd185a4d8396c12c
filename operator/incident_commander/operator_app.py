"""Assembles one operator: kopf settings, the kinds' handlers and the HTTP servers.

Everything is registered on an explicit ``kopf.OperatorRegistry`` built here, not
on kopf's global default registry, so building an operator has no import-time
side effects and tests can run one in-process if they want.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import kopf

from incident_commander import API_GROUP
from incident_commander.api import tracing as traced_http
from incident_commander.api import watching as api_watching
from incident_commander.api.app import build_api_app
from incident_commander.api.bedrock import BedrockModels
from incident_commander.api.budget_bridge import BudgetBridge
from incident_commander.api.context import ApiContext
from incident_commander.api.directory import Directory
from incident_commander.api.history import History
from incident_commander.api.keyring import Keyring
from incident_commander.api.metrics import ApiMetrics
from incident_commander.config import OperatorConfig
from incident_commander.controller import Controller
from incident_commander.credentials.integrity import KEY_SECRET_NAME, IntegrityKeyHolder
from incident_commander.credentials.issuer import LABEL_MANAGED_BY, MANAGED_BY
from incident_commander.incidents.service import IncidentService, Target
from incident_commander.incidents.sweeper import IncidentSweeper
from incident_commander.kinds.awsconnection import handlers as awsconnection_handlers
from incident_commander.kinds.awsconnection.controller import ConnectionController
from incident_commander.kinds.budgetpolicy import handlers as budgetpolicy_handlers
from incident_commander.kinds.budgetpolicy.controller import BudgetController
from incident_commander.kinds.incidentpolicy import handlers as incidentpolicy_handlers
from incident_commander.kinds.incidentpolicy.controller import PolicyController
from incident_commander.kube_api import KubeApi, load_api_client
from incident_commander.leadership import LeaderElector, Membership, Timing
from incident_commander.metrics import OperatorMetrics
from incident_commander.readiness import Readiness, heartbeat
from incident_commander.servers import HttpServers
from incident_commander.telemetry.tracing import Tracing, disabled
from incident_commander.watches import Watches

logger = logging.getLogger(__name__)

FINALIZER = f"{API_GROUP}/finalizer"


class NoDiffBase(kopf.DiffBaseStorage):
    """No "last handled" essence: every handler here is an event handler (watches.py), and kopf
    hands a diff only to changing and spawning handlers.

    kopf builds the essence of every event's object before it looks at which handlers want it:
    a deep copy of the whole body, managedFields included, then trimmed: 161 µs per event on the
    bench's own objects and Secrets, some 10,000 events at N = 1,000 (docs/performance.md,
    seventh session). Nothing here reads it. ``store`` is kopf's call after a changing handler
    ran, so it raising means one was registered and this storage must go.
    """

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        raise RuntimeError("a changing handler ran, but the operator keeps no diff base (NoDiffBase)")


def apply_settings(settings: kopf.OperatorSettings, *, namespaced: bool = False) -> None:
    """Our own finalizer and annotation prefix, and Events only for what we post ourselves.

    kopf mirrors handler log lines into Events by default; we post Events on
    condition transitions instead, so routine reconciliations create none.
    """
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = NoDiffBase()
    # kopf would post its handlers' warnings as Events: a write, also from a standby replica.
    settings.posting.enabled = False
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


INTEGRITY_KEY_RETRY = 2.0


async def load_integrity_key(holder: IntegrityKeyHolder, kube: KubeApi, namespace: str) -> None:
    """Load (or create) the sealing key before any watch starts; retry until it works.

    Without it no credential can be trusted or issued, so there is nothing useful to do first:
    kopf starts the watches only once its startup handlers return."""
    attempt = 0
    while True:
        try:
            # Any replica may create it (it is not a reconciled object); racing creates resolve to
            # one key (kube_api.read_or_create_secret_field).
            await asyncio.to_thread(holder.load, kube, namespace)
            return
        except Exception as exc:  # the apiserver away, or RBAC missing: say which, and retry
            if attempt % 15 == 0:
                logger.error(
                    "cannot load the integrity key from Secret %s/%s (%s: %s); retrying",
                    namespace,
                    KEY_SECRET_NAME,
                    type(exc).__name__,
                    getattr(exc, "reason", None) or exc,
                )
            attempt += 1
            await asyncio.sleep(INTEGRITY_KEY_RETRY)


async def first_listing(watches: Watches, kube: KubeApi, config: OperatorConfig) -> None:
    """The first listing of every resource, retried until it works (readiness waits for it)."""
    while not await watches.initial_sync(
        kube,
        namespaces=None if config.all_namespaces else config.namespaces,
        secret_selector=f"{LABEL_MANAGED_BY}={MANAGED_BY}",
    ):
        await asyncio.sleep(INTEGRITY_KEY_RETRY)


def build_registry(
    config: OperatorConfig, metrics: OperatorMetrics, tracing: Tracing | None = None
) -> kopf.OperatorRegistry:
    """A registry with every handler of this operator; ``tracing`` is shut down (flushed) at cleanup.

    The composition root: the three kinds' controllers and how they wake each other, the API and
    its view of the cluster, the watches that feed them all, leadership, readiness and the servers."""
    registry = kopf.OperatorRegistry()
    tracing = tracing or disabled()
    tracer = tracing.tracer
    elector: LeaderElector | None = None
    kube = KubeApi(
        load_api_client(config.identity),
        writes_allowed=lambda: elector is None or elector.may_write(),
    )
    integrity_key = IntegrityKeyHolder()
    readiness = Readiness()

    connections = ConnectionController(
        kube=kube,
        metrics=metrics,
        client_cache=config.aws_client_cache,
        tracer=tracer,
        web_identity_token_dirs=config.web_identity_token_dirs,
    )
    budgets = BudgetController(
        kube=kube,
        connections=connections,
        metrics=metrics,
        tracer=tracer,
        ledger_refresh=config.ledger_refresh.total_seconds(),
    )
    policies = PolicyController(
        kube=kube,
        connections=connections,
        metrics=metrics,
        deletion_timeout=config.deletion_timeout,
        budget_state=budgets.state,
        tracer=tracer,
        integrity_key=integrity_key.require,
    )
    budgets.subscribe(policies.budget_changed)
    connections.subscribe(policies.connection_changed)
    connections.subscribe(budgets.connection_changed)
    controllers: tuple[Controller[Any], ...] = (connections, budgets, policies)
    # Incidents are served by every replica from DynamoDB; the sweep (outboxes, proposals, the
    # open-incidents gauge) is the leader's.
    incidents = IncidentService(connections=connections, metrics=metrics, tracer=tracer)
    membership: Membership | None = None
    sweeper = IncidentSweeper(
        incidents,
        lambda: [
            Target(namespace=ref.namespace, name=ref.name, spec=spec)
            for ref, spec in policies.storage_in_place()
        ],
        interval=config.incident_sweep_interval.total_seconds(),
        members=lambda: membership.live if membership is not None else frozenset(),
        # Only without leader election: other replicas' APIs may have written there, and membership
        # does not know them before its first round (fail closed: sweep).
        created_here=lambda target: (
            membership is None and policies.table_created_here(target.namespace, target.name)
        ),
    )

    def lead() -> None:
        for controller in controllers:
            controller.resume()
        sweeper.start()

    def stand_by() -> None:
        for controller in controllers:
            controller.pause()
        sweeper.stop()

    if config.leader_election is not None:
        duration, deadline, period = config.leader_timing
        timing = Timing(lease_duration=duration, renew_deadline=deadline, retry_period=period)
        stand_by()  # until this replica leads
        leases = kube.without_retries()
        elector = LeaderElector(
            leases,
            namespace=config.state_namespace,
            name=config.leader_election,
            identity=config.identity,
            on_started=lead,
            on_stopped=stand_by,
            timing=timing,
        )
        membership = Membership(
            leases,
            namespace=config.state_namespace,
            election=config.leader_election,
            identity=config.identity,
            ready=lambda: readiness.ready,
            timing=timing,
        )

    history = History()
    api_metrics = ApiMetrics(metrics.registry)
    directory = Directory(
        on_policy_deleted=history.forget,
        on_policy_changed=lambda namespace, name: keyring.refresh(namespace, name),
    )
    keyring = Keyring(
        integrity_key=integrity_key.get,
        policy_uid=directory.policy_uid,
        on_untrusted=lambda reason: api_metrics.untrusted_secrets.labels(reason=reason).inc(),
    )
    models = BedrockModels(connections, metrics)
    api = build_api_app(
        ApiContext(
            keyring=keyring,
            directory=directory,
            history=history,
            metrics=api_metrics,
            budgets=BudgetBridge(budgets),
            body_timeout=config.api_idle_timeout,
            cors_origins=frozenset(config.cors_origins),
            not_ready=readiness.reasons,
            replicas=(lambda: membership.members) if membership is not None else (lambda: 1),
            models=models,
            incidents=incidents,
        )
    )
    if tracing.enabled:
        traced_http.instrument(api, tracer)
    servers = HttpServers(config=config, metrics=metrics, api=api, api_metrics=api_metrics)

    watches = Watches()
    awsconnection_handlers.subscribe(watches, connections)
    budgetpolicy_handlers.subscribe(watches, budgets)
    incidentpolicy_handlers.subscribe(watches, policies)
    api_watching.subscribe(watches, directory=directory, keyring=keyring)
    watches.register(registry)
    background: list[asyncio.Task[None]] = []

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        apply_settings(settings, namespaced=not config.all_namespaces)
        await servers.start()  # first: liveness answers, and the API answers 503 until ready
        background.append(asyncio.create_task(heartbeat(kube, readiness), name="heartbeat"))
        await load_integrity_key(integrity_key, kube, config.state_namespace)
        readiness.key_loaded = True
        await first_listing(watches, kube, config)
        readiness.synced = True
        if elector is not None and membership is not None:
            background.append(asyncio.create_task(elector.run(), name="leader election"))
            background.append(asyncio.create_task(membership.run(), name="membership"))
        else:
            sweeper.start()  # the only replica leads from the start

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A private registry has none of kopf's implicit login handlers: in-cluster
        # service account first, then $KUBECONFIG or ~/.kube/config.
        info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
        return info or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def shutdown(**_: Any) -> None:
        await sweeper.close()
        incidents.shutdown()
        for controller in reversed(controllers):
            await controller.close()
        for task in background:  # the elector releases the Lease: the next leader takes over at once
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await servers.stop()
        models.close()
        await asyncio.to_thread(tracing.shutdown)

    return registry
