"""Declaring an agent's actions: a pydantic body model and an async handler each."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from shared.errors import AppError

if TYPE_CHECKING:
    from agents.base.context import ActionContext


class ActionBody(BaseModel):
    """Base of every action's request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class NoopBody(ActionBody):
    """The body of `noop`: anything to echo back (used by benchmarks and health probes)."""

    model_config = ConfigDict(extra="allow")


class AgentError(AppError):
    """An action failure; `retryable` tells the engine whether another attempt may succeed."""

    status_code = 422
    code = "action_failed"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = False,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message, code=code, retryable=retryable, details=details)
        if status_code is not None:
            self.status_code = status_code
        elif retryable:
            self.status_code = 503
        self.retry_after_s = retry_after_s


Handler = Callable[[Any, "ActionContext"], Awaitable[dict[str, Any]]]


@dataclass
class Action:
    name: str
    body: type[ActionBody]
    handler: Handler
    # A body a workflow step would send, shown in the OpenAPI document (and mixed into fuzzing).
    example: dict[str, Any]
    description: str = ""
    # Actions that only read (noop, detect, validate) skip the ledger: repeating them is harmless.
    idempotent_by_nature: bool = False

    def __post_init__(self) -> None:
        # Checked where the action is declared, so a body model change cannot leave a stale one.
        self.body.model_validate(self.example)


@dataclass
class ActionRegistry:
    agent: str
    actions: dict[str, Action] = field(default_factory=dict)

    def action(
        self,
        name: str,
        body: type[ActionBody],
        *,
        example: dict[str, Any],
        description: str = "",
        read_only: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Decorator registering `handler` as action `name` with request body `body`, documented
        with `example` (a valid body: refused at registration otherwise)."""

        def register(handler: Handler) -> Handler:
            self.actions[name] = Action(name, body, handler, example, description, read_only)
            return handler

        return register


async def noop(body: NoopBody, ctx: ActionContext) -> dict[str, Any]:
    """Echo the body: an action that does nothing, for throughput benchmarks."""
    return {"ok": True, "agent": ctx.agent, "echo": body.model_dump()}
