"""Agent health from heartbeat age.

An agent promises a heartbeat every `heartbeat_interval_seconds`. Missing 3 intervals makes it `degraded`,
missing 10 makes it `failed`; an agent that reported `stopped` stays stopped until it heartbeats again, and one
that never sent a heartbeat is `starting`. Otherwise its health is what it last reported.
"""

from __future__ import annotations

from datetime import datetime

from optiinfra.models import Agent, AgentStatus

DEGRADED_AFTER_INTERVALS = 3
FAILED_AFTER_INTERVALS = 10


def derived_status(agent: Agent, now: datetime) -> AgentStatus:
    """The status the agent's heartbeats support at `now`."""
    if agent.status is AgentStatus.STOPPED:
        return AgentStatus.STOPPED
    if agent.last_heartbeat is None:
        return AgentStatus.STARTING
    missed = (now - agent.last_heartbeat).total_seconds() / agent.heartbeat_interval_seconds
    if missed >= FAILED_AFTER_INTERVALS:
        return AgentStatus.FAILED
    if missed >= DEGRADED_AFTER_INTERVALS:
        return AgentStatus.DEGRADED if agent.status is not AgentStatus.FAILED else AgentStatus.FAILED
    return agent.status
