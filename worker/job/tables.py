"""The tables of a job spec: its retry budget, its limits on the target, its scope (``worker.job.spec.JobSpec``).

Each is a pydantic model of plain data that becomes the engine's own type (``RetryBudget``, ``Limits``,
``Scope``) where a step needs it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Set, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from core.limits import Limits
from core.model import DiffSyncModel
from core.retry import RetryBudget
from core.scope import Scope


class RetrySpec(BaseModel):
    """A job's retry budget for hooks whose remote says "try later" (``core.retry.RetryBudget``).

    A field left out is the target adapter's (``Adapter.retry_budget``), else the setting's
    (``SHARDSYNC_RETRY_ATTEMPTS``, ``SHARDSYNC_RETRY_SECONDS``), else ``RetryBudget``'s default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: Optional[int] = Field(None, ge=1, le=1000, description="calls of one operation in all")
    seconds: Optional[float] = Field(None, ge=0, le=86400, description="most seconds from its first failure")
    initial: Optional[float] = Field(None, ge=0, le=3600, description="the first wait")
    maximum: Optional[float] = Field(None, ge=0, le=3600, description="the longest wait of the backoff")

    @model_validator(mode="after")
    def _waits(self) -> RetrySpec:
        if self.initial is not None and self.maximum is not None and self.initial > self.maximum:
            raise ValueError(f"retry initial wait {self.initial} is longer than its maximum {self.maximum}")
        return self

    def budget(self, base: RetryBudget) -> RetryBudget:
        """``base`` with the fields this job sets."""
        given = {name: value for name, value in self.model_dump().items() if value is not None}
        if "initial" in given and "maximum" not in given:
            given["maximum"] = max(base.maximum, given["initial"])
        elif "maximum" in given and "initial" not in given:
            given["initial"] = min(base.initial, given["maximum"])
        return dataclasses.replace(base, **given)


class LimitsSpec(BaseModel):
    """A job's limits on its target (``core.limits.Limits``); a field left out is the target adapter's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: Optional[int] = Field(None, ge=1, le=100_000, description="most calls in flight at once")
    rate: Optional[float] = Field(None, gt=0, le=1_000_000, description="most calls started per second")
    call_timeout: Optional[float] = Field(
        None, gt=0, le=86_400, description="most seconds one call to the target may take before it is interrupted"
    )

    def to_limits(self) -> Limits:
        """As ``core.limits.Limits`` (fields left out: None)."""
        return Limits(**self.model_dump())


ScopeValue = Union[StrictStr, StrictInt, StrictFloat, StrictBool, None]


class ScopeSpec(BaseModel):
    """The part of both sides a job compares and writes (``core.scope.Scope``): nothing outside it changes.

    ``types``: top-level types (default all); ``ids``: top-level unique ids (default all); ``where``: per
    top-level type, identifier values an object must have; ``children``: the child types included (default all).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    types: Optional[List[StrictStr]] = Field(None, max_length=1000, description="top-level types in scope")
    ids: Optional[List[StrictStr]] = Field(None, max_length=1_000_000, description="top-level unique ids in scope")
    where: Dict[StrictStr, Dict[StrictStr, Union[ScopeValue, List[ScopeValue]]]] = Field(
        default_factory=dict, description="per top-level type, identifier values an object in scope has"
    )
    children: Optional[List[StrictStr]] = Field(None, max_length=1000, description="child types in scope")

    def to_scope(self) -> Scope:
        """As ``core.scope.Scope``."""
        return Scope(types=self.types, ids=self.ids, where=self.where, children=self.children)


def _model_names(cls: Any) -> Set[str]:
    return {
        getattr(value, "_modelname", name) for name in dir(cls)
        if isinstance(value := getattr(cls, name, None), type) and issubclass(value, DiffSyncModel)
    }  # fmt: skip


def check_scope(scope: ScopeSpec, source: Any, target: Any) -> None:
    """A scope names only top-level types and model types the job's adapters have (a typo would scope nothing)."""
    tops = set(source.top_level) | set(target.top_level)
    for name in [*(scope.types or []), *scope.where]:
        if name not in tops:
            raise ValueError(f"scope: {name!r} is not a top-level type of the adapters ({', '.join(sorted(tops))})")
    models = _model_names(source) | _model_names(target)
    for name in scope.children or []:
        if name not in models or name in tops:
            raise ValueError(f"scope: child type {name!r} is not a child model type of the adapters")
    try:
        scope.to_scope()
    except ValueError as err:
        raise ValueError(str(err)) from None


__all__ = ["LimitsSpec", "RetrySpec", "ScopeSpec", "check_scope"]
