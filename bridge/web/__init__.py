"""The bridge's HTTP side: OSCQuery (namespace, HOST_INFO, LISTEN over a WebSocket) and the
operator's web page.

:mod:`~bridge.web.oscquery` builds the namespace of the contract as JSON (pure);
:mod:`~bridge.web.http` serves it with aiohttp on its own thread and event loop,
so it never delays the OSC intake; :mod:`~bridge.web.page` serves the page
(``static/``), its JSON WebSocket and the textures :mod:`~bridge.web.textures`
makes for browsers; both WebSocket streams send through :mod:`~bridge.web.outbox` (a
client that does not read misses messages). It knows nothing of the server that owns it: it is handed the
namespace, a function that returns the current values and the page's backend, and
receives events through :meth:`~bridge.web.http.WebServer.publish`, the same
stream the notifier sends to OSC subscribers. May import :mod:`bridge.contract`,
:mod:`bridge.output` (to read a job's textures), :mod:`bridge.osc`, the error tree
and the settings.
"""
