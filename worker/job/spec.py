"""The job spec: everything a sync job needs, as plain data, validated before anything is enqueued."""

from __future__ import annotations

import hashlib
import inspect
import re
import typing
import uuid
from typing import Any, Dict, List, Optional, Tuple, Union

import msgpack
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from core.adapter import Adapter
from core.batch import check_batch_size
from core.enum import DiffSyncFlags
from core.scope import Scope
from worker.adapters.registry import get_adapter, registered_adapters
from worker.errors import InvalidJob, JobFailed
from worker.job.guard import parse_delete_limit
from worker.job.tables import LimitsSpec, RetrySpec, ScopeSpec, check_scope

FLAG_NAMES = {name.lower(): flag for name, flag in DiffSyncFlags.__members__.items() if name != "NONE"}
_JOB_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


def check_job_id(value: str) -> str:
    """A job id as every command and step takes it.

    Raises:
        InvalidJob: naming the id and what a job id is.
    """
    if not isinstance(value, str) or not _JOB_ID.fullmatch(value):
        raise InvalidJob(f"invalid job id {value!r}: a job id is 1 to 100 letters, digits, '_', '.' or '-'")
    return value


def _new_job_id() -> str:
    return uuid.uuid4().hex


def parse_flags(names: List[str]) -> DiffSyncFlags:
    """Combine DiffSyncFlags given by name (``continue_on_failure``, ``CONTINUE-ON-FAILURE``...).

    Raises:
        ValueError: naming the unknown flag and listing the known ones.
    """
    flags = DiffSyncFlags.NONE
    for name in names:
        key = str(name).strip().lower().replace("-", "_")
        if key not in FLAG_NAMES:
            raise ValueError(f"unknown flag {name!r}; known flags: {', '.join(sorted(FLAG_NAMES))}")
        flags |= FLAG_NAMES[key]
    return flags


def _canonical(value: Any) -> Any:
    """Plain data in one spelling: mappings as key-sorted pairs, sequences as lists, whole floats as ints.

    So the same system named with its kwargs in another order (or 1.0 for 1) is the same lock.
    """
    if isinstance(value, dict):
        return [[key, _canonical(value[key])] for key in sorted(value, key=repr)]
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _plain_keys(value: Any, where: str) -> None:
    """Mapping keys must read back as they were written: str or int.

    msgpack packs a tuple key as an array, which no reader can use as a key.
    """
    stack = [(value, where)]
    while stack:
        current, path = stack.pop()
        if isinstance(current, dict):
            for key, item in current.items():
                if isinstance(key, bool) or not isinstance(key, (str, int)):
                    raise ValueError(f"{where} must be plain data: {path} has a key {key!r} (keys: str or int)")
                stack.append((item, f"{path}.{key}"))
        elif isinstance(current, (list, tuple)):
            stack.extend((item, f"{path}[{index}]") for index, item in enumerate(current))


def _check_packable(side: str, kwargs: Dict[str, Any]) -> None:
    try:
        msgpack.packb(kwargs, use_bin_type=True, strict_types=False)
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(
            f"{side}_kwargs must be plain data (str, int, float, bool, None, bytes, list, dict): {err}"
        ) from None
    _plain_keys(kwargs, f"{side}_kwargs")


def _check_fits(cls: type, kwargs: Dict[str, Any]) -> None:
    """Bind kwargs to the constructor (and its parents, through ``**kwargs``), each checked against its type.

    Each is checked against the annotation of the parameter that takes it (``{"sites": "many"}`` for an
    int). An adapter whose ``__init__`` takes ``**kwargs`` for ``super().__init__()`` would otherwise accept any
    misspelt name, and the job would fail only when a worker builds the adapter. Types are checked as
    pydantic's strict mode checks a field (``"3"`` is no int: the adapter would get the string; ``1`` fits a
    float), where the annotation can be resolved.

    Raises:
        TypeError: naming what does not fit (the argument, the constructor and what was expected).
    """
    inspect.signature(cls).bind(**kwargs)  # the constructor itself: required arguments, positional rules
    left = dict(kwargs)
    taken = []  # (constructor's class, its __init__, name, value)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        parameters = list(inspect.signature(init).parameters.values())[1:]  # without self
        named = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        taken += [(klass, init, name, value) for name, value in left.items() if name in named]
        left = {name: value for name, value in left.items() if name not in named}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break  # the rest would reach this constructor, which takes no more names
    if left:
        raise TypeError(f"got an unexpected keyword argument {sorted(left)[0]!r} (passed on to a parent constructor)")
    hints: Dict[Any, Dict[str, Any]] = {}
    for klass, init, name, value in taken:
        if init not in hints:
            try:
                hints[init] = typing.get_type_hints(init)
            except Exception:  # noqa: BLE001 - an annotation this process cannot resolve is not checked
                hints[init] = {}
        annotation = hints[init].get(name)
        if annotation is None or annotation is Any:
            continue
        try:
            TypeAdapter(annotation).validate_python(value, strict=True)
        except ValidationError as err:
            problem = err.errors()[0]["msg"] if err.errors() else str(err)
            raise TypeError(
                f"argument {name!r} of {klass.__qualname__}.__init__ must be {_type_name(annotation)}, "
                f"not {value!r} ({problem})"
            ) from None
        except Exception:  # noqa: BLE001, S112 - a type pydantic cannot check (a class of its own): skipped
            continue


