"""The PromQL the collector runs, and what each answer becomes in OptiInfra.

Every query aggregates `by` the source's label mapping (instance, instance type, zone, purchase option; serving
queries also by `model_name`), so one series comes back per machine (and model). Only label names that pass the
Prometheus label-name rule are ever put into a query (the API refuses anything else); no user value is.

Metric names are those the exporters emit: node_exporter (`node_cpu_seconds_total`, `node_memory_*`), NVIDIA's DCGM
exporter default counters (`DCGM_FI_DEV_GPU_UTIL`, `DCGM_FI_DEV_FB_USED`, `DCGM_FI_DEV_FB_FREE`) and vLLM's
`/metrics` (`vllm:*`, label `model_name`). docs/collectors.md cites the sources.
"""

from __future__ import annotations

from dataclasses import dataclass

from optiinfra.models import ResourceType

RESOURCE = "resource"
SERVING = "serving"


@dataclass(frozen=True)
class QuerySpec:
    key: str  # the metric_name stored (resource_metrics) or the agent_metrics name
    template: str  # PromQL with {by} (grouping labels) and {window} (rate window) placeholders
    target: str  # RESOURCE (resource_metrics) or SERVING (agent_metrics)
    unit: str
    resource_type: ResourceType | None = None
    per_model: bool = False


def _quantile(q: float, histogram: str, key: str) -> QuerySpec:
    return QuerySpec(
        key,
        f"histogram_quantile({q}, sum by ({{by}}, le) (rate({histogram}_bucket[{{window}}])))",
        SERVING,
        "seconds",
        per_model=True,
    )


QUERIES: tuple[QuerySpec, ...] = (
    # node_exporter: CPU busy share (all modes but idle), memory in use (MemTotal - MemAvailable).
    QuerySpec(
        "utilization",
        '100 * (1 - avg by ({by}) (rate(node_cpu_seconds_total{{mode="idle"}}[{window}])))',
        RESOURCE,
        "percent",
        ResourceType.CPU,
    ),
    QuerySpec(
        "utilization",
        "100 * (1 - sum by ({by}) (node_memory_MemAvailable_bytes) / sum by ({by}) (node_memory_MemTotal_bytes))",
        RESOURCE,
        "percent",
        ResourceType.MEMORY,
    ),
    QuerySpec(
        "memory_used",
        "sum by ({by}) (node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes)",
        RESOURCE,
        "bytes",
        ResourceType.MEMORY,
    ),
    # DCGM exporter: per GPU, averaged (utilization) or summed (memory) over the machine's GPUs.
    QuerySpec("utilization", "avg by ({by}) (DCGM_FI_DEV_GPU_UTIL)", RESOURCE, "percent", ResourceType.GPU),
    QuerySpec("memory_used", "sum by ({by}) (DCGM_FI_DEV_FB_USED)", RESOURCE, "MiB", ResourceType.GPU),
    QuerySpec(
        "memory_utilization",
        "100 * sum by ({by}) (DCGM_FI_DEV_FB_USED) "
        "/ (sum by ({by}) (DCGM_FI_DEV_FB_USED) + sum by ({by}) (DCGM_FI_DEV_FB_FREE))",
        RESOURCE,
        "percent",
        ResourceType.GPU,
    ),
    QuerySpec("gpu_count", "count by ({by}) (DCGM_FI_DEV_GPU_UTIL)", RESOURCE, "gpus", ResourceType.GPU),
    # vLLM: queue, running requests, KV cache (vLLM V0 name and V1 name), latency percentiles, throughput.
    QuerySpec(
        "vllm.requests_waiting", "sum by ({by}) (vllm:num_requests_waiting)", SERVING, "requests", per_model=True
    ),
    QuerySpec(
        "vllm.requests_running", "sum by ({by}) (vllm:num_requests_running)", SERVING, "requests", per_model=True
    ),
    QuerySpec(
        "vllm.kv_cache_usage",
        "avg by ({by}) (vllm:gpu_cache_usage_perc) or avg by ({by}) (vllm:kv_cache_usage_perc)",
        SERVING,
        "ratio",
        per_model=True,
    ),
    _quantile(0.5, "vllm:time_to_first_token_seconds", "vllm.ttft_p50_seconds"),
    _quantile(0.95, "vllm:time_to_first_token_seconds", "vllm.ttft_p95_seconds"),
    _quantile(0.5, "vllm:time_per_output_token_seconds", "vllm.tpot_p50_seconds"),
    _quantile(0.95, "vllm:time_per_output_token_seconds", "vllm.tpot_p95_seconds"),
    QuerySpec(
        "vllm.generation_tokens_per_second",
        "sum by ({by}) (rate(vllm:generation_tokens_total[{window}]))",
        SERVING,
        "tokens/s",
        per_model=True,
    ),
    QuerySpec(
        "vllm.requests_finished_per_second",
        "sum by ({by}) (rate(vllm:request_success_total[{window}]))",
        SERVING,
        "requests/s",
        per_model=True,
    ),
)


@dataclass(frozen=True)
class LabelMapping:
    instance: str
    instance_type: str
    zone: str
    purchase_option: str

    def grouping(self, per_model: bool) -> str:
        names = [self.instance, self.instance_type, self.zone, self.purchase_option]
        if per_model:
            names.append("model_name")
        return ", ".join(dict.fromkeys(names))


def rate_window(step_seconds: int) -> str:
    """rate()'s window: at least 4 steps (Prometheus's advice: 4 scrape intervals) and at least 5 minutes."""
    return f"{max(4 * step_seconds, 300)}s"


def render(spec: QuerySpec, labels: LabelMapping, step_seconds: int) -> str:
    return spec.template.format(by=labels.grouping(spec.per_model), window=rate_window(step_seconds))


def purchase_option(value: str | None) -> str | None:
    """Normalised purchase option: 'spot' (spot, preemptible, Spot VM), 'on_demand' for any other value given."""
    if not value:
        return None
    lowered = value.lower()
    return "spot" if "spot" in lowered or "preemptible" in lowered else "on_demand"
