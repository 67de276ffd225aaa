"""A WebSocket client from a raw socket that never reads past its handshake (a stalled tab, a script
that never reads): what the bridge sends it waits in the bridge. Shared by the slow-reader tests and
``bench/reliability.py``."""

from __future__ import annotations

import base64
import os
import socket
import time


def handshake(port: int, path: str = "/ws") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def never_reads(port: int, path: str = "/ws", source: str = "127.0.0.1") -> socket.socket:
    """A WebSocket client (from loopback address ``source``) that reads its handshake's answer and
    nothing after it; its receive buffer is 4 KiB, so what the bridge sends it waits in the bridge.
    ConnectionError when the bridge does not upgrade it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(handshake(port, path))
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # byte by byte: not one byte of the frames after it
        byte = s.recv(1)
        if not byte:
            raise ConnectionError(f"closed during the handshake: {head!r}")
        head += byte
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"not upgraded: {head!r}")
    return s


def gone(s: socket.socket, timeout: float) -> bool:
    """Whether the bridge closed ``s`` (read through whatever reached it) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            if not s.recv(1 << 16):
                return True
        except TimeoutError:
            return False
        except OSError:  # reset by the bridge
            return True
    return False
