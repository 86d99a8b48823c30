"""All OptiInfra tables, one module per foundation step, importable from here.

Alembic and the application import this package only, so every model is registered on `Base.metadata` and
relationships across foundation steps resolve without import cycles.
"""

from optiinfra.enums import (
    AgentStatus,
    AgentStatusDetail,
    AgentType,
    ApprovalStatus,
    ArtifactType,
    BaselineType,
    ConfigType,
    CustomerPlan,
    CustomerStatus,
    EventSeverity,
    MetricType,
    OptimizationStatus,
    RecommendationPriority,
    RecommendationStatus,
    RegressionAction,
    RegressionSeverity,
    RegressionType,
    ResourceType,
    ScalingEventType,
    StepStatus,
    WorkflowStatus,
    WorkflowType,
)
from optiinfra.models.agent_state import (
    AgentCapability,
    AgentConfig,
    AgentMetric,
    AgentState,
)
from optiinfra.models.alerts import (
    AlertDelivery,
    AlertOutbox,
    AlertRoute,
    MetricCounter,
)
from optiinfra.models.application_schema import (
    QUALITY_PARTITION_PREFIX,
    QualityBaseline,
    QualityMetric,
    QualityRegression,
    QualityRequestKey,
    QualityRollup,
)
from optiinfra.models.base import (
    Base,
)
from optiinfra.models.collectors import PrometheusSource
from optiinfra.models.core import (
    Agent,
    AgentCustomer,
    Approval,
    Customer,
    Event,
    Optimization,
    Recommendation,
)
from optiinfra.models.dashboard import (
    DashboardSession,
)
from optiinfra.models.resource_schema import (
    ResourceMetric,
    ScalingEvent,
)
from optiinfra.models.scoring import (
    ScoringText,
)
from optiinfra.models.workflow_history import (
    WorkflowArtifact,
    WorkflowExecution,
    WorkflowStep,
)

__all__ = [
    "QUALITY_PARTITION_PREFIX",
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
    "PrometheusSource",
    "QualityBaseline",
    "QualityMetric",
    "QualityRegression",
    "QualityRequestKey",
    "QualityRollup",
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
