"""The one family of errors caused by the user's input.

Every problem a user can fix (a bad override, a corpus file that cannot be read,
an audio file that is not audio, a model that is not available offline, an
output folder that cannot be written) is raised as a subclass of
:class:`UserInputError`, where the problem is found, with a message that names
the file, line or key. Each command turns it into one line
``<command>: error: <message>`` at its edge, never a traceback.

Example
-------
>>> class LabelProblem(UserInputError):
...     pass
>>> isinstance(LabelProblem("Labels/x.csv:3: unknown class 'Q'"), UserInputError)
True
"""


class UserInputError(Exception):
    """Base of every error the user's input causes; ``str()`` names what and where."""
