"""The demo inventory kept in an SQLite file, with a change log: a system that lists its changes since a cursor.

It persists between jobs, can be changed behind a sync's back, and logs every insert, update and delete
(triggers fill the log, as a change-data-capture feed would).

It is the demo of incremental pairs (``shardsync sync --pair``) and what the tests and the benchmark run them
on: several worker processes read and write the same file. ``make_inventory_db`` fills a file with the demo
inventory (``InventoryAdapter``'s data, a variant of it for a source that differs a little).
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from core import Adapter, DiffSyncModel
from core.scope import Scope
from worker.adapters.demo import Device, Interface, InventoryAdapter, Site

_SCHEMA = """
CREATE TABLE IF NOT EXISTS site (name TEXT PRIMARY KEY, region TEXT, status TEXT);
CREATE TABLE IF NOT EXISTS device (uid TEXT PRIMARY KEY, site TEXT, name TEXT, model TEXT, role TEXT, serial TEXT);
CREATE INDEX IF NOT EXISTS device_site ON device (site);
CREATE TABLE IF NOT EXISTS interface (uid TEXT PRIMARY KEY, device TEXT, name TEXT, description TEXT,
    enabled INTEGER, mtu INTEGER);
CREATE INDEX IF NOT EXISTS interface_device ON interface (device);
CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT, uid TEXT);
"""

_TRIGGERS = "".join(
    f"CREATE TRIGGER IF NOT EXISTS {table}_{event} AFTER {event.upper()} ON {table} BEGIN "
    f"INSERT INTO changes (kind, uid) VALUES ('{table}', {'OLD' if event == 'delete' else 'NEW'}.{key}); END;\n"
    for table, key in (("site", "name"), ("device", "uid"), ("interface", "uid"))
    for event in ("insert", "update", "delete")
)


def connect(path: str) -> sqlite3.Connection:
    """A connection that waits for other writers (several worker processes share the file)."""
    conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")  # a demo: speed over durability
    conn.executescript(_SCHEMA + _TRIGGERS)
    return conn


def make_inventory_db(path: str, sites: int, devices: int = 10, interfaces: int = 19, variant: int = 0,
                      seed: int = 1) -> int:  # fmt: skip
    """Fill an SQLite file with the demo inventory (replacing what it held); returns the objects written.

    The initial rows are not change-logged: they are the state a first (full) run loads.
    """
    Path(path).unlink(missing_ok=True)
    source = InventoryAdapter(sites=sites, devices=devices, interfaces=interfaces, variant=variant, seed=seed)
    source.load()
    conn = connect(path)
    conn.execute("BEGIN")
    sites = [(site.name, site.region, site.status) for site in source.get_all("site")]
    conn.executemany("INSERT INTO site VALUES (?, ?, ?)", sites)
    conn.executemany(
        "INSERT INTO device VALUES (?, ?, ?, ?, ?, ?)",
        [(d.get_unique_id(), d.site, d.name, d.model, d.role, d.serial) for d in source.get_all("device")],
    )
    conn.executemany(
        "INSERT INTO interface VALUES (?, ?, ?, ?, ?, ?)",
        [(i.get_unique_id(), i.device, i.name, i.description, int(i.enabled), i.mtu)
         for i in source.get_all("interface")],
    )  # fmt: skip
    conn.execute("DELETE FROM changes")
    conn.execute("COMMIT")
    conn.close()
    return source.count()


def change_inventory_db(path: str, changes: int, seed: int = 0, mark: str = "edited") -> int:
    """Make about ``changes`` random edits to a file's inventory, as a day in a source of truth; returns how many.

    Interfaces updated (most), created and deleted; devices updated, and some deleted with their interfaces;
    sites created with a device. Every edit is logged (a run of an incremental pair lists them).
    """
    rng = random.Random(seed)
    conn = connect(path)
    conn.execute("BEGIN")
    done = 0
    # Shares of the objects edited; a device deleted takes its interfaces (about 20 objects), a site made has
    # a device (2).
    plan = {("interface", "update"): 0.6, ("interface", "create"): 0.15, ("interface", "delete"): 0.1,
            ("device", "update"): 0.1, ("device", "delete"): 0.03 / 20}  # fmt: skip
    for (table, action), share in plan.items():
        for uid in _pick(conn, table, max(1, round(changes * share)), rng):
            if action == "update":
                column = "description" if table == "interface" else "role"
                conn.execute(f"UPDATE {table} SET {column} = ? WHERE uid = ?", (f"{mark}-{rng.random():.6f}", uid))
            elif action == "create":
                device, name = _parent(uid), f"new-{seed}-{done}"
                row = (f"{device}__{name}", device, name, mark)
                conn.execute("INSERT INTO interface VALUES (?, ?, ?, ?, 1, 1500)", row)
            elif table == "device":
                done += conn.execute("DELETE FROM interface WHERE device = ?", (uid,)).rowcount
                conn.execute("DELETE FROM device WHERE uid = ?", (uid,))
            else:
                conn.execute("DELETE FROM interface WHERE uid = ?", (uid,))
            done += 1
    for number in range(max(1, round(changes * 0.02 / 2))):
        site = f"site-new-{seed}-{number}"
        conn.execute("INSERT OR REPLACE INTO site VALUES (?, 'emea', ?)", (site, mark))
        conn.execute("INSERT OR REPLACE INTO device VALUES (?, ?, 'r1', 'mx', ?, 'SN')", (f"{site}__r1", site, mark))
        done += 2
    conn.execute("COMMIT")
    conn.close()
    return done


def _pick(conn: sqlite3.Connection, table: str, count: int, rng: random.Random) -> List[str]:
    """About ``count`` random rows' ids of a table (rowids drawn at random; the deleted ones' holes skipped)."""
    last = int(conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {table}").fetchone()[0])
    if not last:
        return []
    drawn = rng.sample(range(1, last + 1), min(last, count * 2))
    found: List[str] = []
    for first in range(0, len(drawn), 900):
        chunk = drawn[first : first + 900]
        query = f"SELECT uid FROM {table} WHERE rowid IN ({','.join('?' * len(chunk))})"
        found.extend(row[0] for row in conn.execute(query, chunk))
    return found[:count]


class _Stored:
    """Hooks that write the row to the adapter's file (idempotent: a hook run twice writes the same)."""

    adapter: Any

    @classmethod
    def create(cls, adapter: Adapter, ids: Dict, attrs: Dict) -> Optional[DiffSyncModel]:
        model = super().create(adapter=adapter, ids=ids, attrs=attrs)  # type: ignore[misc]
        if model is not None:
            adapter.write(model)  # type: ignore[attr-defined]
        return model  # type: ignore[no-any-return]

    def update(self, attrs: Dict) -> Optional[DiffSyncModel]:
        model = super().update(attrs)  # type: ignore[misc]
        self.adapter.write(self)
        return model  # type: ignore[no-any-return]

    def delete(self) -> Optional[DiffSyncModel]:
        self.adapter.erase(self)
        return super().delete()  # type: ignore[misc,no-any-return]


