"""The watchers of W10, run in their own process so that reading 100 sockets does not
share a core with the server under test.

``python -m turnout._bench.ws_receivers URL WATCHERS FRAMES_PER_ROUND`` opens ``WATCHERS``
WebSocket connections to ``URL`` (loopback only), prints ``ready`` once every handshake is
done, then ``done`` each time the connections together have received another
``FRAMES_PER_ROUND`` frames. It exits when its stdin closes.

The reading is deliberately lean (frame headers are parsed to count frames, payloads are
skipped, no per-frame object is made): it is the same for every server measured, and it
must cost less than the sending it measures.
"""

from __future__ import annotations

import base64
import os
import selectors
import socket
import sys
from urllib.parse import urlsplit

__all__ = ["main"]


class _Watcher:
    """One watcher connection's frame counting: frame headers are read, payloads skipped."""

    __slots__ = ("buffer", "socket")

    def __init__(self, sock: socket.socket, rest: bytes) -> None:
        self.socket = sock
        self.buffer = bytearray(rest)

    def frames_in_buffer(self) -> int:
        buffer = self.buffer
        frames = 0
        at = 0
        size = len(buffer)
        while size - at >= 2:
            length = buffer[at + 1] & 0x7F
            header = 2
            if length == 126:
                header = 4
                if size - at < header:
                    break
                length = int.from_bytes(buffer[at + 2 : at + 4], "big")
            elif length == 127:
                header = 10
                if size - at < header:
                    break
                length = int.from_bytes(buffer[at + 2 : at + 10], "big")
            if size - at < header + length:
                break
            at += header + length
            frames += 1
        del buffer[:at]
        return frames


def _open(url: str) -> _Watcher:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    sock = socket.create_connection((host, port), timeout=30)
    sock.sendall(
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the server closed the connection during the handshake")
        response += chunk
    head, _, rest = response.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status:
        raise ConnectionError(status.decode("latin-1"))
    sock.setblocking(False)
    return _Watcher(sock, rest)


def _run(url: str, count: int, per_round: int) -> None:
    watchers = [_open(url) for _ in range(count)]
    poller = selectors.DefaultSelector()  # epoll on Linux
    for watcher in watchers:
        poller.register(watcher.socket, selectors.EVENT_READ, watcher)
    poller.register(sys.stdin, selectors.EVENT_READ, None)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    received = sum(watcher.frames_in_buffer() for watcher in watchers)
    rounds = 0
    while True:
        for key, _ in poller.select():
            watcher = key.data
            if watcher is None:
                return  # stdin is readable only once the parent closed it: the run is over
            data = watcher.socket.recv(1 << 18)
            if not data:
                poller.unregister(watcher.socket)
                continue
            watcher.buffer += data
            received += watcher.frames_in_buffer()
        while received >= (rounds + 1) * per_round:
            rounds += 1
            out.write("done\n")
            out.flush()


def main() -> None:
    _run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))


if __name__ == "__main__":
    main()
