"""Sampling: the guided denoising loop, the schedulers a request may name, the circular padding
that makes panoramas wrap, and prompts → CLIP embeddings (with the recent ones kept).

Knows the UNet, the scheduler and the text encoder, nothing of images, files or devices.
May import the public face (``types``, ``errors``, ``presets``) and torch/diffusers; never
:mod:`ldm3d_engine.models` (which uses it) or :mod:`ldm3d_engine.depth` (its neighbour).
"""
