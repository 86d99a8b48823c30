"""The LLM judge against a fake OpenAI-compatible server on loopback (no network): sampling, the daily cap, our
parsing, the API key from the worker's environment, and refusal of endpoints the operator has not allowed."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.auth.principal import Principal
from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory
from optiinfra.models import AgentType, Customer, QualityMetric
from optiinfra.quality.service import ingest
from optiinfra.quality.settings import QualitySettings, store_settings
from optiinfra.scoring import judge
from optiinfra.scoring import service as scoring
from optiinfra.scoring.base import ScoreInput
from optiinfra.scoring.settings import JudgeSettings
from tests.conftest import DatabaseFactory
from tests.factories import assign, make_agent, make_customer

CONTEXT = "Venus is the hottest planet, with surface temperatures around 465 degrees Celsius."


class FakeOpenAI(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]]
    reply: str

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})  # type: ignore[attr-defined]
        question = body["messages"][-1]["content"]
        mode = self.server.mode  # type: ignore[attr-defined]
        if mode == "garbage":
            content = "I think it is probably fine."
        elif "Jupiter" in question:
            # Wrapped in prose and a code fence, as models do: our parser finds the object.
            content = 'Here is my verdict:\n```json\n{"verdict": "contradicted", "score": 0.05, "reason": "Venus"}\n```'
        else:
            content = '{"verdict": "supported", "score": 0.97, "reason": "stated in the context"}'
        payload = json.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 120, "completion_tokens": 20, "total_tokens": 140},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def fake_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    server.requests = []  # type: ignore[attr-defined]
    server.mode = "normal"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def factory(create_database: DatabaseFactory) -> Iterator[sessionmaker[Session]]:
    engine: Engine = create_engine(create_database(), pool_size=4)
    migrations.upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


def _customer(factory: sessionmaker[Session], judge_settings: dict[str, Any]) -> uuid.UUID:
    with factory() as session, session.begin():
        customer = make_customer(session)
        assign(session, make_agent(session, type=AgentType.APPLICATION), customer)
        store_settings(customer, QualitySettings.model_validate({"scoring": {"judge": judge_settings}}))
        return customer.id


def _ingest(factory: sessionmaker[Session], customer_id: uuid.UUID, answers: list[str]) -> None:
    now = datetime.now(UTC).isoformat()
    records = [
        {
            "request_id": f"r{index}",
            "model_name": "m",
            "model_version": "1",
            "timestamp": now,
            "prompt": "Which planet is the hottest?",
            "response": answer,
            "context": CONTEXT,
        }
        for index, answer in enumerate(answers)
    ]
    with factory() as session, session.begin():
        ingest(session, Principal.operator(), records, customer_id=customer_id, agent_id=None)


def _rows(factory: sessionmaker[Session], customer_id: uuid.UUID) -> list[QualityMetric]:
    with factory() as session:
        return list(session.scalars(select(QualityMetric).where(QualityMetric.customer_id == customer_id)).all())


def test_the_judge_checks_the_sample_and_its_verdict_replaces_the_offline_factuality(
    factory: sessionmaker[Session], fake_server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS", "1")
    monkeypatch.setenv("OPTIINFRA_JUDGE_KEY_ACME", "sk-test-123")
    base_url = f"http://127.0.0.1:{fake_server.server_port}/v1"
    customer_id = _customer(
        factory,
        {"enabled": True, "base_url": base_url, "model": "judge-model", "api_key_env": "OPTIINFRA_JUDGE_KEY_ACME",
         "sample_rate": 1.0, "max_calls_per_day": 3},
    )  # fmt: skip
    # "hot Venus" is lexically supported but wrong in its reasoning: only the judge can see that.
    answers = ["Venus is the hottest planet.", "Jupiter is the hottest planet, like Venus and its 465 degrees."] * 2
    answers.append("Venus, at 465 degrees Celsius.")
    _ingest(factory, customer_id, answers)
    scoring.score_pending(factory)

    requests = fake_server.requests  # type: ignore[attr-defined]
    assert len(requests) == 3  # the daily cap: 3 calls for 5 sampled records
    assert {request["path"] for request in requests} == {"/v1/chat/completions"}
    assert {request["auth"] for request in requests} == {"Bearer sk-test-123"}
    assert requests[0]["body"]["model"] == "judge-model"
    assert requests[0]["body"]["messages"][0]["content"] == judge.SYSTEM_PROMPT
    rows = _rows(factory, customer_id)
    judged = [row for row in rows if "llm_judge" in row.metadata_]
    assert len(judged) == 3
    for row in rows:
        assert row.metadata_["scorers"]["llm_judge"] == judge.PROMPT_VERSION
        assert row.metadata_["scorer_set"].endswith(f"llm_judge@{judge.PROMPT_VERSION}:judge-model:1")
    for row in judged:
        verdict = row.metadata_["llm_judge"]
        assert verdict["prompt_version"] == judge.PROMPT_VERSION
        if "Jupiter" in row.request_id or verdict["verdict"] == "contradicted":
            assert row.factuality_score == pytest.approx(0.05)
            assert row.hallucination_detected
        else:
            assert verdict["verdict"] == "supported"
            assert row.factuality_score == pytest.approx(0.97)
    with factory() as session:
        customer = session.get(Customer, customer_id)
        assert customer is not None
        usage = customer.metadata_[scoring.JUDGE_USAGE_KEY]
        assert usage["calls"] == 3
        assert usage["tokens"] == 3 * 140

    # The cap is spent for today: more records are scored offline, and the judge is not called again.
    _ingest(factory, customer_id, ["Venus."])
    scoring.score_pending(factory)
    assert len(requests) == 3


def test_a_reply_without_a_verdict_is_recorded_as_an_error_and_the_offline_scores_stand(
    factory: sessionmaker[Session], fake_server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS", "1")
    fake_server.mode = "garbage"  # type: ignore[attr-defined]
    base_url = f"http://127.0.0.1:{fake_server.server_port}/v1"
    customer_id = _customer(factory, {"enabled": True, "base_url": base_url, "sample_rate": 1.0})
    _ingest(factory, customer_id, ["Venus is the hottest planet."])
    scoring.score_pending(factory)
    (row,) = _rows(factory, customer_id)
    assert row.metadata_["llm_judge"]["verdict"] is None
    assert "no JSON object" in row.metadata_["llm_judge"]["error"]
    assert row.factuality_score == pytest.approx(1.0)  # the lexical groundedness, untouched


def test_loopback_and_private_judges_are_refused_unless_the_operator_allows_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS", raising=False)
    for url in ("http://127.0.0.1:8000/v1", "http://10.0.0.5/v1", "http://localhost/v1", "file:///etc/passwd"):
        with pytest.raises(ValidationError):
            JudgeSettings(enabled=True, base_url=url)
    with pytest.raises(ValidationError):
        JudgeSettings(api_key_env="OPTIINFRA_ADMIN_KEY")  # only OPTIINFRA_JUDGE_KEY_* may be named
    # Allowed when stored, refused again at the call once the operator withdraws the permission.
    monkeypatch.setenv("OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS", "1")
    settings = JudgeSettings(enabled=True, base_url="http://127.0.0.1:9/v1")
    monkeypatch.delenv("OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS")
    verdict = judge.judge_one(settings, ScoreInput("q", "a", "c"))
    assert verdict.verdict is None
    assert verdict.error is not None
    assert "refused" in verdict.error


def test_our_parser_takes_the_first_object_with_a_verdict_and_nothing_else() -> None:
    assert judge.parse_reply('{"note": 1} then {"verdict": "Unsupported", "score": 0.2}') == ("unsupported", 0.2, None)
    assert judge.parse_reply('{"verdict": "supported", "score": 7}')[1] == 1.0  # out of range: from the verdict
    with pytest.raises(ValueError, match="no JSON object"):
        judge.parse_reply('{"verdict": "maybe"}')
    assert judge.sampled(uuid.UUID(int=5), 1.0)
    assert not judge.sampled(uuid.UUID(int=5), 0.0)
    share = sum(judge.sampled(uuid.uuid4(), 0.2) for _ in range(5000)) / 5000
    assert 0.18 < share < 0.22
