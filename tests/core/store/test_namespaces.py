"""Key namespaces: every key under ``shardsync:{store_id}:``, clear(), TTL, and stale-namespace removal."""

import pytest

from core import keys
from core.store.redis import RedisStore, list_namespaces, remove_namespace, remove_stale_namespaces, server_time

from ._models import DB, HOST, PORT, SOURCE, TARGET, Network, Site, Vlan, content, populate


def _keys(client, pattern="*"):
    return sorted(key.decode() for key in client.scan_iter(match=pattern, count=1000))


def _exercise(adapter, other):
    """Every kind of write: add, update, add_child, remove (with children), a sync, update_or_instantiate."""
    populate(adapter, TARGET)
    populate(other, SOURCE)
    adapter.update(Vlan(vid=10, label="renamed"))
    adapter.remove(adapter.get("site", "sfo"), remove_children=True)
    adapter.update_or_instantiate(Site, {"name": "par"}, {"region": "eu"})
    adapter.sync_from(other)
    adapter.store.flush()
    other.store.flush()


def test_every_key_is_under_the_store_namespace(rbackend, redis_client):
    first, second = rbackend.adapter(), rbackend.adapter()
    _exercise(first, second)
    prefixes = (keys.namespace(first.store.store_id), keys.namespace(second.store.store_id))
    written = _keys(redis_client)
    assert written
    assert all(key.startswith(prefixes) for key in written), written
    assert any(key.startswith(prefixes[0]) for key in written)
    assert any(key.startswith(prefixes[1]) for key in written)
    assert keys.objects_key(first.store.store_id, "interface") in written
    assert keys.order_key(first.store.store_id, "interface") in written


def test_nothing_is_written_outside_the_selected_database(rbackend):
    import redis

    adapter = rbackend.adapter()
    populate(adapter, SOURCE)
    adapter.store.flush()
    db0 = redis.Redis(host=HOST, port=PORT, db=0)
    try:
        assert _keys(db0, f"{keys.namespace(adapter.store.store_id)}*") == []
    finally:
        db0.close()


def test_clear_removes_every_key_of_the_namespace_only(rbackend, redis_client):
    first, second = rbackend.adapter(), rbackend.adapter()
    _exercise(first, second)
    second_keys = _keys(redis_client, f"{keys.namespace(second.store.store_id)}*")
    first.store.clear()
    assert _keys(redis_client, f"{keys.namespace(first.store.store_id)}*") == []
    assert _keys(redis_client, f"{keys.namespace(second.store.store_id)}*") == second_keys
    assert first.count() == 0
    assert first.get_all("site") == []
    # The cleared store is usable again.
    first.add(Vlan(vid=1))
    assert rbackend.reread(first).count() == 1


def test_clear_forgets_buffered_writes(rbackend, redis_client):
    adapter = rbackend.adapter()
    adapter.add(Vlan(vid=1))
    adapter.store.clear()
    assert adapter.count() == 0
    assert _keys(redis_client, f"{keys.namespace(adapter.store.store_id)}obj:*") == []


# ------------------------------------------------------------------------------------------------------------
# TTL
# ------------------------------------------------------------------------------------------------------------

TTL = 1000


def _ttls(client, store_id):
    return {key: client.ttl(key) for key in _keys(client, f"{keys.namespace(store_id)}*")}


def test_ttl_sets_an_expiry_on_every_key(rbackend, redis_client):
    adapter, other = rbackend.adapter(ttl=TTL), rbackend.adapter(ttl=TTL)
    _exercise(adapter, other)
    for store_id in (adapter.store.store_id, other.store.store_id):
        ttls = _ttls(redis_client, store_id)
        assert keys.meta_key(store_id) in ttls
        assert keys.types_key(store_id) in ttls
        assert keys.seq_key(store_id) in ttls
        assert all(0 < ttl <= TTL for ttl in ttls.values()), ttls


