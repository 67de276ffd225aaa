"""The contract: OSC messages → commands → engine requests, as docs/osc.md states it.

:mod:`~bridge.contract.protocol` turns a decoded message into a command (pure:
no sockets, no queue, no engine); :mod:`~bridge.contract.requests` turns a
command's options into the engine's request types, refusing what the loaded
model would refuse; :mod:`~bridge.contract.paths` confines client-given input
paths to the configured folders; :mod:`~bridge.contract.engine_api` is the
protocol every engine the bridge is handed must follow (the bridge never imports
torch). May import :mod:`bridge.output`, :mod:`bridge.osc`, the error tree, the
settings and torch-free engine modules (types, errors, validation, presets).
"""
