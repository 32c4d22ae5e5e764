"""The one base class of problems a user can fix (bad config, data, checkpoint, a diverged run): entry points
print such an error as one line and exit with status 2, instead of a traceback."""


class UserError(Exception):
    """A problem with the user's input or run; the message names it and the fix."""


class ConfigError(UserError, ValueError):
    """A config file or command-line value is wrong; the message names the key and the fix."""


class TrainingError(UserError):
    """A run that cannot go on (e.g. its loss or weights became non-finite); the message says what is kept."""
