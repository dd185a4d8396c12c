"""The usage ledger: LLM spend priced from reported tokens, durable in DynamoDB.

Table ``incident-commander-usage-ledger`` (partition key ``pk``, a string; on-demand billing; TTL
on ``expiresAt``), created through the budget's AwsConnection when missing. Items:

- counter ``ledger#<namespace>/<budget>#<period start>``: ``cost`` (a DynamoDB Number, an exact
  decimal) and ``reports``, only ever changed by atomic ``ADD``.
- idempotency ``idem#<namespace>/<budget>#<key>``: the cost and period a key was recorded with;
  expires 62 days after it was written.

A report with an idempotency key is one ``TransactWriteItems``: put the idempotency item on the
condition ``attribute_not_exists(pk)`` and ``ADD`` to the counter. Both happen or neither does, so
a retry (after a timeout, a crash, a restart) counts once. Blocking: run in a thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from incident_commander.aws.errors import classify
from incident_commander.timestamps import kubernetes_time, parse_time

TABLE = "incident-commander-usage-ledger"
IDEMPOTENCY_TTL_SECONDS = 62 * 24 * 3600


class LedgerError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True, kw_only=True)
class Recorded:
    cost: Decimal
    period_start: datetime
    duplicate: bool


def counter_key(namespace: str, budget: str, period_start: datetime) -> str:
    return f"ledger#{namespace}/{budget}#{kubernetes_time(period_start)}"


def idempotency_key(namespace: str, budget: str, key: str) -> str:
    return f"idem#{namespace}/{budget}#{key}"


_ensured: set[tuple[int, str]] = set()
_ensure_lock = threading.Lock()


def ensure_table(client: Any, table: str = TABLE) -> None:
    """Create the table (on demand, TTL) unless this client already saw it exist."""
    marker = (id(client), table)
    with _ensure_lock:
        if marker in _ensured:
            return
    try:
        try:
            client.describe_table(TableName=table)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            try:
                client.create_table(
                    TableName=table,
                    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST",
                    Tags=[{"Key": "app.kubernetes.io/managed-by", "Value": "incident-commander"}],
                )
            except ClientError as create_exc:
                if create_exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                    raise
            client.get_waiter("table_exists").wait(
                TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
            client.update_time_to_live(
                TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"}
            )
    except Exception as exc:
        error = classify(exc)
        raise LedgerError(error.reason, f"usage ledger table {table}: {error.message}") from None
    with _ensure_lock:
        _ensured.add(marker)


def record(
    client: Any,
    *,
    namespace: str,
    budget: str,
    period_start: datetime,
    cost: Decimal,
    key: str | None,
    table: str = TABLE,
) -> Recorded:
    """Add ``cost`` to the period's counter; once per ``key`` when there is one."""
    counter = {
        "Update": {
            "TableName": table,
            "Key": {"pk": {"S": counter_key(namespace, budget, period_start)}},
            "UpdateExpression": "ADD #cost :cost, #reports :one",
            "ExpressionAttributeNames": {"#cost": "cost", "#reports": "reports"},
            "ExpressionAttributeValues": {":cost": {"N": str(cost)}, ":one": {"N": "1"}},
        }
    }
    try:
        if key is None:
            client.update_item(**counter["Update"])
            return Recorded(cost=cost, period_start=period_start, duplicate=False)
        idem_pk = idempotency_key(namespace, budget, key)
        client.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": table,
                        "Item": {
                            "pk": {"S": idem_pk},
                            "cost": {"N": str(cost)},
                            "periodStart": {"S": kubernetes_time(period_start)},
                            "expiresAt": {"N": str(int(time.time()) + IDEMPOTENCY_TTL_SECONDS)},
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                counter,
            ]
        )
        return Recorded(cost=cost, period_start=period_start, duplicate=False)
    except ClientError as exc:
        if key is not None and _idempotency_conflict(exc):
            return _previous(client, table, idem_pk, cost, period_start)
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            with _ensure_lock:  # deleted behind our back: create it again on the next report
                _ensured.discard((id(client), table))
        error = classify(exc)
        raise LedgerError(error.reason, error.message) from None
    except Exception as exc:
        error = classify(exc)
        raise LedgerError(error.reason, error.message) from None


def _idempotency_conflict(exc: ClientError) -> bool:
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = exc.response.get("CancellationReasons") or []
    if reasons:
        return bool(reasons[0].get("Code") == "ConditionalCheckFailed")
    return "ConditionalCheckFailed" in str(exc.response.get("Error", {}).get("Message"))


def _previous(client: Any, table: str, pk: str, cost: Decimal, period_start: datetime) -> Recorded:
    """A retry: answer with what the first attempt recorded."""
    item = client.get_item(TableName=table, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item") or {}
    stored_cost = Decimal(item["cost"]["N"]) if "cost" in item else cost
    stored_period = parse_time(item["periodStart"]["S"]) if "periodStart" in item else period_start
    return Recorded(cost=stored_cost, period_start=stored_period, duplicate=True)


def read(client: Any, *, namespace: str, budget: str, period_start: datetime, table: str = TABLE) -> Decimal:
    """The period's ledger total (a strongly consistent read); zero before the first report."""
    try:
        item = client.get_item(
            TableName=table,
            Key={"pk": {"S": counter_key(namespace, budget, period_start)}},
            ConsistentRead=True,
            ProjectionExpression="#cost",
            ExpressionAttributeNames={"#cost": "cost"},
        ).get("Item")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return Decimal(0)
        error = classify(exc)
        raise LedgerError(error.reason, error.message) from None
    except Exception as exc:
        error = classify(exc)
        raise LedgerError(error.reason, error.message) from None
    return Decimal(item["cost"]["N"]) if item and "cost" in item else Decimal(0)
