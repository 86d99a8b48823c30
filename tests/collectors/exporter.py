"""A small exporter of ours for the collector tests: DCGM-exporter- and vLLM-format metrics whose values follow a
script, served live over HTTP (for Prometheus to scrape) and written as OpenMetrics history (for `promtool tsdb
create-blocks-from openmetrics`, so the Prometheus under test holds days of data, as a real one would).

Names, types and labels are those the real exporters emit (docs/collectors.md cites them):
- NVIDIA dcgm-exporter, default counters (etc/default-counters.csv): `DCGM_FI_DEV_GPU_UTIL` (gauge, %),
  `DCGM_FI_DEV_FB_USED` and `DCGM_FI_DEV_FB_FREE` (gauges, MiB), labels `gpu`, `UUID`, `device`, `modelName`,
  `Hostname`;
- vLLM's /metrics (docs "Production Metrics"): gauges `vllm:num_requests_running`, `vllm:num_requests_waiting`,
  `vllm:gpu_cache_usage_perc` (1 = 100 %), counters `vllm:prompt_tokens_total`, `vllm:generation_tokens_total`,
  `vllm:request_success_total` (label `finished_reason`), histograms `vllm:time_to_first_token_seconds` and
  `vllm:time_per_output_token_seconds` with vLLM's buckets; label `model_name`.

The script, relative to `anchor` (the test's start):
- gpu-node-1: g5.xlarge on demand in us-east-1a, one A10G steadily 85-91 % busy; serves Llama 3.1 8B at 4 requests/s.
  From 40 minutes before the anchor on, its KV cache is 96 % full and its waiting queue grows by 0.6 requests a
  minute (before: 55 % and no queue).
- gpu-node-2: g5.12xlarge on demand in us-east-1b, four A10Gs 2 % busy in even hours and 14 % in odd ones.
- gpu-node-3: g5.2xlarge on spot in us-east-1c, one A10G steadily 50 % busy.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
SATURATION = 40 * 60  # seconds before the anchor when node 1's saturation begins
REQUESTS_PER_SECOND = 4.0
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
FB_TOTAL = 22_731  # MiB on an A10G (24 GB)


@dataclass(frozen=True)
class Node:
    name: str
    instance_type: str
    zone: str
    capacity_type: str  # as EKS labels it: ON_DEMAND or SPOT
    gpus: int
    serves: bool

    @property
    def target_labels(self) -> dict[str, str]:
        """The labels Prometheus's scrape config attaches to this node's targets (the label mapping reads them)."""
        return {
            "node": self.name,
            "instance_type": self.instance_type,
            "zone": self.zone,
            "capacity_type": self.capacity_type,
        }


NODES = (
    Node("gpu-node-1", "g5.xlarge", "us-east-1a", "ON_DEMAND", 1, True),
    Node("gpu-node-2", "g5.12xlarge", "us-east-1b", "ON_DEMAND", 4, False),
    Node("gpu-node-3", "g5.2xlarge", "us-east-1c", "SPOT", 1, False),
)


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Family:
    name: str  # the TYPE line's name in the text format (counters keep their _total there)
    kind: str
    help: str
    samples: list[Sample]


def _normal_cdf(x: float, median: float, spread: float) -> float:
    """Share of requests at or below x for a log-normal latency (median, log-spread)."""
    return 0.5 * (1 + math.erf(math.log(x / median) / (spread * math.sqrt(2))))


class Script:
    def __init__(self, anchor: float) -> None:
        self.anchor = anchor
        self.origin = anchor - 3 * 86_400  # counters count from here

    def saturated_since(self) -> float:
        return self.anchor - SATURATION

    def gpu_utilization(self, node: Node, t: float, gpu: int) -> float:
        if node.name == "gpu-node-1":
            return 88.0 + 3.0 * math.sin(t / 900.0)
        if node.name == "gpu-node-2":
            return (2.0 if int(t // 3600) % 2 == 0 else 14.0) + 0.5 * gpu
        return 50.0 + 2.0 * math.sin(t / 1200.0)

    def fb_used(self, node: Node, t: float) -> float:
        return 20_000.0 if node.name == "gpu-node-1" else 1_200.0

    # --- vLLM on node 1 -------------------------------------------------------------------------------------
    def kv_cache(self, t: float) -> float:
        return 0.96 if t >= self.saturated_since() else 0.55

    def waiting(self, t: float) -> float:
        return float(int(max(0.0, t - self.saturated_since()) / 60 * 0.6))

    def running(self, t: float) -> float:
        return 48.0 if t >= self.saturated_since() else 20.0

    def requests(self, t: float) -> float:
        return REQUESTS_PER_SECOND * (t - self.origin)

    def _phased(self, t: float, share_before: float, share_after: float) -> float:
        """Requests counted into a bucket so far, when the bucket's share changed at saturation."""
        turn = self.saturated_since()
        before = min(t, turn) - self.origin
        after = max(0.0, t - turn)
        return REQUESTS_PER_SECOND * (share_before * before + share_after * after)

    def families(self, node: Node, t: float) -> list[Family]:
        families = self._dcgm(node, t)
        if node.serves:
            families.extend(self._vllm(t))
        return families

    def _dcgm(self, node: Node, t: float) -> list[Family]:
        def gpu_labels(gpu: int) -> dict[str, str]:
            return {
                "gpu": str(gpu),
                "UUID": f"GPU-{node.name}-{gpu:04d}",
                "device": f"nvidia{gpu}",
                "modelName": "NVIDIA A10G",
                "Hostname": node.name,
            }

        used = self.fb_used(node, t)
        return [
            Family(
                "DCGM_FI_DEV_GPU_UTIL",
                "gauge",
                "GPU utilization (in %).",
                [
                    Sample("DCGM_FI_DEV_GPU_UTIL", gpu_labels(g), round(self.gpu_utilization(node, t, g)))
                    for g in range(node.gpus)
                ],
            ),
            Family(
                "DCGM_FI_DEV_FB_FREE",
                "gauge",
                "Frame buffer memory free (in MiB).",
                [Sample("DCGM_FI_DEV_FB_FREE", gpu_labels(g), FB_TOTAL - used) for g in range(node.gpus)],
            ),
            Family(
                "DCGM_FI_DEV_FB_USED",
                "gauge",
                "Frame buffer memory used (in MiB).",
                [Sample("DCGM_FI_DEV_FB_USED", gpu_labels(g), used) for g in range(node.gpus)],
            ),
        ]

    def _histogram(
        self, name: str, help_text: str, buckets: tuple[float, ...], t: float, medians: tuple[float, float]
    ) -> Family:
        labels = {"model_name": MODEL}
        samples = [
            Sample(
                f"{name}_bucket",
                {**labels, "le": str(le)},
                round(self._phased(t, _normal_cdf(le, medians[0], 0.5), _normal_cdf(le, medians[1], 0.5))),
            )
            for le in buckets
        ]
        count = round(self.requests(t))
        samples.append(Sample(f"{name}_bucket", {**labels, "le": "+Inf"}, count))
        samples.append(Sample(f"{name}_count", labels, count))
        samples.append(Sample(f"{name}_sum", labels, round(self._phased(t, medians[0], medians[1]), 3)))
        return Family(name, "histogram", help_text, samples)

    def _vllm(self, t: float) -> list[Family]:
        labels = {"model_name": MODEL}
        finished = {**labels, "finished_reason": "stop"}
        return [
            Family(
                "vllm:num_requests_running",
                "gauge",
                "Number of requests currently running on GPU.",
                [Sample("vllm:num_requests_running", labels, self.running(t))],
            ),
            Family(
                "vllm:num_requests_waiting",
                "gauge",
                "Number of requests waiting to be processed.",
                [Sample("vllm:num_requests_waiting", labels, self.waiting(t))],
            ),
            Family(
                "vllm:gpu_cache_usage_perc",
                "gauge",
                "GPU KV-cache usage. 1 means 100 percent usage.",
                [Sample("vllm:gpu_cache_usage_perc", labels, self.kv_cache(t))],
            ),
            Family(
                "vllm:prompt_tokens_total",
                "counter",
                "Number of prefill tokens processed.",
                [Sample("vllm:prompt_tokens_total", labels, round(self.requests(t) * 500))],
            ),
            Family(
                "vllm:generation_tokens_total",
                "counter",
                "Number of generation tokens processed.",
                [Sample("vllm:generation_tokens_total", labels, round(self.requests(t) * 250))],
            ),
            Family(
                "vllm:request_success_total",
                "counter",
                "Count of successfully processed requests.",
                [Sample("vllm:request_success_total", finished, round(self.requests(t)))],
            ),
            self._histogram(
                "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.",
                TTFT_BUCKETS,
                t,
                (0.12, 1.8),
            ),
            self._histogram(
                "vllm:time_per_output_token_seconds",
                "Histogram of time per output token in seconds.",
                TPOT_BUCKETS,
                t,
                (0.03, 0.06),
            ),
        ]


