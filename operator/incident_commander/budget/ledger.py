"""The usage ledger: LLM spend and the holds on it, durable in DynamoDB.

Table ``incident-commander-usage-ledger`` (partition key ``pk``, a string; on-demand billing; TTL
on ``expiresAt``), created through the budget's AwsConnection when missing. Items:

- counter ``ledger#<namespace>/<budget>#<period start>``, one per budget and period:
  - ``cost``: settled spend (exact decimal); ``reports``: settled reports;
  - ``hold:<reservation id>``: one map per unsettled reservation (``amount``, ``expiresAt`` in Unix
    seconds, ``model``, ``client``, ``taskType``);
  - ``committed`` = ``cost`` + every hold's ``amount``: what reservations are checked against;
  - ``model:<id>``, ``client:<policy>/<client>``, ``task:<taskType>``: settled spend by each.
- idempotency ``idem#<namespace>/<budget>#<key>`` (and ``…#reservation:<id>`` for a settled
  reservation): the cost, period, reservation outcome and body fingerprint a key was recorded
  with; expires 62 days after it was written.

Every change to a counter is one conditional write, so replicas never need to agree on anything
else:

- **reserve**: ``SET hold ADD committed :amount`` on the condition ``committed <= cap - amount``
  (the cap: ``calc.ledger_cap``), or only tracked when there is no cap;
- **settle**: ``REMOVE hold ADD cost :cost, committed :cost - amount`` on the condition that the
  hold still exists with its amount, in one transaction with the idempotency items; a hold that is
  gone (expired, released) makes the report an ordinary one, so usage is never lost;
- **release** and **expire**: ``REMOVE hold ADD committed -amount`` on the same condition (for
  expiry also ``expiresAt <= now``), so a hold is released exactly once, by whoever comes first;
- an ordinary report: ``ADD cost, committed``, once per idempotency key (a transaction).

A counter written before reservations existed has ``cost`` and no ``committed``; writes refuse to
touch it (their condition fails) until ``reconcile`` has set ``committed``. ``reconcile`` also
repairs ``committed`` whenever it differs from ``cost`` + the holds (a writer of an older version
during a rolling upgrade), conditional on nothing having changed since the read. Blocking: run in
a thread.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from incident_commander.aws.errors import classify
from incident_commander.budget.model import IdempotencyConflict
from incident_commander.timestamps import kubernetes_time, parse_time

TABLE = "incident-commander-usage-ledger"
IDEMPOTENCY_TTL_SECONDS = 62 * 24 * 3600
HOLD = "hold:"
MODEL = "model:"
CLIENT = "client:"
TASK = "task:"
_RESERVATION_ID = re.compile(r"^r(?P<period>[0-9]{1,12})-(?P<token>[0-9a-f]{32})$")


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
    reservation: str | None = None
    """``settled``, ``expired`` (the hold was gone: counted as an ordinary report), or None."""
    released: Decimal | None = None
    """The hold's amount minus the cost, for a settled reservation."""


@dataclass(frozen=True, kw_only=True)
class Attribution:
    """Where settled spend is broken down: the model, ``<policy>/<client>`` and the task type."""

    model: str
    client: str = "unknown"
    task_type: str = "unspecified"


@dataclass(frozen=True, kw_only=True)
class Hold:
    id: str
    amount: Decimal
    expires_at: int
    """Unix seconds."""
    model: str = ""
    client: str = ""
    task_type: str = ""


@dataclass(frozen=True, kw_only=True)
class Counter:
    """A period's counter item as read."""

    exists: bool = False
    cost: Decimal = Decimal(0)
    committed: Decimal | None = None
    """None on a counter written before reservations existed (or not written yet)."""
    reports: int = 0
    holds: tuple[Hold, ...] = ()
    by_model: Mapping[str, Decimal] = field(default_factory=dict)
    by_client: Mapping[str, Decimal] = field(default_factory=dict)
    by_task_type: Mapping[str, Decimal] = field(default_factory=dict)

    @property
    def held(self) -> Decimal:
        return sum((h.amount for h in self.holds), Decimal(0))

    @property
    def drifted(self) -> bool:
        """``committed`` is missing or is not ``cost`` + the holds: ``reconcile`` repairs it."""
        if not self.exists:
            return False
        return self.committed != self.cost + self.held

    def expired(self, now: datetime) -> list[Hold]:
        moment = now.timestamp()
        return [h for h in self.holds if h.expires_at <= moment]


