"""A typed, synchronous Python client for the OptiInfra API (httpx).

    from optiinfra.client import OptiInfraClient

    with OptiInfraClient("http://127.0.0.1:8000", api_key="oi_ag_...") as client:
        agent = client.heartbeat(agent_id)

Errors come back as `ApiError` with the HTTP status and the server's error code, message and details.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import orjson
from pydantic import BaseModel, TypeAdapter

from optiinfra.agent_state import schemas as state_schemas
from optiinfra.agents import schemas as agent_schemas
from optiinfra.alerts import schemas as alert_schemas
from optiinfra.collectors import schemas as source_schemas
from optiinfra.customers import schemas as customer_schemas
from optiinfra.enums import AgentStatus, AgentType, CustomerPlan, CustomerStatus, EventSeverity
from optiinfra.events import schemas as event_schemas
from optiinfra.otlp import schemas as otlp_schemas
from optiinfra.otlp.settings import OtlpSettings
from optiinfra.pagination import Page
from optiinfra.quality import schemas as quality_schemas
from optiinfra.quality.settings import QualitySettings
from optiinfra.recommendations import schemas as rec_schemas
from optiinfra.resources import schemas as resource_schemas
from optiinfra.workflows import schemas as wf_schemas

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """An error answer from the API."""

    def __init__(self, status_code: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {key: str(value) for key, value in params.items() if value is not None}


class OptiInfraClient:
    """One API key, one base URL. Pass `http` to reuse an existing httpx.Client (tests, custom transports)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_http = http is None
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self._headers = headers

    def __enter__(self) -> OptiInfraClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def with_key(self, api_key: str) -> OptiInfraClient:
        """The same connection, another caller."""
        return OptiInfraClient("", api_key, http=self._http)

    # --- plumbing ---------------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        raw_json: bytes | None = None,
    ) -> Any:
        """Call the API; `raw_json` sends an already-encoded JSON body (large batches)."""
        headers = {**self._headers, "Content-Type": "application/json"} if raw_json is not None else self._headers
        response = self._http.request(
            method, f"/api/v1{path}", json=json, content=raw_json, params=_clean(params or {}), headers=headers
        )
        if response.status_code >= 400:
            self._raise(response)
        return response.json()

    @staticmethod
    def _raise(response: httpx.Response) -> None:
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            error = {"code": "http_error", "message": response.text[:500], "details": {}}
        raise ApiError(response.status_code, error["code"], error["message"], error.get("details", {}))

    def _one(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate(self.request(method, path, **kwargs))

    def _page(self, model: type[M], path: str, params: dict[str, Any]) -> Page[M]:
        return TypeAdapter(Page[model]).validate_python(self.request("GET", path, params=params))  # type: ignore[valid-type]

    @staticmethod
    def _body(model: BaseModel) -> Any:
        return model.model_dump(mode="json", exclude_unset=True)

    # --- customers -----------------------------------------------------------------------------------------

    def create_customer(
        self, name: str, email: str, plan: CustomerPlan = CustomerPlan.FREE, metadata: dict[str, Any] | None = None
    ) -> customer_schemas.CustomerWithKey:
        body = customer_schemas.CustomerCreate(name=name, email=email, plan=plan, metadata=metadata or {})
        return self._one(customer_schemas.CustomerWithKey, "POST", "/customers", json=self._body(body))

    def list_customers(
        self, *, status: CustomerStatus | None = None, cursor: str | None = None, limit: int = 50
    ) -> Page[customer_schemas.Customer]:
        return self._page(customer_schemas.Customer, "/customers", {"status": status, "cursor": cursor, "limit": limit})

    def get_customer(self, customer_id: uuid.UUID) -> customer_schemas.Customer:
        return self._one(customer_schemas.Customer, "GET", f"/customers/{customer_id}")

    def me(self) -> customer_schemas.Customer:
        return self._one(customer_schemas.Customer, "GET", "/customers/me")

    def update_customer(self, customer_id: uuid.UUID, **changes: Any) -> customer_schemas.Customer:
        body = customer_schemas.CustomerUpdate(**changes)
        return self._one(customer_schemas.Customer, "PATCH", f"/customers/{customer_id}", json=self._body(body))

    def rotate_customer_key(self, customer_id: uuid.UUID) -> customer_schemas.CustomerWithKey:
        return self._one(customer_schemas.CustomerWithKey, "POST", f"/customers/{customer_id}/rotate-key")

    # --- agents --------------------------------------------------------------------------------------------

    def register_agent(
        self,
        type: AgentType,
        name: str,
        *,
        version: str | None = None,
        endpoint: str | None = None,
        capabilities: list[str] | None = None,
        heartbeat_interval_seconds: int = 30,
        metadata: dict[str, Any] | None = None,
        customer_ids: list[uuid.UUID] | None = None,
    ) -> agent_schemas.AgentRegistered:
        """Register an agent (operator) or re-register itself (agent); `customer_ids` (operator only) assigns the
        agent to those customers, adding to the ones it already serves."""
        body = agent_schemas.AgentRegister(
            type=type,
            name=name,
            version=version,
            endpoint=endpoint,
            capabilities=capabilities or [],
            heartbeat_interval_seconds=heartbeat_interval_seconds,
            metadata=metadata or {},
            customer_ids=customer_ids,
        )
        return self._one(agent_schemas.AgentRegistered, "POST", "/agents", json=self._body(body))

    def heartbeat(
        self, agent_id: uuid.UUID, status: AgentStatus = AgentStatus.HEALTHY, metadata: dict[str, Any] | None = None
    ) -> agent_schemas.Agent:
        body = agent_schemas.Heartbeat(status=status, metadata=metadata)
        return self._one(agent_schemas.Agent, "POST", f"/agents/{agent_id}/heartbeat", json=self._body(body))

    def get_agent(self, agent_id: uuid.UUID) -> agent_schemas.Agent:
        return self._one(agent_schemas.Agent, "GET", f"/agents/{agent_id}")

    def list_agents(
        self,
        *,
        type: AgentType | None = None,
        status: AgentStatus | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[agent_schemas.Agent]:
        return self._page(
            agent_schemas.Agent, "/agents", {"type": type, "status": status, "cursor": cursor, "limit": limit}
        )

    def rotate_agent_key(self, agent_id: uuid.UUID) -> agent_schemas.AgentRegistered:
        return self._one(agent_schemas.AgentRegistered, "POST", f"/agents/{agent_id}/rotate-key")

    def assign_customer(self, agent_id: uuid.UUID, customer_id: uuid.UUID) -> agent_schemas.Agent:
        """Assign the agent to a customer it serves (operator); assigning again changes nothing."""
        body = agent_schemas.CustomerAssignment(customer_id=customer_id)
        return self._one(agent_schemas.Agent, "POST", f"/agents/{agent_id}/customers", json=self._body(body))

    def unassign_customer(self, agent_id: uuid.UUID, customer_id: uuid.UUID) -> agent_schemas.Agent:
        """Take a customer away from the agent (operator); ApiError 404 when it was not assigned."""
        return self._one(agent_schemas.Agent, "DELETE", f"/agents/{agent_id}/customers/{customer_id}")

    # --- events --------------------------------------------------------------------------------------------

    def list_events(self, *, cursor: str | None = None, limit: int = 50, **filters: Any) -> Page[event_schemas.Event]:
        event_schemas.EventFilters(**filters)  # validate the filter names before asking
        return self._page(event_schemas.Event, "/events", {**filters, "cursor": cursor, "limit": limit})

    def append_event(
        self,
        event_type: str,
        *,
        severity: EventSeverity = EventSeverity.INFO,
        customer_id: uuid.UUID | None = None,
        data: dict[str, Any] | None = None,
    ) -> event_schemas.Event:
        body = event_schemas.EventCreate(
            event_type=event_type, severity=severity, customer_id=customer_id, data=data or {}
        )
        return self._one(event_schemas.Event, "POST", "/events", json=self._body(body))

    # --- quality -------------------------------------------------------------------------------------------------

    def ingest_quality_metrics(
        self,
        records: list[dict[str, Any]],
        *,
        customer_id: uuid.UUID | None = None,
        agent_id: uuid.UUID | None = None,
    ) -> quality_schemas.IngestResult:
        """Send up to 10,000 records (dicts shaped like QualityRecord; timestamps as ISO 8601 with a zone)."""
        body: dict[str, Any] = {"records": records}
        if customer_id is not None:
            body["customer_id"] = str(customer_id)
        if agent_id is not None:
            body["agent_id"] = str(agent_id)
        return self._one(quality_schemas.IngestResult, "POST", "/quality/metrics", raw_json=orjson.dumps(body))

    def request_quality_records_deletion(self, customer_id: uuid.UUID) -> quality_schemas.RecordsDeletion:
        """Have the worker delete one customer's per-request quality records stored until now (operator keys)."""
        body = quality_schemas.RecordsDeletionRequest(customer_id=customer_id)
        return self._one(quality_schemas.RecordsDeletion, "POST", "/quality/records/deletion", json=self._body(body))

    def establish_baseline(
        self,
        model_name: str,
        model_version: str,
        *,
        customer_id: uuid.UUID | None = None,
        window: dict[str, Any] | None = None,
    ) -> quality_schemas.Baseline:
        body = quality_schemas.BaselineCreate(
            customer_id=customer_id,
            model_name=model_name,
            model_version=model_version,
            window=quality_schemas.BaselineWindow(**(window or {"last_n": 1000})),
        )
        return self._one(quality_schemas.Baseline, "POST", "/quality/baselines", json=self._body(body))

    def detect(
        self,
        model_name: str,
        model_version: str,
        *,
        customer_id: uuid.UUID | None = None,
        window: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> quality_schemas.DetectionReport:
        body = quality_schemas.DetectRequest(
            customer_id=customer_id,
            model_name=model_name,
            model_version=model_version,
            window=quality_schemas.BaselineWindow(**(window or {"last_n": 500})),
            dry_run=dry_run,
        )
        return self._one(quality_schemas.DetectionReport, "POST", "/quality/detect", json=self._body(body))

    def list_regressions(
        self, *, cursor: str | None = None, limit: int = 50, **filters: Any
    ) -> Page[quality_schemas.Regression]:
        return self._page(
            quality_schemas.Regression, "/quality/regressions", {**filters, "cursor": cursor, "limit": limit}
        )

    def resolve_regression(self, regression_id: uuid.UUID, notes: str) -> quality_schemas.Regression:
        return self._one(
            quality_schemas.Regression, "POST", f"/quality/regressions/{regression_id}/resolve", json={"notes": notes}
        )

    # --- agent state and resources --------------------------------------------------------------------------------

    def set_agent_config(
        self, agent_id: uuid.UUID, key: str, value: str, config_type: str = "string", description: str | None = None
    ) -> state_schemas.AgentConfig:
        body = {"value": value, "config_type": config_type, "description": description}
        return self._one(state_schemas.AgentConfig, "PUT", f"/agents/{agent_id}/configs/{key}", json=body)

    def agent_configs(self, agent_id: uuid.UUID) -> list[state_schemas.AgentConfig]:
        return [state_schemas.AgentConfig.model_validate(c) for c in self.request("GET", f"/agents/{agent_id}/configs")]

    def agent_state(self, agent_id: uuid.UUID) -> state_schemas.AgentState:
        return self._one(state_schemas.AgentState, "GET", f"/agents/{agent_id}/state")

    def update_agent_state(self, agent_id: uuid.UUID, **changes: Any) -> state_schemas.AgentState:
        body = state_schemas.AgentStateUpdate(**changes)
        return self._one(state_schemas.AgentState, "PATCH", f"/agents/{agent_id}/state", json=self._body(body))

    def acquire_lock(self, agent_id: uuid.UUID, resource: str, purpose: str | None = None) -> state_schemas.Lock:
        """Take a named lock (409 naming the holder when another agent has it)."""
        return self._one(state_schemas.Lock, "POST", f"/agents/{agent_id}/locks/{resource}", json={"purpose": purpose})

    def release_lock(self, agent_id: uuid.UUID, resource: str) -> state_schemas.Lock:
        return self._one(state_schemas.Lock, "DELETE", f"/agents/{agent_id}/locks/{resource}")

    def update_capability(self, agent_id: uuid.UUID, name: str, **changes: Any) -> state_schemas.AgentCapability:
        body = state_schemas.AgentCapabilityUpdate(**changes)
        return self._one(
            state_schemas.AgentCapability, "PATCH", f"/agents/{agent_id}/capabilities/{name}", json=self._body(body)
        )

    def ingest_agent_metrics(self, agent_id: uuid.UUID, metrics: list[dict[str, Any]]) -> state_schemas.IngestResult:
        return self._one(
            state_schemas.IngestResult,
            "POST",
            f"/agents/{agent_id}/metrics",
            raw_json=orjson.dumps({"metrics": metrics}),
        )

    def ingest_resource_metrics(
        self, metrics: list[dict[str, Any]], *, customer_id: uuid.UUID | None = None
    ) -> resource_schemas.IngestResult:
        body: dict[str, Any] = {"metrics": metrics}
        if customer_id is not None:
            body["customer_id"] = str(customer_id)
        return self._one(resource_schemas.IngestResult, "POST", "/resources/metrics", raw_json=orjson.dumps(body))

    def resource_metrics(self, **query: Any) -> resource_schemas.ResourceMetricSeries:
        return self._one(resource_schemas.ResourceMetricSeries, "GET", "/resources/metrics", params=query)

    # --- workflows -----------------------------------------------------------------------------------------------

    def analyze_spot_migration(
        self, customer_id: uuid.UUID, *, lookback_days: float = 7, agent_id: uuid.UUID | None = None
    ) -> wf_schemas.ExecutionDetail:
        body = wf_schemas.SpotAnalysisRequest(customer_id=customer_id, lookback_days=lookback_days, agent_id=agent_id)
        return self._one(wf_schemas.ExecutionDetail, "POST", "/workflows/spot-migration/analyze", json=self._body(body))

    def roll_out_spot_migration(
        self, optimization_id: uuid.UUID, *, executor: str = "simulator", **gate: Any
    ) -> wf_schemas.ExecutionDetail:
        """Start the phased rollout; `gate` takes bake_seconds, min_samples, deadline_seconds, poll_seconds."""
        body = wf_schemas.SpotRolloutRequest(optimization_id=optimization_id, executor=executor, **gate)  # type: ignore[arg-type]
        return self._one(wf_schemas.ExecutionDetail, "POST", "/workflows/spot-migration/rollout", json=self._body(body))

    def decide_scaling(self, customer_id: uuid.UUID, **options: Any) -> wf_schemas.ExecutionDetail:
        body = wf_schemas.ScalingRequest(customer_id=customer_id, **options)
        return self._one(wf_schemas.ExecutionDetail, "POST", "/workflows/scaling-decision", json=self._body(body))

    def list_workflows(
        self, *, cursor: str | None = None, limit: int = 50, **filters: Any
    ) -> Page[wf_schemas.Execution]:
        return self._page(wf_schemas.Execution, "/workflows", {**filters, "cursor": cursor, "limit": limit})

    def get_workflow(self, workflow_id: uuid.UUID) -> wf_schemas.ExecutionDetail:
        return self._one(wf_schemas.ExecutionDetail, "GET", f"/workflows/{workflow_id}")

    def cancel_workflow(self, workflow_id: uuid.UUID) -> wf_schemas.ExecutionDetail:
        return self._one(wf_schemas.ExecutionDetail, "POST", f"/workflows/{workflow_id}/cancel")

    def resume_workflow(self, workflow_id: uuid.UUID, note: str | None = None) -> wf_schemas.ExecutionDetail:
        return self._one(wf_schemas.ExecutionDetail, "POST", f"/workflows/{workflow_id}/resume", json={"note": note})

    def abort_workflow(self, workflow_id: uuid.UUID) -> wf_schemas.ExecutionDetail:
        return self._one(wf_schemas.ExecutionDetail, "POST", f"/workflows/{workflow_id}/abort")

    def wait_for_workflow(
        self, workflow_id: uuid.UUID, *, timeout: float = 600, poll: float = 0.5
    ) -> wf_schemas.ExecutionDetail:
        """Poll a run until it ends or pauses (workers run it); TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_workflow(workflow_id)
            if run.status in {"completed", "failed", "cancelled", "timeout", "paused"}:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"workflow run {workflow_id} is still {run.status} after {timeout:g} s")
            time.sleep(poll)

    # --- recommendations and optimizations -------------------------------------------------------------------

    def create_recommendation(
        self,
        customer_id: uuid.UUID,
        type: str,
        title: str,
        *,
        confidence_score: float,
        description: str | None = None,
        estimated_savings: Decimal | float | None = None,
        estimated_improvement: Decimal | float | None = None,
        priority: str = "medium",
        data: dict[str, Any] | None = None,
    ) -> rec_schemas.Recommendation:
        body = {
            "customer_id": str(customer_id),
            "type": type,
            "title": title,
            "description": description,
            "estimated_savings": None if estimated_savings is None else str(estimated_savings),
            "estimated_improvement": None if estimated_improvement is None else str(estimated_improvement),
            "confidence_score": confidence_score,
            "priority": priority,
            "data": data or {},
        }
        return self._one(rec_schemas.Recommendation, "POST", "/recommendations", json=body)

    def list_recommendations(
        self, *, cursor: str | None = None, limit: int = 50, **filters: Any
    ) -> Page[rec_schemas.Recommendation]:
        return self._page(rec_schemas.Recommendation, "/recommendations", {**filters, "cursor": cursor, "limit": limit})

    def get_recommendation(self, recommendation_id: uuid.UUID) -> rec_schemas.RecommendationDetail:
        return self._one(rec_schemas.RecommendationDetail, "GET", f"/recommendations/{recommendation_id}")

    def decide(
        self, recommendation_id: uuid.UUID, decision: str, comment: str | None = None
    ) -> rec_schemas.DecisionResult:
        body = {"decision": decision, "comment": comment}
        return self._one(
            rec_schemas.DecisionResult, "POST", f"/recommendations/{recommendation_id}/decision", json=body
        )

    def approve(self, recommendation_id: uuid.UUID, comment: str | None = None) -> rec_schemas.DecisionResult:
        return self.decide(recommendation_id, "approve", comment)

    def reject(self, recommendation_id: uuid.UUID, comment: str | None = None) -> rec_schemas.DecisionResult:
        return self.decide(recommendation_id, "reject", comment)

    def summary(self, customer_id: uuid.UUID | None = None) -> rec_schemas.Summary:
        return self._one(rec_schemas.Summary, "GET", "/recommendations/summary", params={"customer_id": customer_id})

    def list_optimizations(
        self, *, cursor: str | None = None, limit: int = 50, **filters: Any
    ) -> Page[rec_schemas.Optimization]:
        return self._page(rec_schemas.Optimization, "/optimizations", {**filters, "cursor": cursor, "limit": limit})

    def get_optimization(self, optimization_id: uuid.UUID) -> rec_schemas.Optimization:
        return self._one(rec_schemas.Optimization, "GET", f"/optimizations/{optimization_id}")

    def start_optimization(self, optimization_id: uuid.UUID) -> rec_schemas.Optimization:
        return self._one(rec_schemas.Optimization, "POST", f"/optimizations/{optimization_id}/start")

    def report_progress(
        self, optimization_id: uuid.UUID, progress: int, result: dict[str, Any] | None = None
    ) -> rec_schemas.Optimization:
        body = {"progress": progress, "result": result}
        return self._one(rec_schemas.Optimization, "POST", f"/optimizations/{optimization_id}/progress", json=body)

    def complete_optimization(
        self,
        optimization_id: uuid.UUID,
        *,
        actual_savings: Decimal | float | None = None,
        actual_improvement: Decimal | float | None = None,
        result: dict[str, Any] | None = None,
    ) -> rec_schemas.Optimization:
        body = {
            "actual_savings": None if actual_savings is None else str(actual_savings),
            "actual_improvement": None if actual_improvement is None else str(actual_improvement),
            "result": result or {},
        }
        return self._one(rec_schemas.Optimization, "POST", f"/optimizations/{optimization_id}/complete", json=body)

    def fail_optimization(
        self, optimization_id: uuid.UUID, error: str, result: dict[str, Any] | None = None
    ) -> rec_schemas.Optimization:
        body = {"error": error, "result": result}
        return self._one(rec_schemas.Optimization, "POST", f"/optimizations/{optimization_id}/fail", json=body)

    def rollback_optimization(self, optimization_id: uuid.UUID, reason: str) -> rec_schemas.Optimization:
        body = {"reason": reason}
        return self._one(rec_schemas.Optimization, "POST", f"/optimizations/{optimization_id}/rollback", json=body)

    # --- the rest of the API: every operation has a method (OPERATIONS below; tested) --------------------------

    def list_baselines(
        self, *, cursor: str | None = None, limit: int = 50, **filters: Any
    ) -> Page[quality_schemas.Baseline]:
        return self._page(quality_schemas.Baseline, "/quality/baselines", {**filters, "cursor": cursor, "limit": limit})

    def get_regression(self, regression_id: uuid.UUID) -> quality_schemas.Regression:
        return self._one(quality_schemas.Regression, "GET", f"/quality/regressions/{regression_id}")

    def ab_test(
        self, model_name: str, control: dict[str, Any], candidate: dict[str, Any], **options: Any
    ) -> quality_schemas.ABTestResult:
        """Compare two arms (`{"model_version": ...}` or `{"metadata_key": ..., "metadata_value": ...}`)."""
        body = quality_schemas.ABTestRequest.model_validate(
            {"model_name": model_name, "control": control, "candidate": candidate, **options}
        )
        return self._one(quality_schemas.ABTestResult, "POST", "/quality/abtest", json=self._body(body))

    def quality_record(self, request_id: str, customer_id: uuid.UUID | None = None) -> quality_schemas.RecordDetail:
        """One stored record: its scores, metadata (scorer versions) and its text while kept."""
        return self._one(
            quality_schemas.RecordDetail, "GET", f"/quality/metrics/{quote(request_id, safe='')}",
            params={"customer_id": customer_id},
        )  # fmt: skip

    def quality_settings(self, customer_id: uuid.UUID | None = None) -> QualitySettings:
        return self._one(QualitySettings, "GET", "/quality/settings", params={"customer_id": customer_id})

    def update_quality_settings(
        self, settings: QualitySettings, customer_id: uuid.UUID | None = None
    ) -> QualitySettings:
        return self._one(
            QualitySettings,
            "PUT",
            "/quality/settings",
            json=settings.model_dump(mode="json"),
            params={"customer_id": customer_id},
        )

    def list_locks(self) -> list[state_schemas.Lock]:
        return [state_schemas.Lock.model_validate(lock) for lock in self.request("GET", "/locks")]

    def capabilities(self, agent_id: uuid.UUID) -> list[state_schemas.AgentCapability]:
        return [
            state_schemas.AgentCapability.model_validate(item)
            for item in self.request("GET", f"/agents/{agent_id}/capabilities")
        ]

    def agent_metrics(self, agent_id: uuid.UUID, **query: Any) -> state_schemas.AgentMetricSeries:
        return self._one(state_schemas.AgentMetricSeries, "GET", f"/agents/{agent_id}/metrics", params=query)

    def record_scaling_event(self, customer_id: uuid.UUID, **fields: Any) -> resource_schemas.ScalingEvent:
        body = resource_schemas.ScalingEventCreate(customer_id=customer_id, **fields)
        return self._one(resource_schemas.ScalingEvent, "POST", "/resources/scaling-events", json=self._body(body))

    def list_scaling_events(
        self, *, cursor: str | None = None, limit: int = 50, **filters: Any
    ) -> Page[resource_schemas.ScalingEvent]:
        return self._page(
            resource_schemas.ScalingEvent, "/resources/scaling-events", {**filters, "cursor": cursor, "limit": limit}
        )

    def get_scaling_event(self, scaling_event_id: uuid.UUID) -> resource_schemas.ScalingEvent:
        return self._one(resource_schemas.ScalingEvent, "GET", f"/resources/scaling-events/{scaling_event_id}")

    def download_artifact(self, workflow_id: uuid.UUID, artifact_id: uuid.UUID) -> bytes:
        """A workflow artifact's bytes (a report, an input snapshot)."""
        response = self._http.get(f"/api/v1/workflows/{workflow_id}/artifacts/{artifact_id}", headers=self._headers)
        if response.status_code >= 400:
            self._raise(response)
        return response.content

    def create_alert_route(self, **fields: Any) -> alert_schemas.AlertRouteWithSecret:
        body = alert_schemas.AlertRouteCreate(**fields)
        return self._one(alert_schemas.AlertRouteWithSecret, "POST", "/alert-routes", json=self._body(body))

    def list_alert_routes(
        self, *, customer_id: uuid.UUID | None = None, cursor: str | None = None, limit: int = 50
    ) -> Page[alert_schemas.AlertRoute]:
        params = {"customer_id": customer_id, "cursor": cursor, "limit": limit}
        return self._page(alert_schemas.AlertRoute, "/alert-routes", params)

    def get_alert_route(self, route_id: uuid.UUID) -> alert_schemas.AlertRoute:
        return self._one(alert_schemas.AlertRoute, "GET", f"/alert-routes/{route_id}")

    def update_alert_route(self, route_id: uuid.UUID, **changes: Any) -> alert_schemas.AlertRouteWithSecret:
        body = alert_schemas.AlertRouteUpdate(**changes)
        return self._one(
            alert_schemas.AlertRouteWithSecret, "PATCH", f"/alert-routes/{route_id}", json=self._body(body)
        )

    def delete_alert_route(self, route_id: uuid.UUID) -> None:
        response = self._http.delete(f"/api/v1/alert-routes/{route_id}", headers=self._headers)
        if response.status_code >= 400:
            self._raise(response)

    def send_test_alert(self, route_id: uuid.UUID) -> alert_schemas.Alert:
        return self._one(alert_schemas.Alert, "POST", f"/alert-routes/{route_id}/test")

    def list_alerts(self, *, cursor: str | None = None, limit: int = 50, **filters: Any) -> Page[alert_schemas.Alert]:
        return self._page(alert_schemas.Alert, "/alerts", {**filters, "cursor": cursor, "limit": limit})

    def get_alert(self, alert_id: uuid.UUID) -> alert_schemas.AlertDetail:
        return self._one(alert_schemas.AlertDetail, "GET", f"/alerts/{alert_id}")

    def redeliver_alert(self, alert_id: uuid.UUID) -> alert_schemas.AlertDetail:
        return self._one(alert_schemas.AlertDetail, "POST", f"/alerts/{alert_id}/redeliver")

    def create_prometheus_source(self, **fields: Any) -> source_schemas.PrometheusSource:
        body = source_schemas.PrometheusSourceCreate(**fields)
        return self._one(source_schemas.PrometheusSource, "POST", "/prometheus-sources", json=self._body(body))

    def list_prometheus_sources(
        self, *, customer_id: uuid.UUID | None = None, cursor: str | None = None, limit: int = 50
    ) -> Page[source_schemas.PrometheusSource]:
        params = {"customer_id": customer_id, "cursor": cursor, "limit": limit}
        return self._page(source_schemas.PrometheusSource, "/prometheus-sources", params)

    def get_prometheus_source(self, source_id: uuid.UUID) -> source_schemas.PrometheusSource:
        return self._one(source_schemas.PrometheusSource, "GET", f"/prometheus-sources/{source_id}")

    def update_prometheus_source(self, source_id: uuid.UUID, **changes: Any) -> source_schemas.PrometheusSource:
        body = source_schemas.PrometheusSourceUpdate(**changes)
        return self._one(
            source_schemas.PrometheusSource, "PATCH", f"/prometheus-sources/{source_id}", json=self._body(body)
        )

    def delete_prometheus_source(self, source_id: uuid.UUID) -> None:
        response = self._http.delete(f"/api/v1/prometheus-sources/{source_id}", headers=self._headers)
        if response.status_code >= 400:
            self._raise(response)

    def otlp_settings(self, customer_id: uuid.UUID | None = None) -> OtlpSettings:
        return self._one(OtlpSettings, "GET", "/otlp/settings", params={"customer_id": customer_id})

    def update_otlp_settings(self, settings: OtlpSettings, customer_id: uuid.UUID | None = None) -> OtlpSettings:
        return self._one(
            OtlpSettings,
            "PUT",
            "/otlp/settings",
            json=settings.model_dump(mode="json"),
            params={"customer_id": customer_id},
        )

    def otlp_not_understood(self, customer_id: uuid.UUID | None = None, days: int = 7) -> Any:
        """What OTLP ingest did not understand lately: attribute and evaluation names, with counts and examples."""
        params = {"customer_id": customer_id, "days": days}
        return self._one(otlp_schemas.NotUnderstoodReport, "GET", "/otlp/report", params=params)

    def healthz(self) -> bool:
        """The server process is up."""
        return self._http.get("/healthz").status_code == 200

    def readyz(self) -> dict[str, Any]:
        """Whether the database is reachable and at the newest schema: {"status": "ready" | "unavailable", ...}."""
        answer: dict[str, Any] = self._http.get("/readyz").json()
        return answer

    def metrics_text(self) -> str:
        """The Prometheus exposition (`/metrics`)."""
        return self._http.get("/metrics").text


# Every operation of the API and the client method that calls it (tests/api/test_client_coverage.py fails when an
# operation has none). The OTLP export endpoints are left to the OpenTelemetry SDKs, which are their clients.
OPERATIONS: dict[str, str] = {
    "customers_create_customer": "create_customer",
    "quality_get_record": "quality_record",
    "customers_list_customers": "list_customers",
    "customers_get_me": "me",
    "customers_get_customer": "get_customer",
    "customers_update_customer": "update_customer",
    "customers_rotate_key": "rotate_customer_key",
    "agents_register_agent": "register_agent",
    "agents_list_agents": "list_agents",
    "agents_get_agent": "get_agent",
    "agents_heartbeat": "heartbeat",
    "agents_rotate_agent_key": "rotate_agent_key",
    "agents_assign_customer": "assign_customer",
    "agents_unassign_customer": "unassign_customer",
    "agent_state_list_configs": "agent_configs",
    "agent_state_set_config": "set_agent_config",
    "agent_state_get_state": "agent_state",
    "agent_state_update_state": "update_agent_state",
    "agent_state_acquire_lock": "acquire_lock",
    "agent_state_release_lock": "release_lock",
    "agent_state_list_locks": "list_locks",
    "agent_state_list_capabilities": "capabilities",
    "agent_state_update_capability": "update_capability",
    "agent_state_ingest_metrics": "ingest_agent_metrics",
    "agent_state_query_metrics": "agent_metrics",
    "events_list_events": "list_events",
    "events_append_event": "append_event",
    "recommendations_create_recommendation": "create_recommendation",
    "recommendations_list_recommendations": "list_recommendations",
    "recommendations_summary": "summary",
    "recommendations_get_recommendation": "get_recommendation",
    "recommendations_decide": "decide",
    "recommendations_list_optimizations": "list_optimizations",
    "recommendations_get_optimization": "get_optimization",
    "recommendations_start_optimization": "start_optimization",
    "recommendations_report_progress": "report_progress",
    "recommendations_complete_optimization": "complete_optimization",
    "recommendations_fail_optimization": "fail_optimization",
    "recommendations_rollback_optimization": "rollback_optimization",
    "quality_ingest_metrics": "ingest_quality_metrics",
    "quality_request_records_deletion": "request_quality_records_deletion",
    "quality_establish_baseline": "establish_baseline",
    "quality_list_baselines": "list_baselines",
    "quality_detect": "detect",
    "quality_list_regressions": "list_regressions",
    "quality_get_regression": "get_regression",
    "quality_resolve_regression": "resolve_regression",
    "quality_ab_test": "ab_test",
    "quality_get_settings": "quality_settings",
    "quality_update_settings": "update_quality_settings",
    "resources_ingest_metrics": "ingest_resource_metrics",
    "resources_query_metrics": "resource_metrics",
    "resources_record_scaling_event": "record_scaling_event",
    "resources_list_scaling_events": "list_scaling_events",
    "resources_get_scaling_event": "get_scaling_event",
    "workflows_analyze_spot": "analyze_spot_migration",
    "workflows_roll_out_spot": "roll_out_spot_migration",
    "workflows_scaling_decision": "decide_scaling",
    "workflows_list_workflows": "list_workflows",
    "workflows_get_workflow": "get_workflow",
    "workflows_cancel_workflow": "cancel_workflow",
    "workflows_resume_workflow": "resume_workflow",
    "workflows_abort_workflow": "abort_workflow",
    "workflows_download_artifact": "download_artifact",
    "alerts_create_route": "create_alert_route",
    "alerts_list_routes": "list_alert_routes",
    "alerts_get_route": "get_alert_route",
    "alerts_update_route": "update_alert_route",
    "alerts_delete_route": "delete_alert_route",
    "alerts_send_test": "send_test_alert",
    "alerts_list_alerts": "list_alerts",
    "alerts_get_alert": "get_alert",
    "alerts_redeliver": "redeliver_alert",
    "collectors_create_source": "create_prometheus_source",
    "collectors_list_sources": "list_prometheus_sources",
    "collectors_get_source": "get_prometheus_source",
    "collectors_update_source": "update_prometheus_source",
    "collectors_delete_source": "delete_prometheus_source",
    "otlp_get_settings": "otlp_settings",
    "otlp_update_settings": "update_otlp_settings",
    "otlp_not_understood": "otlp_not_understood",
    "operations_healthz": "healthz",
    "operations_readyz": "readyz",
    "operations_metrics": "metrics_text",
}
# Operations whose clients are someone else's: the OpenTelemetry SDKs export to these (docs/otlp.md).
NOT_IN_CLIENT = {"otlp_export_traces", "otlp_export_logs"}
