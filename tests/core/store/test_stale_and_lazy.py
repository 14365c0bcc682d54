"""In-place changes through stale references, and lazy per-uid reads in sessions (used by shard workers)."""

import pytest

from core.exceptions import ObjectAlreadyExists, ObjectNotFound
from core.store.redis import Record, RedisStore, WriteRefused

from ._models import DB, HOST, PORT, SOURCE, TARGET, Network, content, populate


def test_deleting_a_parent_before_its_children_does_not_bring_it_back(backend) -> None:
    """Normal deletion order: the parent is removed, then each child delete updates the removed parent."""
    source = backend.adapter(name="source")
    target = backend.adapter(name="target")
    populate(source, SOURCE)
    populate(target, TARGET)  # "sfo" (two devices) exists only in the target: deleted with its children
    target.sync_from(source)
    reader = backend.reread(target)
    assert reader.get_or_none("site", "sfo") is None
    assert reader.get_or_none("device", "sfo__sfo-r1") is None
    assert not reader.diff_from(backend.reread(source)).has_diffs()


def test_a_changed_stale_reference_is_not_written_back(rbackend) -> None:
    adapter = rbackend.adapter()
    populate(adapter, TARGET)
    adapter.store.flush()
    stale = adapter.get("site", "lon")
    adapter.remove(stale)
    stale.region = "gone"
    adapter.store._after_change(stale, False)  # what the engine does after changing children in place
    adapter.store.flush()
    assert rbackend.reread(adapter).get_or_none("site", "lon") is None
    # An explicit update() still writes: it means "store this object".
    adapter.update(stale)
    adapter.store.flush()
    assert rbackend.reread(adapter).get("site", "lon").region == "gone"


def lazy_adapter(store_id: str) -> Network:
    store = RedisStore(host=HOST, port=PORT, db=DB, store_id=store_id, lazy_reads=True)

    def no_bulk_reads(modelname):
        raise AssertionError(f"a lazy session read all of {modelname}")

    store._load_type = no_bulk_reads  # type: ignore[method-assign]
    return Network(name="lazy", internal_storage_engine=store)


def test_lazy_session_reads_only_what_it_touches(rbackend) -> None:
    loaded = rbackend.adapter()
    populate(loaded, TARGET)
    loaded.store.flush()
    adapter = lazy_adapter(loaded.store.store_id)
    with adapter.store.engine_session():
        site = adapter.get("site", "ams")
        assert adapter.get("site", "ams") is site  # kept for the session
        assert adapter.get_or_none("site", "nowhere") is None
        with pytest.raises(ObjectNotFound):
            adapter.get("device", "nowhere__x")
        device = adapter.get("device", "ams__ams-r3")
        site.remove_child(device)
        adapter.remove(device)
        assert adapter.get_or_none("device", "ams__ams-r3") is None
        new = adapter.device(site_name="ams", name="ams-r9", role="new")
        adapter.add(new)
        site.add_child(new)
        assert adapter.get("device", "ams__ams-r9") is new
        site.region = "emea"
        adapter.update(site)
    reader = rbackend.reread(loaded)
    assert reader.get("site", "ams").devices == ["ams__ams-r1", "ams__ams-r9"]
    assert reader.get("site", "ams").region == "emea"
    assert reader.get_or_none("device", "ams__ams-r3") is None
    assert reader.get("device", "ams__ams-r9").role == "new"


def test_lazy_session_iteration_reads_the_type_once_and_keeps_identities(rbackend) -> None:
    loaded = rbackend.adapter()
    populate(loaded, TARGET)
    loaded.store.flush()
    store = RedisStore(host=HOST, port=PORT, db=DB, store_id=loaded.store.store_id, lazy_reads=True)
    adapter = Network(name="lazy", internal_storage_engine=store)
    with adapter.store.engine_session():
        lon = adapter.get("site", "lon")
        adapter.remove(adapter.get("site", "sfo"))
        every = adapter.get_all("site")
        assert [obj.name for obj in every] == ["ams", "lon"]
        assert every[1] is lon
        assert adapter.get_by_uids(["ams", "lon"], "site")[1] is lon
    assert content(rbackend.reread(adapter))["site"].keys() == {"ams", "lon"}


def test_lazy_sync_equals_bulk_sync(rbackend) -> None:
    results = []
    for lazy in (False, True):
        source = rbackend.adapter(name="source")
        target = rbackend.adapter(name="target")
        populate(source, SOURCE)
        populate(target, TARGET)
        source.store.flush()
        target.store.flush()
        kwargs = {"host": HOST, "port": PORT, "db": DB, "lazy_reads": lazy}
        src = Network(name="s", internal_storage_engine=RedisStore(store_id=source.store.store_id, **kwargs))
        dst = Network(name="t", internal_storage_engine=RedisStore(store_id=target.store.store_id, **kwargs))
        dst.sync_from(src)
        results.append((content(rbackend.reread(target)), dst.calls))
    assert results[0] == results[1]