def number(amount: Decimal) -> str:
    """A DynamoDB Number from a Decimal: fixed-point, never exponent notation."""
    return format(amount, "f") if amount != 0 else "0"


def counter_key(namespace: str, budget: str, period_start: datetime) -> str:
    return f"ledger#{namespace}/{budget}#{kubernetes_time(period_start)}"


def idempotency_key(namespace: str, budget: str, key: str) -> str:
    return f"idem#{namespace}/{budget}#{key}"


def reservation_idempotency_key(namespace: str, budget: str, reservation_id: str) -> str:
    return idempotency_key(namespace, budget, f"reservation:{reservation_id}")


def new_reservation_id(period_start: datetime) -> str:
    """Opaque to clients; it names the period whose counter holds it (a hold taken before midnight
    is settled in the period it was taken in)."""
    return f"r{int(period_start.timestamp())}-{secrets.token_hex(16)}"


def reservation_period(reservation_id: str) -> datetime | None:
    """The period start a reservation id names, or None when it is not one this ledger issues."""
    match = _RESERVATION_ID.match(reservation_id)
    if match is None:
        return None
    try:
        return datetime.fromtimestamp(int(match.group("period")), UTC)
    except (OverflowError, OSError, ValueError):
        return None


def parse_counter(item: Mapping[str, Any] | None) -> Counter:
    """A counter item (DynamoDB's typed JSON) as values. Pure."""
    if not item:
        return Counter()
    holds: list[Hold] = []
    by_model: dict[str, Decimal] = {}
    by_client: dict[str, Decimal] = {}
    by_task: dict[str, Decimal] = {}
    for name, value in item.items():
        if name.startswith(HOLD) and "M" in value:
            fields = value["M"]
            holds.append(
                Hold(
                    id=name[len(HOLD) :],
                    amount=Decimal(fields["amount"]["N"]),
                    expires_at=int(Decimal(fields["expiresAt"]["N"])),
                    model=fields.get("model", {}).get("S", ""),
                    client=fields.get("client", {}).get("S", ""),
                    task_type=fields.get("taskType", {}).get("S", ""),
                )
            )
        elif "N" in value:
            for prefix, target in ((MODEL, by_model), (CLIENT, by_client), (TASK, by_task)):
                if name.startswith(prefix):
                    target[name[len(prefix) :]] = Decimal(value["N"])
    return Counter(
        exists=True,
        cost=Decimal(item["cost"]["N"]) if "cost" in item else Decimal(0),
        committed=Decimal(item["committed"]["N"]) if "committed" in item else None,
        reports=int(Decimal(item["reports"]["N"])) if "reports" in item else 0,
        holds=tuple(sorted(holds, key=lambda h: h.expires_at)),
        by_model=by_model,
        by_client=by_client,
        by_task_type=by_task,
    )


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


# -- reading -----------------------------------------------------------------------------------


def read_counter(
    client: Any, *, namespace: str, budget: str, period_start: datetime, table: str = TABLE
) -> Counter:
    """The period's counter, strongly consistent; an empty Counter before the first write."""
    try:
        item = client.get_item(
            TableName=table,
            Key={"pk": {"S": counter_key(namespace, budget, period_start)}},
            ConsistentRead=True,
        ).get("Item")
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return Counter()
        raise _ledger_error(exc) from None
    except Exception as exc:
        raise _ledger_error(exc) from None
    return parse_counter(item)


def read(client: Any, *, namespace: str, budget: str, period_start: datetime, table: str = TABLE) -> Decimal:
    """The period's settled total; zero before the first report."""
    return read_counter(
        client, namespace=namespace, budget=budget, period_start=period_start, table=table
    ).cost


# -- reservations ------------------------------------------------------------------------------


class NoRoom(Exception):
    """The hold does not fit under the cap; ``counter`` is the counter as read after the refusal."""

    def __init__(self, counter: Counter) -> None:
        super().__init__("no room under the cap")
        self.counter = counter


