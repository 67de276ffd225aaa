"""The reference renderer: a job's world seen without TouchDesigner.

:mod:`~bridge.render.sphere` builds the UV grid, ``glsl/`` holds the one
displacement definition the TouchDesigner shaders include too,
:mod:`~bridge.render.preview` draws it headless (OpenGL 3.3 through EGL; the
``[preview]`` extra) and :mod:`~bridge.render.mesh` exports it as a textured mesh
(the ``[mesh]`` extra). Optional libraries are imported inside functions. May
import only the error tree and the settings; nothing here knows of OSC or jobs.
"""
