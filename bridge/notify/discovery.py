"""zeroconf (mDNS/DNS-SD): advertise the bridge as an ``_osc._udp`` service.

The instance is named after the host ("ldm3d-bridge on stage-pc"), with the
port when it is not 9000 ("ldm3d-bridge on stage-pc :9001"), so two bridges on
one machine never collide. A name already taken by another machine (two
machines with one host name) gets a suffix: python-zeroconf probes for it.
TXT: ``txtvers=1``, ``version``, ``api=/ldm3d``, ``model``: nothing secret.
Closing sends goodbye packets, so browsers drop the service at once.
"""

from __future__ import annotations

import logging
import socket

from zeroconf import InterfaceChoice, IPVersion, ServiceInfo, Zeroconf

from bridge import __version__
from bridge.notify.addresses import interface_addresses

logger = logging.getLogger(__name__)

SERVICE_TYPE = "_osc._udp.local."
#: OSCQuery's service type (the proposal's "_oscjson._tcp"), advertised when the bridge serves HTTP.
OSCQUERY_TYPE = "_oscjson._tcp.local."


def _addresses(host: str) -> list[str]:
    if host not in ("0.0.0.0", "", "::"):
        return [host]
    found = [ip for ip in interface_addresses() if ":" not in ip and not ip.startswith("169.254.")]
    return found or ["127.0.0.1"]


class Advertiser:
    def __init__(
        self, host: str, port: int, model: str, instance: str | None = None, http_port: int | None = None
    ) -> None:
        hostname = socket.gethostname().split(".")[0] or "bridge"
        self.instance = instance or f"ldm3d-bridge on {hostname}" + (f" :{port}" if port != 9000 else "")
        addresses = _addresses(host)
        self.info = ServiceInfo(
            SERVICE_TYPE,
            f"{self.instance}.{SERVICE_TYPE}",
            port=port,
            properties={"txtvers": "1", "version": __version__, "api": "/ldm3d", "model": model},
            server=f"{hostname}.local.",
            parsed_addresses=addresses,
        )
        self.infos = [self.info]
        if http_port is not None:
            self.infos.append(
                ServiceInfo(
                    OSCQUERY_TYPE,
                    f"{self.instance}.{OSCQUERY_TYPE}",
                    port=http_port,
                    properties={"txtvers": "1", "version": __version__, "osc_port": str(port)},
                    server=f"{hostname}.local.",
                    parsed_addresses=addresses,
                )
            )
        interfaces = InterfaceChoice.All if addresses != [host] else [host]
        self._zc: Zeroconf | None = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)

    @property
    def name(self) -> str:
        """The registered service name (after any conflict resolution)."""
        return str(self.info.name)

    def register(self) -> None:
        assert self._zc is not None
        for info in self.infos:
            self._zc.register_service(info, allow_name_change=True)
            logger.info("advertised as %r", info.name)

    def close(self) -> None:
        """Send goodbyes and close the mDNS sockets."""
        zc, self._zc = self._zc, None
        if zc is None:
            return
        try:
            for info in self.infos:
                zc.unregister_service(info)
        finally:
            zc.close()
