"""OTLP ingest throughput: spans/s through POST /v1/traces (protobuf, 512 spans a request, as the SDK's batch
exporter sends them) and through OTLP/gRPC TraceService/Export (the same messages), versus records/s through
POST /api/v1/quality/metrics (JSON, 512 records a request), the same simulated requests every way, on one
`optiinfra serve` process, alternating, medians reported.

Each span carries what the instrumentations send (gen_ai.* model, usage, response id, server address). Measured
twice: with its five evaluations as gen_ai.evaluation.result span events (so it stores the same scores as the JSON
record), and alone (stored with scores pending, as a span whose evaluator reports later). Bodies are encoded before
the clock starts: the figures are the server's.

    .venv/bin/python benchmarks/otlp_ingest.py [--rows 20000] [--batch 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import orjson
from _support import fresh_database, make_tenant, median, quality_records, running_server, write_results
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

EVALUATIONS = ("relevance", "coherence", "factuality", "toxicity")


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def _span(record: dict[str, Any], with_evaluations: bool) -> Span:
    end = int(datetime.fromisoformat(record["timestamp"]).timestamp() * 1e9)
    start = end - int(record["latency_ms"] * 1e6)
    events = [
        Span.Event(
            name="gen_ai.evaluation.result",
            time_unix_nano=end,
            attributes=[
                _kv("gen_ai.evaluation.name", name),
                _kv("gen_ai.evaluation.score.value", record[f"{name}_score"]),
            ],
        )
        for name in EVALUATIONS
        if with_evaluations
    ]
    if with_evaluations:
        events.append(
            Span.Event(
                name="gen_ai.evaluation.result",
                time_unix_nano=end,
                attributes=[
                    _kv("gen_ai.evaluation.name", "hallucination"),
                    _kv(
                        "gen_ai.evaluation.score.label",
                        "hallucinated" if record["hallucination_detected"] else "factual",
                    ),
                ],
            )
        )
    return Span(
        trace_id=uuid.uuid4().bytes,
        span_id=uuid.uuid4().bytes[:8],
        name="chat bench-model",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        attributes=[
            _kv("gen_ai.operation.name", "chat"),
            _kv("gen_ai.provider.name", "openai"),
            _kv("gen_ai.request.model", record["model_name"]),
            _kv("gen_ai.response.model", f"{record['model_name']}-2024"),
            _kv("gen_ai.response.id", record["request_id"]),
            _kv("gen_ai.usage.input_tokens", record["prompt_tokens"]),
            _kv("gen_ai.usage.output_tokens", record["completion_tokens"]),
            _kv("server.address", "10.0.0.7"),
            _kv("server.port", 8000),
        ],
        events=events,
    )


def otlp_bodies(records: list[dict[str, Any]], batch: int, with_evaluations: bool = True) -> list[bytes]:
    bodies = []
    for offset in range(0, len(records), batch):
        request = ExportTraceServiceRequest(
            resource_spans=[
                ResourceSpans(
                    resource={"attributes": [_kv("service.name", "bench"), _kv("optiinfra.model_version", "v1")]},
                    scope_spans=[
                        ScopeSpans(spans=[_span(r, with_evaluations) for r in records[offset : offset + batch]])
                    ],
                )
            ]
        )
        bodies.append(request.SerializeToString())
    return bodies


def json_bodies(records: list[dict[str, Any]], batch: int) -> list[bytes]:
    stripped = [{k: v for k, v in r.items() if k != "overall_quality_score"} for r in records]
    return [orjson.dumps({"records": stripped[i : i + batch]}) for i in range(0, len(stripped), batch)]


def send(base_url: str, path: str, key: str, bodies: list[bytes], content_type: str, count: int) -> float:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
    with httpx.Client(base_url=base_url, timeout=300) as client:
        started = time.perf_counter()
        for body in bodies:
            response = client.post(path, content=body, headers=headers)
            response.raise_for_status()
            if path == "/v1/traces":
                assert response.headers["X-OptiInfra-Stored"] != "0", response.text
        return count / (time.perf_counter() - started)


def send_grpc(target: str, key: str, bodies: list[bytes], count: int) -> float:
    """The same protobuf messages through OTLP/gRPC (serialised already: sent as they are)."""
    with grpc.insecure_channel(target) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        metadata = (("authorization", f"Bearer {key}"),)
        started = time.perf_counter()
        for body in bodies:
            answer, call = export.with_call(body, metadata=metadata, timeout=300)
            assert not ExportTraceServiceResponse.FromString(answer).HasField("partial_success"), answer
            assert ("x-optiinfra-stored", "0") not in call.trailing_metadata()
        return count / (time.perf_counter() - started)


PATHS = {
    "otlp_with_evaluations": ("/v1/traces", "application/x-protobuf"),
    "otlp_grpc_with_evaluations": ("TraceService/Export", "application/grpc"),
    "otlp_spans_only": ("/v1/traces", "application/x-protobuf"),
    "json": ("/api/v1/quality/metrics", "application/json"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    start = datetime.now(UTC) - timedelta(days=2)
    rates: dict[str, list[float]] = {name: [] for name in PATHS}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        grpc_port = probe.getsockname()[1]
    grpc_args = ("--otlp-grpc-port", str(grpc_port))
    with fresh_database() as engine, running_server(engine, extra_args=grpc_args) as (base_url, _operator_key):
        _, _, key = make_tenant(engine)
        for round_number in range(args.rounds):

            def records(prefix: str, seed: int = round_number) -> list[dict[str, Any]]:
                return quality_records(args.rows, seed=seed, start=start, prefix=prefix)

            bodies = {
                "otlp_with_evaluations": otlp_bodies(records("otlp-e"), args.batch),
                "otlp_grpc_with_evaluations": otlp_bodies(records("otlp-g"), args.batch),
                "otlp_spans_only": otlp_bodies(records("otlp-s"), args.batch, with_evaluations=False),
                "json": json_bodies(records("json"), args.batch),
            }
            order = list(PATHS)
            if round_number % 2:
                order.reverse()  # alternate which goes first
            for name in order:
                path, content_type = PATHS[name]
                if content_type == "application/grpc":
                    rates[name].append(send_grpc(f"127.0.0.1:{grpc_port}", key, bodies[name], args.rows))
                else:
                    rates[name].append(send(base_url, path, key, bodies[name], content_type, args.rows))
            print(f"round {round_number + 1}: " + ", ".join(f"{name} {rates[name][-1]:,.0f}/s" for name in PATHS))
    medians = {name: median(values) for name, values in rates.items()}
    print("median: " + ", ".join(f"{name} {value:,.0f}/s" for name, value in medians.items()))
    path = write_results(
        "otlp_ingest",
        {
            "rows_per_round": args.rows,
            "batch_size": args.batch,
            "rounds": args.rounds,
            "per_second": rates,
            "median_per_second": medians,
            "otlp_with_evaluations_to_json_ratio": medians["otlp_with_evaluations"] / medians["json"],
            "otlp_grpc_with_evaluations_to_json_ratio": medians["otlp_grpc_with_evaluations"] / medians["json"],
            "otlp_spans_only_to_json_ratio": medians["otlp_spans_only"] / medians["json"],
        },
    )
    print(f"results in {path}")


if __name__ == "__main__":
    main()