def reserve(
    client: Any,
    *,
    namespace: str,
    budget: str,
    period_start: datetime,
    hold: Hold,
    cap: Decimal | None,
    now: datetime,
    table: str = TABLE,
) -> None:
    """Take ``hold`` in one conditional write: ``committed + amount <= cap`` (any amount without a
    cap). Raises NoRoom when it does not fit, after releasing expired holds (and repairing an old
    counter) and retrying."""
    key = {"pk": {"S": counter_key(namespace, budget, period_start)}}
    names = {"#h": HOLD + hold.id, "#committed": "committed", "#cost": "cost"}
    values: dict[str, Any] = {
        ":hold": {"M": _hold_item(hold)},
        ":amount": {"N": number(hold.amount)},
        ":zero": {"N": "0"},
    }
    where: dict[str, Any] = {
        "namespace": namespace,
        "budget": budget,
        "period_start": period_start,
        "table": table,
    }
    if cap is not None:
        if hold.amount > cap:
            raise NoRoom(read_counter(client, **where))
        # A counter from before reservations (cost without committed) fails this too: reconciled below.
        condition = "attribute_not_exists(#cost) OR #committed <= :room"
        values[":room"] = {"N": number(cap - hold.amount)}
    else:
        condition = "attribute_not_exists(#cost) OR attribute_exists(#committed)"
    seen = Counter()
    for _ in range(3):
        try:
            client.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET #h = :hold ADD #committed :amount, #cost :zero",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
            return
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise _ledger_error(exc) from None
        except Exception as exc:
            raise _ledger_error(exc) from None
        seen = read_counter(client, **where)
        freed = expire(client, holds=seen.expired(now), now=now, **where)
        repaired = reconcile(client, counter=seen, **where)
        fits = cap is not None and seen.committed is not None and seen.committed + hold.amount <= cap
        if not (freed or repaired or fits):
            break
    raise NoRoom(seen)


def release(
    client: Any,
    *,
    namespace: str,
    budget: str,
    period_start: datetime,
    reservation_id: str,
    amount: Decimal,
    table: str = TABLE,
) -> bool:
    """Give a hold back without cost (the call failed). False when it was already gone."""
    return _remove_hold(
        client,
        table=table,
        key=counter_key(namespace, budget, period_start),
        hold_id=reservation_id,
        amount=amount,
        expired_by=None,
    )


def expire(
    client: Any,
    *,
    namespace: str,
    budget: str,
    period_start: datetime,
    holds: Sequence[Hold],
    now: datetime,
    table: str = TABLE,
) -> list[Hold]:
    """Release the holds whose time has passed; the ones released by this call (another replica,
    or a settlement, may have come first)."""
    key = counter_key(namespace, budget, period_start)
    return [
        hold
        for hold in holds
        if _remove_hold(
            client, table=table, key=key, hold_id=hold.id, amount=hold.amount, expired_by=int(now.timestamp())
        )
    ]