def test_without_ttl_keys_do_not_expire(rbackend, redis_client):
    adapter = rbackend.adapter()
    populate(adapter, SOURCE)
    adapter.store.flush()
    ttls = _ttls(redis_client, adapter.store.store_id)
    assert ttls
    assert set(ttls.values()) == {-1}


def test_a_write_renews_the_expiry_of_every_key_of_the_namespace(rbackend, redis_client):
    """Every key expires TTL seconds after the last write, not only the keys of the types last written.

    The time that passed since the first write is simulated by lowering the keys' remaining TTL directly.
    """
    adapter = rbackend.adapter(ttl=TTL)
    store_id = adapter.store.store_id
    populate(adapter, SOURCE)
    adapter.store.flush()
    for key in _ttls(redis_client, store_id):
        redis_client.expire(key, 5)  # as if TTL - 5 seconds had passed
    adapter.add(Vlan(vid=4000))  # a write, to one type only
    adapter.store.flush()
    ttls = _ttls(redis_client, store_id)
    short = {key: ttl for key, ttl in ttls.items() if ttl <= 5}
    assert short == {}, "keys that would expire long before the rest of the namespace"


def test_a_store_without_ttl_on_a_namespace_with_ttl_keeps_keys_expiring(rbackend, redis_client):
    adapter = rbackend.adapter(ttl=TTL)
    populate(adapter, SOURCE)
    adapter.store.flush()
    reader = rbackend.reread(adapter)
    assert content(reader) == content(adapter)
    ttls = _ttls(redis_client, adapter.store.store_id)
    assert all(0 < ttl <= TTL for ttl in ttls.values()), ttls


# ------------------------------------------------------------------------------------------------------------
# list_namespaces / remove_stale_namespaces
# ------------------------------------------------------------------------------------------------------------


def stamp(redis_client, store_id: str, when: float) -> None:
    """Date a namespace's creation and last use back to ``when`` (the store stamps them with Redis's clock)."""
    redis_client.hset(keys.meta_key(store_id), mapping={"created": when, "last_used": when})


def _namespace(rbackend, store_id, spec=SOURCE, **kwargs):
    adapter = rbackend.adapter(store_id=store_id, **kwargs)
    populate(adapter, spec)
    adapter.store.flush()
    return adapter


def test_list_namespaces(rbackend, redis_client):
    _namespace(rbackend, "ns-old")
    stamp(redis_client, "ns-old", 1000.0)
    _namespace(rbackend, "ns-new", ttl=TTL)
    stamp(redis_client, "ns-new", 2000.0)
    opened = server_time(redis_client)
    rbackend.adapter(store_id="ns-old").add(Vlan(vid=1))  # opening alone marks it used, by Redis's clock
    infos = {info.store_id: info for info in list_namespaces(redis_client)}
    assert set(infos) == {"ns-old", "ns-new"}
    assert infos["ns-old"].created == 1000.0
    assert opened <= infos["ns-old"].last_used <= server_time(redis_client)
    assert infos["ns-old"].ttl is None
    assert (infos["ns-new"].created, infos["ns-new"].last_used, infos["ns-new"].ttl) == (2000.0, 2000.0, TTL)
    assert [info.store_id for info in list_namespaces(redis_client)] == ["ns-new", "ns-old"]  # by last use


