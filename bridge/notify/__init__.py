"""Who hears what: replies, job notifications and the heartbeat, and the budgets around them.

:mod:`~bridge.notify.notifier` sends to subscribers (per-destination byte budgets, size
bounds); :mod:`~bridge.notify.subscriptions` and :mod:`~bridge.notify.subscribing` are the
subscribers (owners, leases, slots, confirmation); :mod:`~bridge.notify.addresses` resolves
and canonicalises addresses off the intake's thread; :mod:`~bridge.notify.limits` holds the
rate limits, counters and log throttling; :mod:`~bridge.notify.discovery` advertises the
bridge over zeroconf.

May import :mod:`bridge.contract`, :mod:`bridge.output`, :mod:`bridge.osc`, the error tree
and the settings; never :mod:`bridge.workers` or :mod:`bridge.serve` (which use it).
"""
