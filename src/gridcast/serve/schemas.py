"""Request bodies of the API, with their limits (`limits`), validated by pydantic.

A point is ``{"cell": [col, row]}``, ``{"lat", "lon", "time"?}`` or ``{"x", "y", "time"?}``; a time
is seconds (a number) or ISO-8601 text. Every mistake is a 422 naming its field
(``points[3].lat: must be within [-90, 90]``, see `app`).
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gridcast.serve.limits import MAX_CELL, MAX_HORIZON, MAX_POINTS, MAX_TOP_K

CellIndex = Annotated[int, Field(ge=-MAX_CELL, le=MAX_CELL)]
Cell = Annotated[list[CellIndex], Field(min_length=2, max_length=2)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class Point(BaseModel):
    """One observed position: a cell, lat/lon (grids with a CRS) or x/y (planar grids)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["cell"], "not": {"anyOf": [{"required": [k]} for k in ("lat", "lon", "x", "y")]}},
        {"required": ["lat", "lon"], "not": {"anyOf": [{"required": [k]} for k in ("cell", "x", "y")]}},
        {"required": ["x", "y"], "not": {"anyOf": [{"required": [k]} for k in ("cell", "lat", "lon")]}}]})
    cell: Cell | None = None
    lat: Finite | None = Field(None, json_schema_extra={"minimum": -90, "maximum": 90})
    lon: Finite | None = Field(None, json_schema_extra={"minimum": -180, "maximum": 180})
    x: Finite | None = None
    y: Finite | None = None
    time: Finite | str | None = Field(None, description="seconds, or ISO-8601 such as 2026-01-26T15:57:02Z")

    @field_validator("lat")
    @classmethod
    def _lat(cls, v: float | None) -> float | None:
        if v is not None and abs(v) > 90:
            raise ValueError("must be within [-90, 90]")
        return v

    @field_validator("lon")
    @classmethod
    def _lon(cls, v: float | None) -> float | None:
        if v is not None and abs(v) > 180:
            raise ValueError("must be within [-180, 180]")
        return v

    @field_validator("time")
    @classmethod
    def _time(cls, v: float | str | None) -> float | None:
        if v is None or not isinstance(v, str):
            return v
        try:
            stamp = datetime.fromisoformat(v.strip())
        except ValueError:
            raise ValueError("must be seconds or ISO-8601 such as 2026-01-26T15:57:02Z") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        seconds = stamp.timestamp()
        if not math.isfinite(seconds):
            raise ValueError("must be a finite time")
        return seconds

    @model_validator(mode="after")
    def _one_form(self) -> "Point":
        forms = [self.cell is not None, self.lat is not None or self.lon is not None,
                 self.x is not None or self.y is not None]
        if sum(forms) != 1:
            raise ValueError('give exactly one of "cell", "lat"+"lon" or "x"+"y"')
        if forms[1] and (self.lat is None or self.lon is None):
            raise ValueError('give both "lat" and "lon"')
        if forms[2] and (self.x is None or self.y is None):
            raise ValueError('give both "x" and "y"')
        return self

    @property
    def kind(self) -> str:
        return "cell" if self.cell is not None else "latlon" if self.lat is not None else "xy"


Points = Annotated[list[Point], Field(min_length=1, max_length=MAX_POINTS)]


class PredictRequest(BaseModel):
    """A prefix as cells (``track``, as ``predict --track``) or points (as ``predict --points``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["track"], "not": {"required": ["points"]}},
                  {"required": ["points"], "not": {"required": ["track"]}}]})
    track: Annotated[list[Cell], Field(min_length=1, max_length=MAX_POINTS)] | None = None
    points: Points | None = None
    horizon: Annotated[int, Field(ge=1, le=MAX_HORIZON)] = 10
    top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K)] = 5

    @model_validator(mode="after")
    def _one_prefix(self) -> "PredictRequest":
        if (self.track is None) == (self.points is None):
            raise ValueError('give exactly one of "track" or "points"')
        return self


class TrackPointsRequest(BaseModel):
    """New points of one live track, in order."""

    model_config = ConfigDict(extra="forbid")
    points: Points
    top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K)] = 5


class NextCellOut(BaseModel):
    """One candidate next cell (its centre in the model's coordinates where it has a grid)."""

    model_config = ConfigDict(extra="allow")
    cell: list[int]
    p: float


class TrackPointsResponse(BaseModel):
    track: str
    points_seen: int
    next: list[NextCellOut]
