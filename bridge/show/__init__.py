"""Shows, torch-free: cue files (:mod:`~bridge.show.cues`, pure: TOML text in, a show out) and
the scene library (:mod:`~bridge.show.library`: SQLite, scene folders under ``scenes/``). The
serving side (the show desk) lives in :mod:`bridge.serve.shows`. May import :mod:`bridge.contract`,
:mod:`bridge.output`, :mod:`bridge.osc`, the error tree and the settings.
"""
