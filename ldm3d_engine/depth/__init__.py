"""Depth: decoding the VAE's RGB + depth channels into 8-bit RGB and 16-bit depth
(``packing.py``), the DPT depth estimator (``estimator.py``), the 360° path that lets a
perspective estimator see an equirectangular picture (``equirect.py``: planar depth to range, the
views' fit and blend; ``sphere.py``: the views' geometry), and depth jobs (any picture → an RGBD
result, ``jobs.py``).

May import the public face (``types``, ``errors``, ``presets``, ``validation``) and
:mod:`ldm3d_engine.backends` (where the estimator runs); never :mod:`ldm3d_engine.models` or
:mod:`ldm3d_engine.sampling` (its neighbour).
"""
