"""The folder contract: what lands in the output root, and how.

:mod:`~bridge.output.writer` writes a job's textures and ``meta.json`` into a
staging folder and renames it into place (files appear complete or not at all),
keeps ``latest.json``, retention and start-up clean-up; :mod:`~bridge.output.images`
reads input images and 16-bit depth maps back; :mod:`~bridge.output.job_ids`
names job folders; :mod:`~bridge.output.meshes` writes an object job's
``objects/<job id>/`` (our own ``mesh.obj`` and ``mesh.glb``) the same way. May
import only the error tree, the settings and torch-free engine types; nothing here
knows of OSC.
"""
