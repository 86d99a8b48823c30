"""Who is calling: the operator, one customer, or one agent."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from optiinfra.errors import ForbiddenError
from optiinfra.models import Agent, CustomerStatus


class Role(enum.StrEnum):
    OPERATOR = "operator"
    CUSTOMER = "customer"
    AGENT = "agent"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request or command."""

    role: Role
    name: str
    customer_id: uuid.UUID | None = None
    customer_status: CustomerStatus | None = None
    agent_id: uuid.UUID | None = None

    @classmethod
    def operator(cls) -> Principal:
        return cls(role=Role.OPERATOR, name="operator")

    @classmethod
    def for_agent(cls, agent: Agent) -> Principal:
        """The agent itself acting (its own key, or OptiInfra running the agent's workflow)."""
        return cls(role=Role.AGENT, name=f"{agent.type}/{agent.name}", agent_id=agent.id)

    @classmethod
    def system(cls, reason: str) -> Principal:
        """OptiInfra itself acting (the quality engine, the health sweeper): operator rights, named for the log."""
        return cls(role=Role.OPERATOR, name=f"system:{reason}")

    def require(self, *roles: Role) -> None:
        """Refuse with 403 unless the caller has one of `roles`."""
        if self.role not in roles:
            allowed = " or ".join(str(role) for role in roles)
            raise ForbiddenError(f"This action needs the {allowed} role; the key used is a {self.role} key.")

    def require_writable(self) -> None:
        """A suspended or churned customer may read but not change anything."""
        if self.role is Role.CUSTOMER and self.customer_status is not CustomerStatus.ACTIVE:
            raise ForbiddenError(
                f"The customer account is {self.customer_status}: it can read but not change anything.",
                details={"customer_status": str(self.customer_status)},
            )

    def as_actor(self) -> dict[str, str]:
        """How the caller is recorded in the event log."""
        actor = {"role": str(self.role), "name": self.name}
        if self.customer_id is not None:
            actor["customer_id"] = str(self.customer_id)
        if self.agent_id is not None:
            actor["agent_id"] = str(self.agent_id)
        return actor
