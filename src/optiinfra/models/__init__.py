"""All OptiInfra tables, one module per foundation step, importable from here.

Alembic and the application import this package only, so every model is registered on `Base.metadata` and
relationships across foundation steps resolve without import cycles.
"""

from optiinfra.models.agent_state import (
    AgentCapability,
    AgentConfig,
    AgentMetric,
    AgentState,
    AgentStatusDetail,
    ConfigType,
    MetricType,
)
from optiinfra.models.alerts import AlertDelivery, AlertOutbox, AlertRoute, MetricCounter
from optiinfra.models.application_schema import (
    BaselineType,
    QualityBaseline,
    QualityMetric,
    QualityRegression,
    RegressionAction,
    RegressionSeverity,
    RegressionType,
)
from optiinfra.models.base import Base
from optiinfra.models.core import (
    Agent,
    AgentCustomer,
    AgentStatus,
    AgentType,
    Approval,
    ApprovalStatus,
    Customer,
    CustomerPlan,
    CustomerStatus,
    Event,
    EventSeverity,
    Optimization,
    OptimizationStatus,
    Recommendation,
    RecommendationPriority,
    RecommendationStatus,
)
from optiinfra.models.dashboard import DashboardSession
from optiinfra.models.resource_schema import ResourceMetric, ResourceType, ScalingEvent, ScalingEventType
from optiinfra.models.scoring import ScoringText
from optiinfra.models.workflow_history import (
    ArtifactType,
    StepStatus,
    WorkflowArtifact,
    WorkflowExecution,
    WorkflowStatus,
    WorkflowStep,
    WorkflowType,
)

__all__ = [
    "Agent",
    "AgentCapability",
    "AgentConfig",
    "AgentCustomer",
    "AgentMetric",
    "AgentState",
    "AgentStatus",
    "AgentStatusDetail",
    "AgentType",
    "AlertDelivery",
    "AlertOutbox",
    "AlertRoute",
    "Approval",
    "ApprovalStatus",
    "ArtifactType",
    "Base",
    "BaselineType",
    "ConfigType",
    "Customer",
    "CustomerPlan",
    "CustomerStatus",
    "DashboardSession",
    "Event",
    "EventSeverity",
    "MetricCounter",
    "MetricType",
    "Optimization",
    "OptimizationStatus",
    "QualityBaseline",
    "QualityMetric",
    "QualityRegression",
    "Recommendation",
    "RecommendationPriority",
    "RecommendationStatus",
    "RegressionAction",
    "RegressionSeverity",
    "RegressionType",
    "ResourceMetric",
    "ResourceType",
    "ScalingEvent",
    "ScalingEventType",
    "ScoringText",
    "StepStatus",
    "WorkflowArtifact",
    "WorkflowExecution",
    "WorkflowStatus",
    "WorkflowStep",
    "WorkflowType",
]