def test_remove_stale_namespaces_removes_only_stale_ones(rbackend, redis_client):
    _namespace(rbackend, "stale-a")
    _namespace(rbackend, "stale-b", TARGET)
    stamp(redis_client, "stale-a", 1000.0)
    stamp(redis_client, "stale-b", 1000.0)
    fresh = _namespace(rbackend, "fresh")
    stamp(redis_client, "fresh", 5000.0)
    fresh_keys = _keys(redis_client, f"{keys.namespace('fresh')}*")
    redis_client.set("unrelated:key", "stays")

    removed = remove_stale_namespaces(redis_client, older_than=3600, now=5000.0 + 60)
    assert sorted(removed) == ["stale-a", "stale-b"]
    assert _keys(redis_client, f"{keys.namespace('stale-a')}*") == []
    assert _keys(redis_client, f"{keys.namespace('stale-b')}*") == []
    assert _keys(redis_client, f"{keys.namespace('fresh')}*") == fresh_keys
    assert redis_client.get("unrelated:key") == b"stays"
    expected = Network()
    populate(expected, SOURCE)
    assert content(rbackend.reread(fresh)) == content(expected)
    assert remove_stale_namespaces(redis_client, older_than=3600, now=5000.0 + 60) == []
    stamp(redis_client, "fresh", 5000.0)  # reread it above: opened, so used, now
    # Nothing is stale yet at the boundary; everything is once time has moved on.
    assert remove_stale_namespaces(redis_client, older_than=3600, now=5000.0 + 3600) == []
    assert remove_stale_namespaces(redis_client, older_than=3600, now=5000.0 + 3601) == ["fresh"]
    assert _keys(redis_client, "shardsync:*") == []


def test_remove_namespace_returns_the_number_of_keys(rbackend, redis_client):
    adapter = _namespace(rbackend, "counted")
    number = len(_keys(redis_client, f"{keys.namespace('counted')}*"))
    assert remove_namespace(redis_client, "counted") == number
    assert adapter.count() == 0


def test_a_model_named_meta_does_not_break_namespace_housekeeping(rbackend, redis_client):
    """``obj:meta``/``order:meta`` must not be taken for the meta key of a namespace."""

    class Meta(Vlan):
        _modelname = "meta"

    class WithMeta(Network):
        meta = Meta

    adapter = rbackend.adapter(cls=WithMeta, store_id="live")
    adapter.add(Meta(vid=1, label="x"))
    populate(adapter, SOURCE)
    adapter.store.flush()
    stamp(redis_client, "live", 5000.0)
    before = _keys(redis_client)

    assert [info.store_id for info in list_namespaces(redis_client)] == ["live"]
    assert remove_stale_namespaces(redis_client, older_than=3600, now=5000.0 + 60) == []
    assert _keys(redis_client) == before


@pytest.mark.parametrize(
    ("stale", "fresh"),
    [("team", "team-eu"), ("job1", "job10"), ("run.1", "run.10")],
    ids=["dash-prefix", "digit-prefix", "dot-prefix"],
)
def test_removing_a_stale_namespace_leaves_other_namespaces_alone(rbackend, redis_client, stale, fresh):
    """One id that is a prefix of another must not take the other along."""
    _namespace(rbackend, stale)
    stamp(redis_client, stale, 1000.0)
    fresh_adapter = _namespace(rbackend, fresh)
    stamp(redis_client, fresh, 5000.0)
    fresh_keys = _keys(redis_client, f"{keys.namespace(fresh)}*")

    assert remove_stale_namespaces(redis_client, older_than=3600, now=5000.0 + 60) == [stale]
    assert _keys(redis_client, f"{keys.namespace(fresh)}*") == fresh_keys
    assert rbackend.reread(fresh_adapter).count() == fresh_adapter.count()
    assert _keys(redis_client) == fresh_keys  # nothing of the stale namespace is left


@pytest.mark.parametrize("bad", ["team:eu", "job[1]", "run*", "a?c", "x" * 201, "sp ace"])
def test_store_ids_that_could_collide_or_act_as_patterns_are_refused(redis_client, bad):
    """Store ids become key names and SCAN patterns: ':' and glob characters would mix namespaces up."""
    with pytest.raises(ValueError, match="store_id"):
        RedisStore(client=redis_client, store_id=bad)
    with pytest.raises(ValueError, match="store_id"):
        remove_namespace(redis_client, bad)


def test_store_id_is_used_verbatim(redis_client):
    store = RedisStore(host=HOST, port=PORT, db=DB, store_id="given-id")
    try:
        assert store.store_id == "given-id"
        assert redis_client.exists(keys.meta_key("given-id"))
    finally:
        store.client.close()
