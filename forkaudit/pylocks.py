"""Python-level locks held at the fork (filled in by the Python-attribution work)."""


def capture(forking, others):
    return None


def audit_child(snapshot):
    return [], []
