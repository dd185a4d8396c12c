"""The ``incident-commander`` console script."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

import kopf

from incident_commander import __version__
from incident_commander.allocator import limit_arenas
from incident_commander.config import OperatorConfig, config_from_args
from incident_commander.metrics import OperatorMetrics
from incident_commander.operator_app import build_registry
from incident_commander.telemetry.tracing import Tracing, TracingConfigError, build_tracing

logger = logging.getLogger(__name__)


def configure_logging(config: OperatorConfig) -> None:
    """kopf's own formatters: JSON with the object reference under ``k8s``, or plain text."""
    kopf.configure(
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="k8s",
    )
    logging.getLogger().setLevel(config.log_level)
    # aiohttp and the kubernetes client log request details at DEBUG/INFO that are noise here.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if config.log_level != "DEBUG":
        # kopf logs "Handler ... succeeded" for every watch event at INFO; we log what matters ourselves.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


async def run_operator(config: OperatorConfig, tracing: Tracing | None = None) -> None:
    """Run until SIGINT/SIGTERM (kopf installs the signal handlers); kopf's cleanup flushes ``tracing``."""
    registry = build_registry(config, OperatorMetrics(), tracing)
    await kopf.operator(
        registry=registry,
        clusterwide=config.all_namespaces,
        namespaces=list(config.namespaces),
        # Every replica watches (the API must be current everywhere); leadership is ours, through a
        # Lease (leadership.py), not kopf's peering, which would pause the watches of a standby.
        standalone=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``incident-commander``."""
    limit_arenas()  # before any thread starts (allocator.py)
    config = config_from_args(argv)
    configure_logging(config)
    scope = "all namespaces" if config.all_namespaces else ", ".join(config.namespaces)
    logger.info("incident-commander %s starting; watching %s", __version__, scope)
    try:
        tracing = build_tracing()
    except TracingConfigError as error:
        logger.error("invalid OpenTelemetry settings: %s", error)
        return 2
    asyncio.run(run_operator(config, tracing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
