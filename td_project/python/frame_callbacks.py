# Execute DAT `frame`: once per frame, let the extension notice loaded textures and fade.


def onFrameStart(frame):
    parent().ext.Ldm3dExt.OnFrame()  # noqa: F821 - a TouchDesigner global
    return
