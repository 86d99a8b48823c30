"""The price catalog the spot-migration analysis uses (shipped in optiinfra/data/price_catalog.json)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, Field

from optiinfra.errors import InvalidInputError


class InstancePrice(BaseModel):
    on_demand_hourly: float = Field(gt=0)
    spot_hourly: float = Field(gt=0)
    interruption_rate: str
    gpus: int = Field(default=0, ge=0)


class PriceCatalog(BaseModel):
    description: str = ""
    currency: str = "USD"
    region: str
    hours_per_month: float = Field(default=730, gt=0)
    instance_types: dict[str, InstancePrice]


def load_catalog(path: Path | None = None) -> PriceCatalog:
    """The shipped catalog, or a user's own file of the same shape."""
    try:
        text = path.read_text() if path else (resources.files("optiinfra") / "data" / "price_catalog.json").read_text()
        return PriceCatalog.model_validate(json.loads(text))
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"The price catalog {path} cannot be used: {error}") from error
