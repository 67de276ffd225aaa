"""Backends: the explicit device and dtype choice (``devices.py``: CUDA, MPS, CPU, Gaudi's HPU),
the per-backend hooks around the sampling loop (``runtime.py``) and Intel Gaudi's
(``gaudi.py``, imported only when ``hpu`` is asked for). Another runtime (OpenVINO) goes here.

May import the public face (``types``, ``errors``, ``presets``) and torch; nothing else of the
engine.
"""
