"""A target adapter that writes to the tests' real HTTP API (``_target_server.py``) with a real client (httpx).

Registered as ``http-target`` (single hooks) and ``http-target-bulk`` (batch hooks: one ``POST /bulk`` per
batch): the demo inventory's models, each write a call to the server. An answer 429, 502, 503 or 504 is
``TransientError`` (with the server's ``Retry-After``), a connection or timeout error is listed in
``transient_errors``: what a hook written against a real API does, so the runner's retries meet a real remote.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote

import httpx

from core import Adapter, DiffSyncModel, TransientError
from worker import register_adapter
from worker.adapters.demo import Device, Interface, Site

TRANSIENT_STATUSES = (429, 502, 503, 504)


def _retry_after(response: httpx.Response) -> Optional[float]:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: not sent by this server


def _key(model: Any) -> str:
    return quote(model.get_unique_id(), safe="")  # unique ids hold "/" (et-0/0/1): one path segment


def _record(model: Any) -> Dict[str, Any]:
    return {"ids": model.get_identifiers(), "attrs": model.get_attrs()}


class _HttpModel(DiffSyncModel):
    """Writes through ``adapter.call``: PUT for a create or an update, DELETE for a delete."""

    @classmethod
    def create(cls, adapter: Any, ids: Dict, attrs: Dict) -> Optional[DiffSyncModel]:
        model = super().create(adapter=adapter, ids=ids, attrs=attrs)
        if model is not None:
            adapter.call("PUT", f"/objects/{cls.get_type()}/{_key(model)}", _record(model))
        return model

    def update(self, attrs: Dict) -> Optional[DiffSyncModel]:
        record = _record(self)
        record["attrs"].update(attrs)
        self.adapter.call("PUT", f"/objects/{self.get_type()}/{_key(self)}", record)
        return super().update(attrs)

    def delete(self) -> Optional[DiffSyncModel]:
        self.adapter.call("DELETE", f"/objects/{self.get_type()}/{_key(self)}")
        return super().delete()


class HttpSite(_HttpModel, Site):
    pass


class HttpDevice(_HttpModel, Device):
    pass


class HttpInterface(_HttpModel, Interface):
    pass


class HttpTarget(Adapter):
    """The demo inventory kept by the HTTP API at ``url``."""

    site = HttpSite
    device = HttpDevice
    interface = HttpInterface
    top_level = ["site"]
    transient_errors = (httpx.TransportError,)
    identity_kwargs = ("url",)  # the API is named by its URL: a timeout of another job is the same system

    def __init__(self, url: str, timeout: float = 10.0, name: Optional[str] = None) -> None:
        super().__init__(name=name)
        self.url = url
        self.client = httpx.Client(base_url=url, timeout=timeout)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One call to the API; "try later" answers raise TransientError, other errors HTTPStatusError."""
        response = self.client.request(method, path, json=body)
        if response.status_code in TRANSIENT_STATUSES:
            raise TransientError(f"{response.status_code} {response.reason_phrase}", retry_after=_retry_after(response))
        response.raise_for_status()
        return response.json()

    def load(self) -> None:
        """Read every object the API keeps, parents first, linking each to its parent."""
        for modelname in ("site", "device", "interface"):
            model_class = getattr(self, modelname)
            for _, record in sorted(self.call("GET", f"/objects/{modelname}").items()):
                model = model_class(**record["ids"], **record["attrs"])
                self.add(model)
                if modelname == "device":
                    self.get("site", model.site).add_child(model)
                elif modelname == "interface":
                    self.get("device", model.device).add_child(model)


class _BulkModel(_HttpModel):
    """Creates and updates in one call for many (``POST /bulk/<type>``); an item deferred by the API
    (its own 503) is that item's TransientError: only it is sent again."""

    @classmethod
    def create_batch(cls, adapter: Any, items: List[Tuple[Dict, Dict]]) -> List[Any]:
        models = [cls(**ids, **attrs) for ids, attrs in items]
        for model in models:
            model.adapter = adapter
        return cls._bulk(adapter, [("put", model) for model in models])

    @classmethod
    def update_batch(cls, adapter: Any, items: List[Tuple[DiffSyncModel, Dict]]) -> List[Any]:
        for model, attrs in items:
            for name, value in attrs.items():
                setattr(model, name, value)
        return cls._bulk(adapter, [("put", model) for model, _ in items])

    @classmethod
    def _bulk(cls, adapter: Any, ops: List[Tuple[str, Any]]) -> List[Any]:
        body = [{"op": op, "id": model.get_unique_id(), "attrs": _record(model)} for op, model in ops]
        answers = adapter.call("POST", f"/bulk/{cls.get_type()}", body)
        return [
            model if answer["status"] == 200 else TransientError(f"{answer['status']} for {model.get_unique_id()}")
            for (_, model), answer in zip(ops, answers, strict=True)
        ]


class BulkSite(_BulkModel, Site):
    pass


class BulkDevice(_BulkModel, Device):
    pass


class BulkInterface(_BulkModel, Interface):
    pass


class BulkHttpTarget(HttpTarget):
    """The same API, written with batch hooks."""

    site = BulkSite
    device = BulkDevice
    interface = BulkInterface


register_adapter("http-target", HttpTarget)
register_adapter("http-target-alias", HttpTarget)  # another name of the same class: the same system
register_adapter("http-target-bulk", BulkHttpTarget)