def _type_name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def adapter_by_name(side: str, adapter: Any, kwargs: Optional[Dict[str, Any]]) -> Tuple[str, Dict[str, Any]]:
    """A job's side as a registered name and kwargs, from a name (and kwargs) or an adapter instance.

    Raises:
        InvalidJob: an instance of a class that is not registered, or an instance with kwargs.
    """
    if isinstance(adapter, str):
        return adapter, (dict(kwargs) if isinstance(kwargs, dict) else ({} if kwargs is None else kwargs))
    if not isinstance(adapter, Adapter):
        raise InvalidJob(f"invalid job spec: {side} must be a registered adapter name or an Adapter, not {adapter!r}")
    if kwargs:
        raise InvalidJob(f"invalid job spec: {side}_kwargs cannot be given with an adapter instance")
    names = [name for name, cls in registered_adapters().items() if cls is type(adapter)]
    if not names:
        raise InvalidJob(
            f"invalid job spec: {side} adapter class {type(adapter).__qualname__} is not registered "
            "(register_adapter or the shardsync.adapters entry points)"
        )
    found = adapter.get_constructor_kwargs()
    found.pop("internal_storage_engine", None)  # workers use the job's own stores
    return sorted(names)[0], found


class JobSpec(BaseModel):
    """A sync job: make ``target`` match ``source``.

    Adapters are named by their registered names; their constructor kwargs travel in messages and are
    kept with the job, so they must be msgpack-able plain data.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(description="registered name of the source adapter")
    target: str = Field(description="registered name of the target adapter")
    source_kwargs: Dict[str, Any] = Field(default_factory=dict)
    target_kwargs: Dict[str, Any] = Field(default_factory=dict)
    flags: List[str] = Field(default_factory=list, description="DiffSyncFlags by name")
    dry_run: bool = False
    shard_size: Optional[int] = Field(
        None, ge=1, le=10_000_000, description="most operations per shard; None: sized for the live workers' slots"
    )
    batch_size: Optional[Union[StrictInt, Dict[str, StrictInt]]] = Field(
        None, description="most items per batch hook call, for all models or per model name; None: the models'"
    )
    top_level_barrier: bool = True
    diff_range: Optional[int] = Field(
        None, ge=1, le=10_000_000, description="top-level elements per task of the diff; None: SHARDSYNC_DIFF_RANGE"
    )
    keep_stores: Optional[bool] = Field(
        None, description="keep the job's two stores after it ends (for inspection); None: SHARDSYNC_KEEP_STORES"
    )
    delete_limit: Optional[str] = Field(
        None, description="most deletes: a count ('1000'), a share of the target ('50%') or 'none'; None: the setting"
    )
    allow_deletes: bool = Field(False, description="never stopped by the delete guardrail")
    apply_of: Optional[str] = Field(None, description="the id of a plan (a dry run) whose diff this job applies")
    deadline: Optional[int] = Field(
        None, ge=0, description="seconds after submission the job fails if not ended; None: the setting; 0: none"
    )
    retry: Optional[RetrySpec] = Field(
        None, description="how long a hook whose remote says 'try later' is called again; None: adapter, setting"
    )
    limits: Optional[LimitsSpec] = Field(
        None, description="what the target can take (calls in flight, per second); None: the adapter's"
    )
    outage_budget: Optional[float] = Field(
        None, ge=0, le=7 * 86400,
        description="seconds the target may stay unavailable before the job fails; None: SHARDSYNC_OUTAGE_BUDGET",
    )  # fmt: skip
    scope: Optional[ScopeSpec] = Field(
        None, description="only this part of both sides is compared and written; None: everything"
    )
    coalesce: Optional[float] = Field(
        None, gt=0, le=600,
        description="seconds to wait for more requests of the same pair, joined into this job; None: start now",
    )  # fmt: skip
    pair: Optional[str] = Field(
        None, description="name of the incremental pair this job is a run of: its stores and cursors are kept"
    )
    full: bool = Field(False, description="a pair's full reconcile now (both sides loaded whole, all compared)")
    job_id: str = Field(default_factory=_new_job_id)

    @field_validator("job_id", "apply_of")
    @classmethod
    def _job_id(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return None
        if not _JOB_ID.fullmatch(value):
            raise ValueError("job_id must be 1 to 100 letters, digits, '_', '.' or '-'")
        return value

    @field_validator("pair")
    @classmethod
    def _pair(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not _JOB_ID.fullmatch(value):
            raise ValueError("pair must be 1 to 100 letters, digits, '_', '.' or '-'")
        return value

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, value: Any) -> Any:
        return check_batch_size(value)

    @field_validator("delete_limit", mode="before")
    @classmethod
    def _delete_limit(cls, value: Any) -> Any:
        if value is None:
            return None
        return str(parse_delete_limit(value))

    @field_validator("flags")
    @classmethod
    def _flags(cls, value: List[str]) -> List[str]:
        parse_flags(value)
        return sorted({str(name).strip().lower().replace("-", "_") for name in value})

    @field_validator("source", "target")
    @classmethod
    def _registered(cls, value: str) -> str:
        get_adapter(value)  # UnknownAdapter (a LookupError) is not a ValueError: re-raised as such below
        return value

    @model_validator(mode="after")
    def _kwargs(self) -> JobSpec:
        for side, name, kwargs in (
            ("source", self.source, self.source_kwargs),
            ("target", self.target, self.target_kwargs),
        ):
            _check_packable(side, kwargs)
            cls = get_adapter(name)
            if side == "target":
                check_batch_size(self.batch_size, cls)  # a per-model size must name a model of the target
            try:
                _check_fits(cls, kwargs)
            except TypeError as err:
                raise ValueError(f"{side}_kwargs do not fit adapter {name!r} ({cls.__qualname__}): {err}") from None
        if self.scope is not None:
            check_scope(self.scope, get_adapter(self.source), get_adapter(self.target))
        if self.full and self.pair is None:
            raise ValueError("full: only a job of an incremental pair (pair=...) has a full reconcile to ask for")
        if self.pair is not None:
            # A pair's kept stores are its last synced state: a plan, an apply or coalesced scopes would leave
            # them other than the systems after a run, and the next run would trust that.
            for name, value in (("dry_run", self.dry_run), ("apply_of", self.apply_of), ("coalesce", self.coalesce)):
                if value:
                    raise ValueError(f"pair: a job of an incremental pair cannot also be {name} (run it without pair)")
        return self

    @property
    def scope_obj(self) -> Optional[Scope]:
        """The job's scope as ``core.scope.Scope`` (None: everything)."""
        return self.scope.to_scope() if self.scope is not None else None

    @property
    def diffsync_flags(self) -> DiffSyncFlags:
        """The flags as DiffSyncFlags."""
        return parse_flags(self.flags)

    def build_adapter(self, side: str) -> Adapter:
        """Construct one side's adapter from its registered name and kwargs (with an empty store of its own).

        Raises:
            JobFailed: if the adapter's constructor refuses the kwargs.
        """
        name = self.source if side == "source" else self.target
        kwargs = self.source_kwargs if side == "source" else self.target_kwargs
        try:
            return get_adapter(name)(**kwargs)
        except TypeError as err:
            raise JobFailed(f"{side} adapter {name!r} cannot be built from its kwargs: {err}") from err

    def target_identity(self) -> str:
        """What the lock is taken on: the system the target writes to (the same system, the same lock).

        The target adapter's class (every name it is registered under) and what it says names the system:
        its ``target_identity(kwargs)``, else its ``identity_kwargs``, else every kwarg.
        """
        cls = get_adapter(self.target)
        own = cls.target_identity(dict(self.target_kwargs))
        if own is None:
            names = cls.identity_kwargs
            own = self.target_kwargs if names is None else {
                name: value for name, value in self.target_kwargs.items() if name in names
            }  # fmt: skip
        packed = msgpack.packb([f"{cls.__module__}.{cls.__qualname__}", _canonical(own)], use_bin_type=True)
        digest = hashlib.sha256(packed).hexdigest()[:24]
        return f"{cls.__name__}.{digest}"

    def coalesce_key(self) -> str:
        """The sync pair this job is one run of, which coalesced requests share.

        The source and its kwargs, the target's identity, the flags, and whether it is a plan.
        """
        packed = msgpack.packb(
            [self.source, _canonical(self.source_kwargs), self.target_identity(), sorted(self.flags), self.dry_run],
            use_bin_type=True,
        )
        return hashlib.sha256(packed).hexdigest()[:32]

    def pair_identity(self) -> Dict[str, Any]:
        """What an incremental pair syncs (its kept stores hold exactly that): a job of it must say the same."""
        return {
            "source": self.source, "target": self.target, "source_kwargs": _canonical(self.source_kwargs),
            "target_kwargs": _canonical(self.target_kwargs), "flags": sorted(self.flags),
            "scope": self.scope_obj.to_data() if self.scope is not None else None,
        }  # fmt: skip

    def to_message(self) -> Dict[str, Any]:
        """The spec as plain data for a task message."""
        return self.model_dump(mode="python")

    @classmethod
    def from_data(cls, data: Any) -> JobSpec:
        """Validate a spec from plain data.

        Raises:
            InvalidJob: naming every invalid field.
            UnknownAdapter: if an adapter name is not registered.
        """
        if not isinstance(data, dict):
            raise InvalidJob(f"a job spec must be a mapping, not {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'spec'}: {error['msg']}" for error in err.errors()
            )
            raise InvalidJob(f"invalid job spec: {problems}") from None
