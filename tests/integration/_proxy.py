"""A userspace TCP proxy that can stop forwarding without closing anything: a half-open path, made on demand.

What a dead NAT entry or a partition looks like to both ends: the sockets stay open, bytes sent are never
answered, no end of file ever comes.
"""

from __future__ import annotations

import socket
import threading
from typing import List


class FreezingProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream``; ``freeze()`` holds every byte from then on, closing nothing."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.flowing = threading.Event()
        self.flowing.set()
        self.stopped = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: List[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            self._sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        while not self.stopped.is_set():
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            while not self.flowing.wait(0.2):  # frozen: hold the bytes, close nothing
                if self.stopped.is_set():
                    return
            try:
                target.sendall(data)
            except OSError:
                return

    def freeze(self) -> None:
        self.flowing.clear()

    def close(self) -> None:
        self.stopped.set()
        self.flowing.set()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass
