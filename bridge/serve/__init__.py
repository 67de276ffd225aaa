"""The running server: threads, sockets, the queue, and who hears what.

:mod:`~bridge.serve.server` owns the UDP intake and the monitor thread and hands
each command to the queue (:mod:`~bridge.serve.jobs`); :mod:`~bridge.serve.worker`
runs jobs on the engine and the writer thread; :mod:`~bridge.serve.notifier`
sends replies, job notifications and the heartbeat to subscribers;
:mod:`~bridge.serve.limits` (rate limits, log throttling), :mod:`~bridge.contract.access`
(allowlist, token) and :mod:`~bridge.serve.discovery` (zeroconf) serve it;
:mod:`~bridge.serve.pages` is what an operator page sees and does. May
import every room below it: :mod:`bridge.web` (which it starts and feeds with its
events), :mod:`bridge.contract`, :mod:`bridge.output`, :mod:`bridge.render`,
:mod:`bridge.osc`, the error tree and the settings.
"""
