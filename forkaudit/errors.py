"""The exceptions and warnings forkaudit raises."""


class ForkHazardWarning(RuntimeWarning):
    """A fork left locks held by threads that do not exist in the child."""


class ForkHazardError(RuntimeError):
    """Raised by os.fork() under the 'raise' policy, before forking.

    ``event`` is the report (a dict in the JSON report format) that made
    forkaudit refuse the fork.
    """

    def __init__(self, message, event=None):
        super().__init__(message)
        self.event = event


class SettingsError(ValueError):
    """A forkaudit setting (argument or environment variable) has a bad value."""