def _remove_hold(
    client: Any, *, table: str, key: str, hold_id: str, amount: Decimal, expired_by: int | None
) -> bool:
    names = {"#h": HOLD + hold_id, "#committed": "committed", "#amount": "amount"}
    values: dict[str, Any] = {":minus": {"N": number(-amount)}, ":amount": {"N": number(amount)}}
    condition = "attribute_exists(#h) AND #h.#amount = :amount"
    if expired_by is not None:
        names["#expires"] = "expiresAt"
        values[":now"] = {"N": str(expired_by)}
        condition += " AND #h.#expires <= :now"
    try:
        client.update_item(
            TableName=table,
            Key={"pk": {"S": key}},
            UpdateExpression="REMOVE #h ADD #committed :minus",
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        return True
    except ClientError as exc:
        if _code(exc) == "ConditionalCheckFailedException":
            return False
        raise _ledger_error(exc) from None
    except Exception as exc:
        raise _ledger_error(exc) from None


def reconcile(
    client: Any, *, namespace: str, budget: str, period_start: datetime, counter: Counter, table: str = TABLE
) -> bool:
    """Set ``committed`` to ``cost`` + the holds when it differs, on the condition that ``cost``
    and ``committed`` are still what ``counter`` read. True when it wrote."""
    if not counter.drifted:
        return False
    names = {"#committed": "committed", "#cost": "cost"}
    values: dict[str, Any] = {
        ":target": {"N": number(counter.cost + counter.held)},
        ":cost": {"N": number(counter.cost)},
    }
    if counter.committed is None:
        condition = "attribute_not_exists(#committed) AND #cost = :cost"
    else:
        condition = "#committed = :committed AND #cost = :cost"
        values[":committed"] = {"N": number(counter.committed)}
    try:
        client.update_item(
            TableName=table,
            Key={"pk": {"S": counter_key(namespace, budget, period_start)}},
            UpdateExpression="SET #committed = :target",
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        return True
    except ClientError as exc:
        if _code(exc) == "ConditionalCheckFailedException":
            return False
        raise _ledger_error(exc) from None
    except Exception as exc:
        raise _ledger_error(exc) from None


# -- reports -----------------------------------------------------------------------------------


def record(
    client: Any,
    *,
    namespace: str,
    budget: str,
    period_start: datetime,
    cost: Decimal,
    key: str | None,
    table: str = TABLE,
    attribution: Attribution | None = None,
    fingerprint: str | None = None,
    reservation_id: str | None = None,
    hold_period: datetime | None = None,
) -> Recorded:
    """Record a report: settle its reservation when it names one that still holds, else add
    ``cost`` to the period's counter. Once per idempotency key (and per reservation)."""
    attribution = attribution or Attribution(model="unknown")
    idem = []
    if key is not None:
        idem.append((idempotency_key(namespace, budget, key), key))
    if reservation_id is not None:
        idem.append(
            (reservation_idempotency_key(namespace, budget, reservation_id), f"reservation {reservation_id}")
        )
    try:
        if reservation_id is not None and hold_period is not None:
            hold = _read_hold(client, table, counter_key(namespace, budget, hold_period), reservation_id)
            if hold is not None:
                settled = _write(
                    client,
                    table=table,
                    counter=counter_key(namespace, budget, hold_period),
                    period_start=hold_period,
                    cost=cost,
                    idem=idem,
                    fingerprint=fingerprint,
                    attribution=attributed(attribution, hold),
                    hold=hold,
                )
                if settled is not None:
                    return settled
            # The hold is gone (expired, or released): the usage still counts, as an ordinary report.
        for _ in range(3):
            recorded = _write(
                client,
                table=table,
                counter=counter_key(namespace, budget, period_start),
                period_start=period_start,
                cost=cost,
                idem=idem,
                fingerprint=fingerprint,
                attribution=attribution,
                hold=None,
                reservation="expired" if reservation_id is not None else None,
            )
            if recorded is not None:
                return recorded
            # A counter from before reservations: give it ``committed`` first.
            reconcile(
                client,
                namespace=namespace,
                budget=budget,
                period_start=period_start,
                counter=read_counter(
                    client, namespace=namespace, budget=budget, period_start=period_start, table=table
                ),
                table=table,
            )
        raise LedgerError("Conflict", "the usage counter kept changing; retry the report")
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            with _ensure_lock:  # deleted behind our back: create it again on the next report
                _ensured.discard((id(client), table))
        raise _ledger_error(exc) from None
    except (LedgerError, IdempotencyConflict):
        raise
    except Exception as exc:
        raise _ledger_error(exc) from None


def attributed(attribution: Attribution, hold: Hold) -> Attribution:
    """A settlement's breakdown: what the report says, else what the route said when it reserved."""
    return Attribution(
        model=attribution.model,
        client=attribution.client if attribution.client != "unknown" else hold.client or "unknown",
        task_type=attribution.task_type
        if attribution.task_type != "unspecified"
        else hold.task_type or "unspecified",
    )


def _write(
    client: Any,
    *,
    table: str,
    counter: str,
    period_start: datetime,
    cost: Decimal,
    idem: Sequence[tuple[str, str]],
    fingerprint: str | None,
    attribution: Attribution,
    hold: Hold | None,
    reservation: str | None = None,
) -> Recorded | None:
    """One write of a report (a transaction with its idempotency items). None when the counter's
    condition failed: the hold was gone (settlement), or the counter needs ``reconcile``."""
    names = {
        "#cost": "cost",
        "#committed": "committed",
        "#reports": "reports",
        "#model": MODEL + attribution.model,
        "#client": CLIENT + attribution.client,
        "#task": TASK + attribution.task_type,
    }
    values: dict[str, Any] = {":cost": {"N": number(cost)}, ":one": {"N": "1"}}
    adds = "ADD #cost :cost, #reports :one, #model :cost, #client :cost, #task :cost, #committed :committed"
    if hold is not None:
        names["#h"] = HOLD + hold.id
        names["#amount"] = "amount"
        values[":committed"] = {"N": number(cost - hold.amount)}
        values[":held"] = {"N": number(hold.amount)}
        update = f"REMOVE #h {adds}"
        condition = "attribute_exists(#h) AND #h.#amount = :held"
        outcome: str | None = "settled"
    else:
        values[":committed"] = {"N": number(cost)}
        update = adds
        condition = "attribute_not_exists(#cost) OR attribute_exists(#committed)"
        outcome = reservation
    counter_update = {
        "TableName": table,
        "Key": {"pk": {"S": counter}},
        "UpdateExpression": update,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }
    released = hold.amount - cost if hold is not None else None
    try:
        if not idem:
            client.update_item(**counter_update)
        else:
            expires = str(int(time.time()) + IDEMPOTENCY_TTL_SECONDS)
            puts = [
                {
                    "Put": {
                        "TableName": table,
                        "Item": {
                            "pk": {"S": pk},
                            "cost": {"N": number(cost)},
                            "periodStart": {"S": kubernetes_time(period_start)},
                            "expiresAt": {"N": expires},
                            **({"fingerprint": {"S": fingerprint}} if fingerprint else {}),
                            **({"reservation": {"S": outcome}} if outcome else {}),
                            **({"released": {"N": number(released)}} if released is not None else {}),
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
                for pk, _ in idem
            ]
            client.transact_write_items(TransactItems=[*puts, {"Update": counter_update}])
    except ClientError as exc:
        failed = _failed_items(exc, len(idem) + 1)
        if failed is None:
            raise
        if any(failed[: len(idem)]):
            seen = [entry for entry, bad in zip(idem, failed, strict=False) if bad]
            return _previous(client, table, seen, fingerprint, period_start)
        return None  # the counter's condition
    return Recorded(
        cost=cost, period_start=period_start, duplicate=False, reservation=outcome, released=released
    )


def _failed_items(exc: ClientError, count: int) -> list[bool] | None:
    """Which items' conditions failed: a list for a conditional failure, None for anything else
    (a transaction cancelled by a conflict, throttling...)."""
    code = _code(exc)
    if code == "ConditionalCheckFailedException":
        return [False] * (count - 1) + [True]  # a single update_item: the counter
    if code != "TransactionCanceledException":
        return None
    reasons = [str(r.get("Code")) for r in exc.response.get("CancellationReasons") or []]
    if not reasons:
        # Some SDKs leave them to the message: "... cancellation reasons [None, ConditionalCheckFailed]".
        listed = re.search(r"\[([A-Za-z, ]+)\]\s*$", str(exc.response.get("Error", {}).get("Message")))
        reasons = [r.strip() for r in listed.group(1).split(",")] if listed else []
    if len(reasons) != count or "ConditionalCheckFailed" not in reasons:
        return None
    return [r == "ConditionalCheckFailed" for r in reasons]


def _previous(
    client: Any, table: str, idem: Sequence[tuple[str, str]], fingerprint: str | None, period_start: datetime
) -> Recorded:
    """A retry: answer with what the first attempt recorded, unless it recorded something else."""
    first: dict[str, Any] | None = None
    for pk, label in idem:
        item = client.get_item(TableName=table, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")
        if not item:
            continue
        stored = item.get("fingerprint", {}).get("S")
        if fingerprint is not None and stored is not None and stored != fingerprint:
            raise IdempotencyConflict(label)
        first = first or item
    item = first or {}
    return Recorded(
        cost=Decimal(item["cost"]["N"]) if "cost" in item else Decimal(0),
        period_start=parse_time(item["periodStart"]["S"]) if "periodStart" in item else period_start,
        duplicate=True,
        reservation=item.get("reservation", {}).get("S"),
        released=Decimal(item["released"]["N"]) if "released" in item else None,
    )


def _read_hold(client: Any, table: str, counter: str, reservation_id: str) -> Hold | None:
    item = client.get_item(
        TableName=table,
        Key={"pk": {"S": counter}},
        ConsistentRead=True,
        ProjectionExpression="#h",
        ExpressionAttributeNames={"#h": HOLD + reservation_id},
    ).get("Item")
    holds = parse_counter({"pk": {"S": counter}, **(item or {})}).holds
    return holds[0] if holds else None


def _hold_item(hold: Hold) -> dict[str, Any]:
    return {
        "amount": {"N": number(hold.amount)},
        "expiresAt": {"N": str(hold.expires_at)},
        "model": {"S": hold.model or "unknown"},
        "client": {"S": hold.client or "unknown"},
        "taskType": {"S": hold.task_type or "unspecified"},
    }


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code"))


def _ledger_error(exc: BaseException) -> LedgerError:
    error = classify(exc)
    return LedgerError(error.reason, error.message)
