# Callbacks DAT of the OSC In DAT `oscin`: hands every message to the extension.


def onReceiveOSC(dat, rowIndex, message, byteData, timeStamp, address, args, peer):
    parent().ext.Ldm3dExt.OnOsc(address, args)  # noqa: F821 - a TouchDesigner global
    return
