"""The running server: its life cycle and what it does with each command.

:mod:`~bridge.serve.server` starts and stops everything (the UDP intake, the monitor
thread, the HTTP side, zeroconf) and hands the engine factory to the worker pool;
:mod:`~bridge.serve.intake` reads datagrams (allowlist, token, rate limits) and
:mod:`~bridge.serve.commands` carries each command out; :mod:`~bridge.serve.shows` is the
show desk (cues, the scene library, auto-follow); :mod:`~bridge.serve.pages` is what an
operator page sees and does; :mod:`~bridge.serve.stage` is the world on the dome.

May import every room below it: :mod:`bridge.workers` (the queue and the pool it feeds),
:mod:`bridge.notify` (who hears what), :mod:`bridge.web` (which it starts and feeds with its
events), :mod:`bridge.show`, :mod:`bridge.contract`, :mod:`bridge.output`,
:mod:`bridge.render`, :mod:`bridge.osc`, the error tree and the settings.
"""
