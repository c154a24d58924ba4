"""SQLAlchemy models of the platform's durable state, one module per concern; importing the
package registers every table on `Base.metadata` (what Alembic's autogenerate compares).

Import models from here: `from shared.db.models import Schedule`.
"""

from shared.db.models.agents import AgentEffect, AgentHealth, AgentInstance, RegisteredAgent
from shared.db.models.base import NAMING_CONVENTION, Base, Json
from shared.db.models.datasets import DatasetLoad
from shared.db.models.events import OutboxEvent
from shared.db.models.model_bindings import ModelBinding
from shared.db.models.platform_settings import PlatformSetting
from shared.db.models.runs import IdempotencyRecord, StepRun, WorkflowDefinition, WorkflowRun
from shared.db.models.schedules import Schedule, ScheduleFire
from shared.db.models.source_state import STATE_KEY_PATTERN, SourceState

__all__ = [
    "NAMING_CONVENTION",
    "STATE_KEY_PATTERN",
    "AgentEffect",
    "AgentHealth",
    "AgentInstance",
    "Base",
    "DatasetLoad",
    "IdempotencyRecord",
    "Json",
    "ModelBinding",
    "OutboxEvent",
    "PlatformSetting",
    "RegisteredAgent",
    "Schedule",
    "ScheduleFire",
    "SourceState",
    "StepRun",
    "WorkflowDefinition",
    "WorkflowRun",
]
