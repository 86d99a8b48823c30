"""Turning a presented API key into a Principal."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from optiinfra.auth.keys import digests_match, key_digest, role_of
from optiinfra.auth.principal import Principal, Role
from optiinfra.errors import UnauthorizedError
from optiinfra.models import Agent, Customer

INVALID_KEY = "The API key is missing, malformed or not valid."


def customer_principal(customer: Customer) -> Principal:
    """The caller a customer's key (or a dashboard session opened with it) identifies."""
    return Principal(role=Role.CUSTOMER, name=customer.email, customer_id=customer.id, customer_status=customer.status)


def authenticate(session: Session, key: str | None, operator_digest: str) -> Principal:
    """The caller a key identifies; 401 for a missing or unknown key, with one message for every failure."""
    if not key:
        raise UnauthorizedError("An API key is required: send 'Authorization: Bearer <key>'.")
    role = role_of(key)
    if role is Role.OPERATOR and digests_match(operator_digest, key):
        return Principal.operator()
    if role is Role.CUSTOMER:
        customer = session.scalar(select(Customer).where(Customer.api_key == key_digest(key)))
        # The lookup is by digest; the constant-time comparison guards the final equality check as well.
        if customer is not None and digests_match(customer.api_key, key):
            return customer_principal(customer)
    if role is Role.AGENT:
        agent = session.scalar(select(Agent).where(Agent.api_key_digest == key_digest(key)))
        if agent is not None and agent.api_key_digest is not None and digests_match(agent.api_key_digest, key):
            return Principal.for_agent(agent)
    raise UnauthorizedError(INVALID_KEY)
