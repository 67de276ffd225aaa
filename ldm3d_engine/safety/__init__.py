"""The image safety checker every picture passes before it leaves the engine (``checker.py``:
diffusers' StableDiffusionSafetyChecker on square views of the whole picture, its seam too).

May import the public face (``types``, ``errors``) and :mod:`ldm3d_engine.backends` (where the
checker runs); never :mod:`ldm3d_engine.models`, :mod:`ldm3d_engine.sampling` or
:mod:`ldm3d_engine.depth` (its neighbours).
"""