class DbSite(_Stored, Site):
    """A site row."""


class DbDevice(_Stored, Device):
    """A device row."""


class DbInterface(_Stored, Interface):
    """An interface row."""


class DbInventoryAdapter(Adapter):
    """The demo inventory in the SQLite file ``path``, with change cursors (``changes=False``: without them)."""

    site = DbSite
    device = DbDevice
    interface = DbInterface
    top_level = ["site"]
    identity_kwargs = ("path",)

    def __init__(self, path: str = "demo.sqlite", changes: bool = True, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.path = path
        self.changes = changes
        self._conn: Optional[sqlite3.Connection] = None

    @property
    def conn(self) -> sqlite3.Connection:
        """The file's connection, opened on first use (a worker that only applies opens it there)."""
        if self._conn is None:
            self._conn = connect(self.path)
        return self._conn

    # -- reads ----------------------------------------------------------------------------------------

    def load(self) -> None:
        """Every row."""
        self._build(self.conn.execute("SELECT * FROM site ORDER BY name"), None, None)

    def load_scoped(self, scope: Scope) -> None:
        """The scope's sites (by id) with everything below them; every site for any other scope."""
        if scope.ids is None or not scope.has_type("site"):
            self.load()
            return
        sites = self._rows("SELECT * FROM site WHERE name IN ({})", list(scope.ids))
        self._build(sites, None, None)

    def changes_cursor(self) -> Any:
        """The change log's last sequence number (None when built with ``changes=False``)."""
        if not self.changes:
            return None
        return int(self.conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0])

    def load_changes(self, since: Any) -> Dict[str, List[str]]:
        """The rows changed since ``since`` with their ancestors; the deleted ones' ids."""
        changed: Dict[str, set] = {"site": set(), "device": set(), "interface": set()}
        for kind, uid in self.conn.execute("SELECT kind, uid FROM changes WHERE seq > ?", (int(since or 0),)):
            changed[kind].add(uid)
        wanted_devices = set(changed["device"]) | {_parent(uid) for uid in changed["interface"]}
        wanted_sites = set(changed["site"]) | {_parent(uid) for uid in wanted_devices}
        sites = self._rows("SELECT * FROM site WHERE name IN ({})", sorted(wanted_sites))
        devices = self._rows("SELECT * FROM device WHERE uid IN ({})", sorted(wanted_devices))
        interfaces = self._rows("SELECT * FROM interface WHERE uid IN ({})", sorted(changed["interface"]))
        present = self._build(sites, devices, interfaces)
        return {kind: sorted(uid for uid in uids if uid not in present[kind]) for kind, uids in changed.items()}

    def _rows(self, query: str, values: List[str]) -> List[Tuple[Any, ...]]:
        rows: List[Tuple[Any, ...]] = []
        for first in range(0, len(values), 900):  # SQLite's limit on bound parameters
            chunk = values[first : first + 900]
            rows.extend(self.conn.execute(query.format(",".join("?" * len(chunk))), chunk).fetchall())
        return rows

    def _build(self, sites: Iterable[Tuple[Any, ...]], devices: Optional[List[Tuple[Any, ...]]],
               interfaces: Optional[List[Tuple[Any, ...]]]) -> Dict[str, set]:  # fmt: skip
        """Add the sites, and the devices and interfaces given (None: all those of the sites) below them."""
        present: Dict[str, set] = {"site": set(), "device": set(), "interface": set()}
        by_name = {}
        for name, region, status in sites:
            site = self.site(name=name, region=region or "", status=status or "active")
            self.add(site)
            by_name[name] = site
            present["site"].add(name)
        if devices is None:
            devices = self._rows("SELECT * FROM device WHERE site IN ({}) ORDER BY uid", list(by_name))
        by_uid = {}
        for uid, site_name, name, model, role, serial in devices:
            parent = by_name.get(site_name)
            if parent is None:
                continue  # its site is gone: it went with it
            device = self.device(site=site_name, name=name, model=model or "", role=role or "", serial=serial or "")
            self.add(device)
            parent.add_child(device)
            by_uid[uid] = device
            present["device"].add(uid)
        if interfaces is None:
            interfaces = self._rows("SELECT * FROM interface WHERE device IN ({}) ORDER BY uid", list(by_uid))
        for uid, device_uid, name, description, enabled, mtu in interfaces:
            parent = by_uid.get(device_uid)
            if parent is None:
                continue
            interface = self.interface(device=device_uid, name=name, description=description or "",
                                       enabled=bool(enabled), mtu=int(mtu))  # fmt: skip
            self.add(interface)
            parent.add_child(interface)
            present["interface"].add(uid)
        return present

    # -- writes (the hooks') --------------------------------------------------------------------------

    def write(self, obj: DiffSyncModel) -> None:
        """Insert or replace the object's row."""
        kind = obj.get_type()
        if kind == "site":
            row: Tuple[Any, ...] = (obj.name, obj.region, obj.status)  # type: ignore[attr-defined]
        elif kind == "device":
            row = (obj.get_unique_id(), obj.site, obj.name, obj.model, obj.role, obj.serial)  # type: ignore[attr-defined]
        else:
            row = (obj.get_unique_id(), obj.device, obj.name, obj.description, int(obj.enabled), obj.mtu)  # type: ignore[attr-defined]
        self.conn.execute(f"INSERT OR REPLACE INTO {kind} VALUES ({','.join('?' * len(row))})", row)

    def erase(self, obj: DiffSyncModel) -> None:
        """Delete the object's row and those below it (a delete of what is gone does nothing)."""
        kind, uid = obj.get_type(), obj.get_unique_id()
        conn = self.conn
        if kind == "site":
            conn.execute("DELETE FROM interface WHERE device IN (SELECT uid FROM device WHERE site = ?)", (uid,))
            conn.execute("DELETE FROM device WHERE site = ?", (uid,))
            conn.execute("DELETE FROM site WHERE name = ?", (uid,))
        elif kind == "device":
            conn.execute("DELETE FROM interface WHERE device = ?", (uid,))
            conn.execute("DELETE FROM device WHERE uid = ?", (uid,))
        else:
            conn.execute("DELETE FROM interface WHERE uid = ?", (uid,))


def _parent(uid: str) -> str:
    """The parent's unique id: a device's or an interface's id is its parent's id, ``__``, its name."""
    return uid.rsplit("__", 1)[0]


def db_state(path: str) -> Dict[str, Dict[str, Tuple[Any, ...]]]:
    """Every row of the file by table and id (tests and the benchmark compare two systems with it)."""
    conn = connect(path)
    try:
        return {
            "site": {row[0]: tuple(row) for row in conn.execute("SELECT * FROM site")},
            "device": {row[0]: tuple(row[1:]) for row in conn.execute("SELECT * FROM device")},
            "interface": {row[0]: tuple(row[1:]) for row in conn.execute("SELECT * FROM interface")},
        }
    finally:
        conn.close()
