"""Text → 3D objects: the object models behind :class:`ldm3d_engine.object_types.ObjectEngineLike`.

LN3Diff (``ln3diff.py``: the engine) written for this project from the facts of its source
(docs/objects.md): ``ln3diff_config.py`` (the architecture's sizes, real and tiny), ``layers.py``
(attention, MLP, adaLN, positional tables), ``dit.py`` (the DiT denoiser over the rolled-out
triplane latent), ``triplane_decoder.py`` + ``conv_decoder.py`` (latent → triplane), ``renderer.py``
(the OSG MLP: triplane → density and colour), ``edm.py`` (the EDM Euler sampler with guidance:
pure maths), ``meshing.py`` (marching cubes, vertex colours, the object's frame), ``keymap.py``
(the official checkpoint's key names ⇄ ours, checked strictly), ``loading.py`` (hub ids, the HF
cache, local files, offline errors) and ``tiny.py`` (``tiny-ln3diff``: random weights, built offline).
Shap-E (``shap_e.py``: the engine, on diffusers' ``ShapEPipeline`` parts; ``shap_e_files.py``: hub
id, cache, folders; ``shap_e_mesh.py``: the object's frame, winding and colours).

May import the public face (``types``, ``errors``, ``object_types``), :mod:`ldm3d_engine.sampling`
(the CLIP prompt encoder) and :mod:`ldm3d_engine.backends` (devices) and torch/transformers;
:mod:`ldm3d_engine.offline` only inside a function; never :mod:`ldm3d_engine.models` (its
neighbour). Imported only by the package's entry point (``load_object_engine``).
"""
