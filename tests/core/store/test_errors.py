"""Connection errors, bad arguments, and failed writes: clear exceptions, no secrets, no half-written batch."""

import traceback
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core import DiffSyncModel, keys
from core.exceptions import ObjectAlreadyExists, ObjectStoreException
from core.store.redis import RedisStore

from ._models import DB, HOST, PORT, SOURCE, TARGET, Device, Network, Site, Vlan, content, populate
from ._proxy import Proxy

DEAD_PORT = 1  # nothing listens there


def _full_text(exc):
    return "".join(traceback.format_exception(exc))


def test_unreachable_host_names_host_and_port():
    with pytest.raises(ObjectStoreException) as info:
        RedisStore(host="127.0.0.1", port=DEAD_PORT, store_id="unreachable")
    assert f"127.0.0.1:{DEAD_PORT}" in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": f"redis://:s3cret@127.0.0.1:{DEAD_PORT}/0"},
        {"url": f"redis://admin:s3cret@127.0.0.1:{DEAD_PORT}/3"},
        {"host": "127.0.0.1", "port": DEAD_PORT, "password": "s3cret"},
    ],
    ids=["url-password", "url-user-password", "password-argument"],
)
def test_unreachable_server_message_never_shows_the_password(kwargs):
    with pytest.raises(ObjectStoreException) as info:
        RedisStore(store_id="unreachable", **kwargs)
    assert f"127.0.0.1:{DEAD_PORT}" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert "s3cret" not in repr(info.value)
    assert "s3cret" not in _full_text(info.value)


def test_errors_of_a_store_opened_with_a_password_never_show_it(redis_client):
    """The test server has no password and accepts any: the store opens; its later errors hide the password."""
    store = RedisStore(url=f"redis://:s3cret@{HOST}:{PORT}/{DB}", store_id="auth")
    try:
        adapter = Network(internal_storage_engine=store)
        redis_client.set(keys.objects_key("auth", "vlan"), "not a hash")
        with pytest.raises(ObjectStoreException) as info:
            adapter.get("vlan", "1")
        assert f"{HOST}:{PORT}" in str(info.value)
        assert "s3cret" not in _full_text(info.value)
        assert "s3cret" not in str(store)
        assert "s3cret" not in repr(store)
    finally:
        store.client.close()


def test_url_and_host_together_is_a_value_error():
    with pytest.raises(ValueError):
        RedisStore(url=f"redis://{HOST}:{PORT}/{DB}", host=HOST)


def test_batch_size_below_one_is_a_value_error(redis_client):
    with pytest.raises(ValueError):
        RedisStore(host=HOST, port=PORT, db=DB, batch_size=0)


def test_no_server_given_is_an_object_store_exception():
    with pytest.raises(ObjectStoreException):
        RedisStore()


def test_url_selects_the_database(redis_client):
    store = RedisStore(url=f"redis://{HOST}:{PORT}/{DB}", store_id="by-url")
    try:
        adapter = Network(internal_storage_engine=store)
        adapter.add(Vlan(vid=1))
        adapter.store.flush()
        assert redis_client.hlen(keys.objects_key("by-url", "vlan")) == 1
    finally:
        store.client.close()


def test_an_existing_client_can_be_passed(redis_client):
    store = RedisStore(client=redis_client, store_id="by-client")
    adapter = Network(internal_storage_engine=store)
    adapter.add(Vlan(vid=1))
    assert adapter.count() == 1
    assert redis_client.hlen(keys.objects_key("by-client", "vlan")) == 1


# ------------------------------------------------------------------------------------------------------------
# A flush is one atomic script call
# ------------------------------------------------------------------------------------------------------------


def _batch(adapter):
    """Several objects of several types, linked as children: one buffered batch."""
    site = Site(name="ams")
    adapter.add(site)
    for index in range(5):
        device = Device(site_name="ams", name=f"r{index}")
        adapter.add(device)
        site.add_child(device)
    for vid in range(20):
        adapter.add(Vlan(vid=vid))


def _stored_counts(client, store_id):
    return {name: client.hlen(keys.objects_key(store_id, name)) for name in ("site", "device", "vlan")}


