"""A small OSC client over UDP: what `ldm3d-bridge send`, the demo and the tests use."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from types import TracebackType

from bridge.osc.codec import Arg, MalformedPacket, Message, decode_packet, encode_message

#: Messages that end a job (an object job ends in ``/ldm3d/object/ready`` rather than ``/ldm3d/ready``).
FINAL = frozenset({"/ldm3d/ready", "/ldm3d/object/ready", "/ldm3d/error", "/ldm3d/cancelled"})


class OscClient:
    """Sends to one bridge and receives its answers on its own (ephemeral) port."""

    def __init__(self, host: str, port: int, *, listen_host: str | None = None, listen_port: int = 0) -> None:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, _, _, _, sockaddr = infos[0]
        self.target = sockaddr
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        any_host = "::" if family == socket.AF_INET6 else "0.0.0.0"
        self.sock.bind((listen_host or any_host, listen_port))
        self._pending: list[Message] = []

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def send(self, address: str, *args: Arg) -> None:
        self.sock.sendto(encode_message(address, *args), self.target)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def receive(self, timeout: float) -> Message | None:
        """The next message, or None after ``timeout`` seconds."""
        if self._pending:
            return self._pending.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                return None
            except ConnectionResetError:
                continue
            try:
                self._pending.extend(decode_packet(data))
            except MalformedPacket:
                continue
            if self._pending:
                return self._pending.pop(0)

    def wait_for(self, addresses: Iterable[str], timeout: float, job_id: str | None = None) -> list[Message]:
        """Every message until one with an address in ``addresses`` (for ``job_id``, if given).

        The last message is the one waited for; TimeoutError if it does not come."""
        wanted = set(addresses)
        seen: list[Message] = []
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(max(0.0, deadline - time.monotonic()))
            if message is None:
                raise TimeoutError(f"no {' or '.join(sorted(wanted))} within {timeout:g} s; got {seen}")
            seen.append(message)
            if message.address in wanted and (job_id is None or (message.args and message.args[0] == job_id)):
                return seen

    def subscribe_self(self, *extra: Arg, timeout: float = 5.0) -> list[Message]:
        """Subscribe this client's own port: its host is then confirmed, and answers come back in
        full (``extra``: e.g. ``"token", secret``). Returns what arrived up to ``/ldm3d/subscribed``."""
        self.send("/ldm3d/subscribe", self.port, *extra)
        return self.wait_for(["/ldm3d/subscribed"], timeout)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> OscClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
