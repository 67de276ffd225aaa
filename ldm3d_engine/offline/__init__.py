"""The built-in offline models: real architectures at tiny sizes with random weights, built from
configs on first use, for rehearsal and tests (no download). ``tiny.py`` builds the LDM3D
stand-ins and owns the build folder (``ensure_tiny``), ``tiny_rgb.py`` the CompVis LDM and DPT
stand-ins, ``configs.py`` what both share.

May import the public face and the model libraries; never any other room of the engine.
Imported only inside functions (``models.loading``, ``environment``): a show with a real model
never loads these builders.
"""
