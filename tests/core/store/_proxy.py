"""A TCP proxy in front of Redis that the tests can cut, to drop a store's connection for real.

``refuse()`` drops every open connection and closes any new one at once (the server "went away");
``cut_after(marker)`` lets the next request containing ``marker`` reach Redis, then swallows the reply and
drops the connection (the connection died while the command was in flight); ``freeze()`` holds every byte from
then on and closes nothing (a half-open path: a dead NAT entry, a partition); ``restore()`` lets traffic through
again.  Threads only block on sockets (or on a frozen path), and everything is closed by ``close()``.
"""

import socket
import threading


class Proxy:
    def __init__(self, host, port):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs = []
        self._threads = []
        self._refusing = False
        self._cut_marker = None
        self._swallowing = set()
        self.cut_done = threading.Event()
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    # -- control -------------------------------------------------------------------------------------------

    def refuse(self):
        with self._lock:
            self._refusing = True
        self._drop_all()

    def restore(self):
        with self._lock:
            self._refusing = False
            self._cut_marker = None
        self._flowing.set()

    def freeze(self):
        self._flowing.clear()

    def cut_after(self, marker: bytes):
        with self._lock:
            self._cut_marker = marker
            self.cut_done.clear()

    def close(self):
        self._closed = True
        self._flowing.set()
        _close(self.listener)  # shutdown() wakes the blocked accept() up
        self._drop_all()
        for thread in [self._accepter, *self._threads]:
            thread.join(timeout=10)

    # -- plumbing ------------------------------------------------------------------------------------------

    def _drop_all(self):
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                _close(sock)

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
            if refusing:
                _close(client)
                continue
            server = socket.create_connection(self.target)
            pair = (client, server)
            with self._lock:
                self._pairs.append(pair)
            for args in ((client, server, pair, True), (server, client, pair, False)):
                thread = threading.Thread(target=self._pump, args=args, daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, src, dst, pair, upstream):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            if upstream:
                with self._lock:
                    marker = self._cut_marker
                    if marker is not None and marker in data:
                        self._swallowing.add(id(pair))
                        self._cut_marker = None
            elif id(pair) in self._swallowing:
                # The reply to the cut request: Redis has run the command; the client never learns the result.
                with self._lock:
                    self._refusing = True
                    self._swallowing.discard(id(pair))
                self.cut_done.set()
                self._drop_all()
                break
            while not self._flowing.wait(0.2):  # frozen: hold the bytes, close nothing
                if self._closed:
                    break
            try:
                dst.sendall(data)
            except OSError:
                break
        _close(src)
        _close(dst)


def _close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