def _labels(labels: dict[str, str]) -> str:
    inner = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return "{" + inner + "}" if inner else ""


def exposition(families: list[Family]) -> str:
    """The Prometheus text format (0.0.4), as the real exporters serve it."""
    lines = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        lines.extend(f"{s.name}{_labels(s.labels)} {s.value}" for s in family.samples)
    return "\n".join(lines) + "\n"


def openmetrics_history(
    script: Script,
    targets: dict[str, dict[str, str]],
    start: float,
    end: float,
    interval: float,
    serving_since: float,
) -> Iterator[str]:
    """OpenMetrics lines for `promtool tsdb create-blocks-from openmetrics`: every node's families every `interval`
    seconds in [start, end] (vLLM's from `serving_since` on, which is all the serving rules read), with the labels
    Prometheus attaches when scraping (`targets`: node -> job, instance)."""
    times = [start + i * interval for i in range(int((end - start) // interval) + 1)]
    names: dict[str, tuple[str, str]] = {}
    for node in NODES:
        for family in script.families(node, start):
            names[family.name] = (family.kind, family.help)
    for name, (kind, help_text) in names.items():
        om_name = name.removesuffix("_total") if kind == "counter" else name
        yield f"# HELP {om_name} {help_text}"
        yield f"# TYPE {om_name} {kind}"
        for node in NODES:
            extra = {**targets[node.name], **node.target_labels}
            for t in times:
                if name.startswith("vllm:") and t < serving_since:
                    continue
                for family in script.families(node, t):
                    if family.name != name:
                        continue
                    for s in family.samples:
                        yield f"{s.name}{_labels({**s.labels, **extra})} {s.value} {t:.0f}"
    yield "# EOF"


class NodeExporter:
    """One node's DCGM and vLLM endpoints behind one /metrics, on a loopback port (0: any free one)."""

    def __init__(self, script: Script, node: Node, clock: Callable[[], float]) -> None:
        self.script = script
        self.node = node
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exposition(exporter.script.families(exporter.node, clock())).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