def test_a_flush_sends_the_whole_batch_in_one_script_call(rbackend, redis_client):
    adapter = rbackend.adapter()
    store = adapter.store
    calls = []
    original = store._write_batch

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    store._write_batch = counting
    _batch(adapter)
    assert _stored_counts(redis_client, store.store_id) == {"site": 0, "device": 0, "vlan": 0}  # still buffered
    store.flush()
    assert len(calls) == 1
    assert _stored_counts(redis_client, store.store_id) == {"site": 1, "device": 5, "vlan": 20}
    assert redis_client.zcard(keys.order_key(store.store_id, "vlan")) == 20
    assert rbackend.reread(adapter).get("site", "ams").devices == [f"ams__r{index}" for index in range(5)]


@pytest.mark.parametrize("error", [redis.ConnectionError("Connection reset by peer"), redis.TimeoutError("timeout")])
def test_a_failed_script_call_raises_and_writes_nothing(rbackend, redis_client, error):
    adapter = rbackend.adapter()
    adapter.add(Vlan(vid=999, label="before"))
    adapter.store.flush()
    store = adapter.store

    def failing(*args, **kwargs):
        raise error

    store._write_batch = failing
    _batch(adapter)
    with pytest.raises(ObjectStoreException) as info:
        store.flush()
    assert f"{HOST}:{PORT}" in str(info.value)
    assert _stored_counts(redis_client, store.store_id) == {"site": 0, "device": 0, "vlan": 1}
    fresh = Network(internal_storage_engine=RedisStore(client=redis_client, store_id=store.store_id))
    assert content(fresh) == {"vlan": {"999": {"vid": 999, "label": "before"}}}


@pytest.fixture
def proxy():
    result = Proxy(HOST, PORT)
    yield result
    result.close()


def _store_through(proxy, store_id=None):
    """A store whose connection goes through the proxy; redis-py's own retries are off to fail at once."""
    client = redis.Redis(host="127.0.0.1", port=proxy.port, db=DB, retry=Retry(NoBackoff(), 0))
    return Network(internal_storage_engine=RedisStore(client=client, store_id=store_id or f"proxied-{proxy.port}"))


def test_a_connection_lost_before_the_flush_writes_nothing_and_keeps_the_batch(proxy, redis_client):
    adapter = _store_through(proxy)
    store_id = adapter.store.store_id
    try:
        adapter.add(Vlan(vid=999))
        adapter.store.flush()  # the script is loaded and the connection is up
        _batch(adapter)
        proxy.refuse()
        with pytest.raises(ObjectStoreException) as info:
            adapter.store.flush()
        assert f"127.0.0.1:{proxy.port}" in str(info.value)
        assert _stored_counts(redis_client, store_id) == {"site": 0, "device": 0, "vlan": 1}

        # The batch was kept: once the server is back, the next flush writes all of it, once.
        proxy.restore()
        adapter.store.flush()
        assert _stored_counts(redis_client, store_id) == {"site": 1, "device": 5, "vlan": 21}
        order = redis_client.zrange(keys.order_key(store_id, "vlan"), 0, -1)
        assert order == [b"999"] + [str(vid).encode() for vid in range(20)]
    finally:
        adapter.store.client.close()


def test_a_connection_lost_while_the_flush_is_in_flight_leaves_all_or_nothing(proxy, redis_client):
    adapter = _store_through(proxy)
    store_id = adapter.store.store_id
    try:
        adapter.add(Vlan(vid=999))
        adapter.store.flush()
        _batch(adapter)
        proxy.cut_after(b"EVALSHA")
        with pytest.raises(ObjectStoreException):
            adapter.store.flush()
        assert proxy.cut_done.is_set()
        counts = _stored_counts(redis_client, store_id)
        assert counts in ({"site": 0, "device": 0, "vlan": 1}, {"site": 1, "device": 5, "vlan": 21})
        # The script did run before the reply was lost: everything is there, in order.
        assert counts == {"site": 1, "device": 5, "vlan": 21}

        # Sending the kept batch again is harmless: no conflict with its own records, nothing duplicated.
        proxy.restore()
        adapter.store.flush()
        fresh = Network(internal_storage_engine=RedisStore(client=redis_client, store_id=store_id))
        assert [obj.vid for obj in fresh.get_all("vlan")] == [999, *range(20)]
        assert fresh.get("site", "ams").devices == [f"ams__r{index}" for index in range(5)]
        assert fresh.count() == 27
    finally:
        adapter.store.client.close()


