"""Kill the process with SIGKILL at a point a test chooses (imported at start-up).

A test puts this folder first on ``PYTHONPATH`` and sets ``MSP_SER_KILL_AT``
to ``module|attribute|match|n|when``. The ``n``-th call of
``module.attribute`` whose arguments contain the text ``match`` (empty: any
call) then kills the process: ``before`` the call, ``after`` it returns, or
``midwrite`` (``torch.save`` only: half of the bytes reach the file, then
the kill — a file cut by a crash). Nothing else changes, so the program
under test is the real one, killed the way a crash or an OOM killer would.
``sigterm`` instead sends the process a ``SIGTERM`` after the call returns and
lets it go on, as a scheduler that pre-empts a job does.
"""

import functools
import importlib
import io
import os
import signal


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _install(spec):
    module_name, attribute, match, count, when = spec.split("|")
    owner = importlib.import_module(module_name)
    *parents, name = attribute.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    original = getattr(owner, name)
    calls = {"seen": 0}

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        if match and match not in repr((args, kwargs)):
            return original(*args, **kwargs)
        calls["seen"] += 1
        if calls["seen"] != int(count):
            return original(*args, **kwargs)
        if when == "before":
            _die()
        if when == "sigterm":
            result = original(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGTERM)
            return result
        if when == "midwrite":
            buffer = io.BytesIO()
            original(args[0], buffer)
            with open(args[1], "wb") as stream:
                stream.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            _die()
        result = original(*args, **kwargs)
        _die()
        return result

    setattr(owner, name, wrapper)


if os.environ.get("MSP_SER_KILL_AT"):
    _install(os.environ["MSP_SER_KILL_AT"])
