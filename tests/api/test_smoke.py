from tests.api.conftest import AgentHandle, Tenant


def test_full_lifecycle_smoke(tenant: Tenant, agent: AgentHandle) -> None:
    rec = agent.client.create_recommendation(tenant.id, "spot_migration", "Move to spot", confidence_score=0.8,
                                             estimated_savings=1200.5)
    decision = tenant.client.approve(rec.id, "ok")
    assert decision.optimization is not None
    opt = agent.client.start_optimization(decision.optimization.id)
    agent.client.report_progress(opt.id, 40)
    done = agent.client.complete_optimization(opt.id, actual_savings=1100)
    assert done.status == "completed"
    rolled = tenant.client.rollback_optimization(opt.id, "quality dropped")
    assert rolled.status == "rolled_back"
    events = tenant.client.list_events(limit=100)
    types = [e.event_type for e in events.items]
    assert "optimization.rolled_back" in types
