"""How the job state encodes its values: msgpack of plain data, never pickle."""

from __future__ import annotations

from typing import Any, Optional

import msgpack

_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def pack(value: Any) -> bytes:
    """Encode plain data for the job state (msgpack: never pickle)."""
    return _pack(value)


def unpack(raw: Optional[bytes]) -> Any:
    """Decode a value written with ``pack`` (plain data only); None stays None."""
    if raw is None:
        return None
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)
