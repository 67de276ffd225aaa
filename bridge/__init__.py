"""ldm3d-bridge: the OSC server between TouchDesigner (or any OSC client) and the LDM3D engine.

Knows nothing of torch: it parses, queues, writes and notifies; the engine is
handed in (:class:`bridge.contract.engine_api.EngineLike`).
"""

from __future__ import annotations

__version__ = "0.1.0"
