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


class ActionResult(BaseModel):
    """Base of a typed action result (`TransformResult`, ...): what the step's output is, in
    the JSON the engine records (`model_dump(mode="json", by_alias=True)`), unknown fields
    refused so a handler cannot hand back a shape its model does not declare."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def as_output(self) -> dict[str, Any]:
        """The result as the step's JSON output."""
        return self.model_dump(mode="json", by_alias=True)


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


# A handler answers with a typed ActionResult or, until each is typed, a dict of the same JSON.
Handler = Callable[[Any, "ActionContext"], Awaitable[dict[str, Any] | ActionResult]]


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

    @property
    def result(self) -> type[ActionResult] | None:
        """The handler's typed result, when it declares one (published with the action)."""
        returned = getattr(self.handler, "__annotations__", {}).get("return")
        if isinstance(returned, str):  # postponed annotations: a result is a bare class name
            returned = getattr(self.handler, "__globals__", {}).get(returned)
        is_model = isinstance(returned, type) and issubclass(returned, ActionResult)
        return returned if is_model else None


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
