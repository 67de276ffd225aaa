"""The ``ldm3d-bridge`` command: the one place where the bridge and the engine meet.

:mod:`~bridge.cli.main` (serve, send, demo, env and the entry point),
:mod:`~bridge.cli.args` (the argument parser) and :mod:`~bridge.cli.jobs` (the
one-job commands: generate, img2img, upscale, preview, export-mesh), :mod:`~bridge.cli.objects`
(``object``: one text → 3D object). It loads the
engine (lazily, inside the commands that need one) and hands it to the server.
May import every room of the bridge; nothing imports it.
"""
