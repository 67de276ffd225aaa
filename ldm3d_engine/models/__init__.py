"""The engines, one module per model family, and how a folder becomes one.

``ldm3d.py`` (Intel's LDM3D: text, image-to-image, LDM3D-SR upscaling), ``compvis.py`` (the
RGB-only CompVis LDMs, whose depth is estimated), ``base.py`` (what every engine shares),
``loading.py`` (presets, the Hugging Face cache, local folders → a folder on disk) and
``build.py`` (that folder → an engine on its device).

May import the public face (``types``, ``errors``, ``presets``, ``validation``, ``version``),
:mod:`ldm3d_engine.sampling`, :mod:`ldm3d_engine.depth` and :mod:`ldm3d_engine.backends`;
:mod:`ldm3d_engine.offline` only inside a function (a real model never loads the builders).
Imported only by the package's own entry points (``load_engine``, ``load_depth_only``).
"""