def test_prefetch_fills_a_lazy_session_in_one_read(rbackend) -> None:
    loaded = rbackend.adapter()
    populate(loaded, TARGET)
    loaded.store.flush()
    adapter = lazy_adapter(loaded.store.store_id)
    store = adapter.store
    reads = []
    store._read_one = lambda modelname, uid: reads.append(uid)  # type: ignore[method-assign]
    with store.engine_session():
        store.prefetch("site", ["ams", "lon", "nowhere", "ams"])
        assert adapter.get("site", "ams").region == "europe"
        assert adapter.get_or_none("site", "nowhere") is None
        assert adapter.get("site", "lon").name == "lon"
    assert reads == []  # every look-up was answered from the prefetch
    store.prefetch("site", ["ams"])  # outside a session: nothing to fill, no error


def test_flush_with_sends_writes_and_the_callers_commands_together(rbackend) -> None:
    adapter = rbackend.adapter()
    populate(adapter, TARGET)
    marker = f"test:marker:{adapter.store.store_id}"
    results = adapter.store.flush_with(lambda pipe: (pipe.set(marker, 1), pipe.incrby(marker, 2)))
    assert results == [True, 3]
    assert content(rbackend.reread(adapter))["site"].keys() == {"ams", "sfo", "lon"}
    # Nothing buffered: only the caller's commands run.
    assert adapter.store.flush_with(lambda pipe: pipe.get(marker)) == [b"3"]
    rbackend.client.delete(marker)


def test_flush_with_reports_conflicts_like_flush(rbackend) -> None:
    first = rbackend.adapter()
    populate(first, {"vlan": {10: {"label": "mgmt"}}})
    first.store.flush()
    second = rbackend.adapter(store_id=first.store.store_id)
    second.add(second.vlan(vid=10, label="other"))
    with pytest.raises(ObjectAlreadyExists):
        second.store.flush_with(lambda pipe: pipe.ping())
    assert rbackend.reread(first).get("vlan", "10").label == "mgmt"


def _record(store, marker, fields, amount=1, guard=("", "")):
    return Record(
        hash_key=f"{marker}:hash",
        fields=fields,
        counter_key=f"{marker}:count",
        amount=amount,
        ttl=60,
        guard_key=guard[0],
        guard_value=guard[1],
    )


def test_flush_recording_writes_objects_and_record_in_one_call(rbackend) -> None:
    adapter = rbackend.adapter()
    populate(adapter, TARGET)
    marker = f"test:record:{adapter.store.store_id}"
    try:
        assert adapter.store.flush_recording(_record(adapter.store, marker, {"op1": b"a", "op2": b"b"}, 2)) == 2
        assert content(rbackend.reread(adapter))["site"].keys() == {"ams", "sfo", "lon"}
        client = rbackend.client
        assert client.hgetall(f"{marker}:hash") == {b"op1": b"a", b"op2": b"b"}
        assert 0 < client.ttl(f"{marker}:hash") <= 60 and 0 < client.ttl(f"{marker}:count") <= 60
        # The same record sent again (its reply was lost) counts once; a new field counts.
        assert adapter.store.flush_recording(_record(adapter.store, marker, {"op1": b"a", "op2": b"b"}, 2)) == 2
        assert adapter.store.flush_recording(_record(adapter.store, marker, {"op3": b"c"})) == 3
        # No field: only the counter (operations skipped under a failed parent).
        assert adapter.store.flush_recording(_record(adapter.store, marker, {}, 4)) == 7
    finally:
        rbackend.client.delete(f"{marker}:hash", f"{marker}:count")


def test_flush_recording_writes_nothing_when_its_guard_changed(rbackend) -> None:
    adapter = rbackend.adapter()
    marker = f"test:record:{adapter.store.store_id}"
    guard = f"{marker}:guard"
    client = rbackend.client
    try:
        client.set(guard, "mine")
        populate(adapter, {"vlan": {10: {"label": "mgmt"}}})
        assert adapter.store.flush_recording(_record(adapter.store, marker, {"op": b"x"}, guard=(guard, "mine"))) == 1
        adapter.add(adapter.vlan(vid=20, label="late"))
        client.set(guard, "another delivery's")
        with pytest.raises(WriteRefused):
            adapter.store.flush_recording(_record(adapter.store, marker, {"late": b"y"}, guard=(guard, "mine")))
        assert set(content(rbackend.reread(adapter))["vlan"]) == {"10"}  # the stale write never lands...
        assert adapter.store.flush_recording(_record(adapter.store, marker, {}, 0)) == 1
        assert set(content(rbackend.reread(adapter))["vlan"]) == {"10"}  # ...not even with a later flush
        assert client.hkeys(f"{marker}:hash") == [b"op"]
        client.delete(guard)  # a guard that expired refuses as well
        with pytest.raises(WriteRefused):
            adapter.store.flush_recording(_record(adapter.store, marker, {"late": b"y"}, guard=(guard, "mine")))
    finally:
        client.delete(f"{marker}:hash", f"{marker}:count", guard)
