"""The enumerations of OptiInfra's tables and API, with no database dependency.

The Python client and the API schemas import them from here, so that neither needs SQLAlchemy; the models
import them for their columns (`optiinfra.models` re-exports them).
"""

import enum


class CustomerPlan(enum.StrEnum):
    FREE = "free"
    STARTUP = "startup"
    ENTERPRISE = "enterprise"


class CustomerStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CHURNED = "churned"


class AgentType(enum.StrEnum):
    ORCHESTRATOR = "orchestrator"
    COST = "cost"
    PERFORMANCE = "performance"
    RESOURCE = "resource"
    APPLICATION = "application"


class AgentStatus(enum.StrEnum):
    STARTING = "starting"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAILED = "failed"
    STOPPED = "stopped"


class EventSeverity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class RecommendationPriority(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class RecommendationStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXECUTING = "executing"
    COMPLETED = "completed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class ApprovalStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class OptimizationStatus(enum.StrEnum):
    QUEUED = "queued"
    EXECUTING = "executing"
    COMPLETED = "completed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class BaselineType(enum.StrEnum):
    INITIAL = "initial"
    UPDATED = "updated"
    ROLLBACK = "rollback"


class RegressionType(enum.StrEnum):
    QUALITY_DROP = "quality_drop"
    LATENCY_INCREASE = "latency_increase"
    HALLUCINATION_SPIKE = "hallucination_spike"
    TOXICITY_INCREASE = "toxicity_increase"


class RegressionSeverity(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class RegressionAction(enum.StrEnum):
    ALERT_ONLY = "alert_only"
    ROLLBACK_TRIGGERED = "rollback_triggered"
    MANUAL_REVIEW = "manual_review"
    AUTO_FIXED = "auto_fixed"


class ConfigType(enum.StrEnum):
    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    JSON = "json"


class AgentStatusDetail(enum.StrEnum):
    IDLE = "idle"
    BUSY = "busy"
    PROCESSING = "processing"
    WAITING = "waiting"
    ERROR = "error"


class MetricType(enum.StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


class ResourceType(enum.StrEnum):
    GPU = "gpu"
    CPU = "cpu"
    MEMORY = "memory"
    DISK = "disk"
    NETWORK = "network"


class ScalingEventType(enum.StrEnum):
    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    AUTO_SCALE_TRIGGERED = "auto_scale_triggered"
    MANUAL_SCALE = "manual_scale"
    SCALE_CANCELLED = "scale_cancelled"


class WorkflowType(enum.StrEnum):
    COST_ANALYSIS = "cost_analysis"
    PERFORMANCE_TUNING = "performance_tuning"
    RESOURCE_OPTIMIZATION = "resource_optimization"
    QUALITY_CHECK = "quality_check"
    SCALING_DECISION = "scaling_decision"
    CONFIGURATION_UPDATE = "configuration_update"
    HEALTH_CHECK = "health_check"
    ANOMALY_DETECTION = "anomaly_detection"


class WorkflowStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    WAITING = "waiting"  # a step waits for time or evidence; no worker holds it
    PAUSED = "paused"  # a step asks a human: resume or abort
    CANCELLING = "cancelling"  # a cancel was requested; honoured at the next safe point


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    RETRYING = "retrying"
    WAITING = "waiting"
    PAUSED = "paused"


class ArtifactType(enum.StrEnum):
    REPORT = "report"
    CONFIG = "config"
    LOG = "log"
    RECOMMENDATION = "recommendation"
    CHART = "chart"
    METRICS = "metrics"
    ALERT = "alert"
    DIAGNOSTIC = "diagnostic"