def test_a_script_error_part_way_leaves_no_half_written_batch(rbackend, redis_client):
    """A command failing inside the script (here: a key of the wrong type) must not leave part of the batch.

    Redis does not roll a script back when one of its commands fails: whatever it wrote before stays.
    """
    adapter = rbackend.adapter()
    store_id = adapter.store.store_id
    redis_client.set(keys.order_key(store_id, "vlan"), "not a zset")
    _batch(adapter)
    with pytest.raises(ObjectStoreException):
        adapter.store.flush()
    assert _stored_counts(redis_client, store_id) == {"site": 0, "device": 0, "vlan": 0}
    assert redis_client.zcard(keys.order_key(store_id, "site")) == 0


def test_an_object_that_cannot_be_encoded_raises_object_store_exception(rbackend, redis_client):
    """A value the record format cannot hold is reported naming the object; the other writes are kept."""

    class Opaque(DiffSyncModel):
        _modelname = "opaque"
        _identifiers = ("name",)
        _attributes = ("blob",)

        name: str
        blob: Any = None

    class WithOpaque(Network):
        opaque = Opaque

    adapter = rbackend.adapter(cls=WithOpaque)
    adapter.add(Vlan(vid=1))
    adapter.add(Opaque(name="x", blob=object()))
    with pytest.raises(ObjectStoreException) as info:
        adapter.store.flush()
    assert "opaque" in str(info.value) and "x" in str(info.value)
    adapter.store.flush()
    assert rbackend.reread(adapter).count("vlan") == 1


# ------------------------------------------------------------------------------------------------------------
# A failed flush at the start of a diff or sync
# ------------------------------------------------------------------------------------------------------------


def _fresh_content(redis_client, store_id):
    """What another process reads now (the writer is not asked to flush anything)."""
    return content(Network(internal_storage_engine=RedisStore(client=redis_client, store_id=store_id)))


def test_sync_results_are_in_redis_when_sync_from_returns(rbackend, redis_client):
    source, target = rbackend.adapter(), rbackend.adapter()
    populate(source, SOURCE)
    populate(target, TARGET)
    target.sync_from(source)
    assert _fresh_content(redis_client, target.store.store_id) == content(source)


def test_the_store_recovers_after_a_conflict_at_the_start_of_a_diff(rbackend, redis_client):
    source, target = rbackend.adapter(), rbackend.adapter()
    store_id = target.store.store_id
    populate(source, SOURCE)
    other = rbackend.adapter(store_id=store_id)  # another writer got vlan 10 in first
    other.add(Vlan(vid=10, label="other"))
    other.store.flush()
    populate(target, TARGET)  # buffered, vlan 10 included
    with pytest.raises(ObjectAlreadyExists):
        target.diff_from(source)  # the diff's first read sends the buffer: conflict

    target.sync_from(source)  # the user goes on
    assert content(target) == content(source)
    assert _fresh_content(redis_client, store_id) == content(source)


def test_the_store_recovers_after_a_connection_failure_at_the_start_of_a_sync(proxy, rbackend, redis_client):
    source = rbackend.adapter()
    populate(source, SOURCE)
    target = _store_through(proxy)
    store_id = target.store.store_id
    try:
        target.add(Vlan(vid=999))
        target.store.flush()
        populate(target, TARGET)  # buffered
        proxy.refuse()
        with pytest.raises(ObjectStoreException):
            target.sync_from(source)
        proxy.restore()

        target.sync_from(source)
        assert content(target) == content(source)
        assert _fresh_content(redis_client, store_id) == content(source)
    finally:
        target.store.client.close()
