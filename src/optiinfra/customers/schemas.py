"""Customers on the wire."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, EmailStr, Field

from optiinfra.enums import CustomerPlan, CustomerStatus
from optiinfra.listing import ListQuery
from optiinfra.validation import BoundedJson


class Customer(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    email: str
    plan: CustomerPlan
    status: CustomerStatus
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("metadata_", "metadata"))
    created_at: datetime
    updated_at: datetime


class CustomerWithKey(Customer):
    """Returned once, when a customer is created or its key rotated: the only time the key is shown."""

    api_key: str


class CustomerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    email: EmailStr = Field(max_length=255)
    plan: CustomerPlan = CustomerPlan.FREE
    metadata: BoundedJson = Field(default_factory=dict)


class CustomerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=255)
    plan: CustomerPlan | None = None
    status: CustomerStatus | None = None
    metadata: BoundedJson | None = None


class CustomerFilters(ListQuery):
    """GET /customers: filters of the list."""

    status: CustomerStatus | None = None
