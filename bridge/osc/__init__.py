"""The wire: OSC 1.0 packets as bytes, nothing else.

:mod:`bridge.osc.codec` decodes and encodes datagrams (messages, bundles, the
type tags the contract accepts) and is pure; :mod:`bridge.osc.client` is a small
UDP client for the command line, the tests and the benches. What an address
means is not decided here (that is :mod:`bridge.contract`). May import only the
standard library, python-osc, :mod:`bridge.errors` and :mod:`bridge.settings`.
"""
