"""The policy's consensus state machine (storage/consensus.asl.json), from the operator's side. Blocking.

One execution per remediation proposal that needs approval, named after the proposal, so that
starting it again (a retry, a sweep after a crash) finds the same execution instead of a second
one. Its first state writes a task token into the proposal's item and waits; the operator answers
with ``SendTaskSuccess`` (the distinct approvers, once they reach the quorum) or
``SendTaskFailure`` (error ``Refused``), and the execution ends ``Approved``, ``NoQuorum``,
``Refused`` or, at the proposal's timeout, ``Expired``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from incident_commander.aws.errors import classify
from incident_commander.incidents.model import Outcome, Proposal, partition
from incident_commander.incidents.store import StoreError

STALE_TOKEN_CODES = frozenset({"InvalidToken", "TaskTimedOut", "TaskDoesNotExist"})
"""Answers to a callback whose task is over (answered already, timed out, execution stopped)."""


@dataclass(frozen=True, kw_only=True)
class Execution:
    status: str
    """RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED."""
    error: str | None = None
    cause: str | None = None

    @property
    def running(self) -> bool:
        return self.status == "RUNNING"


def outcome_of(execution: Execution) -> tuple[Outcome, str]:
    """What a finished execution decided, and why (for the proposal's ``reason``)."""
    if execution.status == "SUCCEEDED":
        return "Approved", "the consensus workflow reached the quorum"
    if execution.error in ("Expired", "States.Timeout") or execution.status == "TIMED_OUT":
        return "Expired", "no decision before the proposal's timeout"
    detail = execution.error or execution.status
    return "Failed", f"the consensus workflow ended {execution.status} ({detail})"[:300]


def _failure(exc: Exception, what: str) -> StoreError:
    if (
        isinstance(exc, ClientError)
        and exc.response.get("Error", {}).get("Code") == "StateMachineDoesNotExist"
    ):
        return StoreError(
            "StorageNotFound", f"{what} does not exist: see the policy's StorageReady", missing=True
        )
    error = classify(exc)
    return StoreError(error.reason, f"{what}: {error.message}")


class Consensus:
    def __init__(self, *, sfn: Any, state_machine_arn: str, table: str) -> None:
        self.sfn = sfn
        self.state_machine_arn = state_machine_arn
        self.table = table

    def execution_arn(self, name: str) -> str:
        return f"{self.state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{name}"

    def execution_input(self, incident_id: str, proposal: Proposal, now: datetime) -> dict[str, Any]:
        remaining = (proposal.deadline - now).total_seconds()
        return {
            "table": self.table,
            "pk": partition(incident_id),
            "sk": f"P#{proposal.id}",
            "incidentId": incident_id,
            "proposalId": proposal.id,
            "quorum": proposal.quorum,
            "timeoutSeconds": max(1, math.ceil(remaining)),
        }

    def start(self, incident_id: str, proposal: Proposal, now: datetime) -> None:
        """Start the proposal's execution; an execution of that name already there is the one."""
        try:
            self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=proposal.id,
                input=json.dumps(self.execution_input(incident_id, proposal, now), sort_keys=True),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                return
            raise _failure(exc, f"state machine {self.state_machine_arn}") from None
        except Exception as exc:
            raise _failure(exc, f"state machine {self.state_machine_arn}") from None

    def describe(self, name: str) -> Execution | None:
        """The execution, or None when it was never started."""
        try:
            found = self.sfn.describe_execution(executionArn=self.execution_arn(name))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                return None
            raise _failure(exc, f"state machine {self.state_machine_arn}") from None
        except Exception as exc:
            raise _failure(exc, f"state machine {self.state_machine_arn}") from None
        return Execution(status=str(found["status"]), error=found.get("error"), cause=found.get("cause"))

    def _callback(self, call: str, **params: Any) -> bool:
        try:
            getattr(self.sfn, call)(**params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in STALE_TOKEN_CODES:
                return False
            raise _failure(exc, f"state machine {self.state_machine_arn}") from None
        except Exception as exc:
            raise _failure(exc, f"state machine {self.state_machine_arn}") from None
        return True

    def approve(self, token: str, approvers: list[str]) -> bool:
        """Hand the approvers to the waiting execution; False when its task is over already."""
        return self._callback(
            "send_task_success", taskToken=token, output=json.dumps({"approvers": approvers})
        )

    def refuse(self, token: str, by: str, reason: str) -> bool:
        return self._callback(
            "send_task_failure",
            taskToken=token,
            error="Refused",
            cause=json.dumps({"by": by, "reason": reason})[:32000],
        )

    def stop(self, name: str, cause: str) -> None:
        """Stop an execution whose token never arrived (its proposal was decided without it)."""
        try:
            self.sfn.stop_execution(
                executionArn=self.execution_arn(name), error="Refused", cause=cause[:32000]
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("ExecutionDoesNotExist", "ValidationException"):
                return
            raise _failure(exc, f"state machine {self.state_machine_arn}") from None
        except Exception as exc:
            raise _failure(exc, f"state machine {self.state_machine_arn}") from None
