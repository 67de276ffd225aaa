"""Errors of the bridge, each with the stable code sent in ``/ldm3d/error``.

::

    BridgeError                       code (see docs/osc.md)
    ├── ProtocolError                 a message the contract does not allow
    │   ├── UnknownAddress            unknown_address
    │   ├── BadArguments              bad_arguments
    │   └── NotSupported              not_supported (/ldm3d/upscale without upscale_model,
    │                                 /ldm3d/img2img without input_dirs)
    ├── UnknownJob                    unknown_job
    ├── QueueFull                     queue_full
    ├── TooManySubscribers            too_many_subscribers (in all, or on one host)
    ├── NotOwner                      not_owner (unsubscribing another host's subscription)
    ├── WrongModel                    wrong_model
    ├── RateLimited                   rate_limited (a client sends jobs faster than allowed)
    ├── Unauthorized                  unauthorized (the shared token is missing or wrong)
    ├── WriteFailed                   write_failed (output folder unwritable, disk full)
    ├── BadShow                       bad_show (a cue file with a mistake; the message has its line)
    ├── NoShow                        no_show (a cue command before /ldm3d/show/load)
    ├── UnknownCue                    unknown_cue
    ├── LibraryBusy                   library_busy (another process holds the scene library past
    │                                 a quarter second; try again)
    ├── EngineDown                    engine_failed (a job while no worker is alive: all restarting)
    ├── RefusedPrompt                 refused_prompt (the installation's prompt rules refuse it)
    ├── BadRules                      bad_rules (a prompt rules file that cannot be read; at a
    │                                 reload the previous rules stay)
    ├── FolderInUse                   (start-up only) another bridge holds the output folder
    └── OutputParentMissing           (start-up only) the output folder's parent does not exist (a typo?)

Engine failures reach clients as ``engine_failed``, ``out_of_memory``,
``timeout``, ``model_failed`` (the model could not be loaded) or
``bad_arguments`` (a request the model refuses); see :mod:`bridge.workers.worker`.
Packets that are not OSC get ``malformed_packet``, and a failure inside the
bridge's own handling ``internal_error`` (logged, at most once per kind per 10 s;
the intake carries on). A reply that would be too large for a sender whose
address is not confirmed becomes ``reply_too_large`` (docs/osc.md, "Floods and limits").
"""

from __future__ import annotations


class BridgeError(Exception):
    code = "bridge_error"


class ProtocolError(BridgeError):
    code = "bad_arguments"


class UnknownAddress(ProtocolError):
    code = "unknown_address"


class BadArguments(ProtocolError):
    code = "bad_arguments"


class NotSupported(ProtocolError):
    code = "not_supported"


class UnknownJob(BridgeError):
    code = "unknown_job"


class QueueFull(BridgeError):
    code = "queue_full"


class TooManySubscribers(BridgeError):
    code = "too_many_subscribers"


class NotOwner(BridgeError):
    code = "not_owner"


class WrongModel(BridgeError):
    code = "wrong_model"


class RateLimited(BridgeError):
    code = "rate_limited"


class Unauthorized(BridgeError):
    code = "unauthorized"


class WriteFailed(BridgeError):
    code = "write_failed"


class BadShow(BridgeError):
    """A cue file that cannot be read or has mistakes: ``mistakes`` holds every one, each a
    ``file:line: message`` line; the message is those lines joined by newlines."""

    code = "bad_show"

    def __init__(self, *mistakes: str) -> None:
        super().__init__("\n".join(mistakes))
        self.mistakes: tuple[str, ...] = mistakes


class NoShow(BridgeError):
    code = "no_show"


class UnknownCue(BridgeError):
    code = "unknown_cue"


class LibraryBusy(BridgeError):
    """Another process holds the scene library's database (``scenes.sqlite``) longer than the
    show desk waits (:data:`bridge.show.library.WAIT_S`); the message names the file."""

    code = "library_busy"


class EngineDown(BridgeError):
    """No worker is alive now (every one is being restarted)."""

    code = "engine_failed"


class RefusedPrompt(BridgeError):
    """The prompt rules refuse a prompt. The message is for the public: it never repeats the
    word or pattern that matched (the operator's log names the rule)."""

    code = "refused_prompt"


class BadRules(BridgeError):
    """A prompt rules file that cannot be read or has a mistake; the message names the file and the line."""

    code = "bad_rules"


class FolderInUse(BridgeError):
    """Another bridge holds the output folder's lock; the message names it (pid, host)."""

    code = "folder_in_use"


class OutputParentMissing(BridgeError):
    """The output folder does not exist and neither does its parent: most likely a typo in the
    path, so nothing is created (the folder itself is, when only it is missing)."""

    code = "folder_missing"
