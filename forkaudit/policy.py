"""What happens with a finished child record: the policies warn, record, abort, abort-now (and
raise's child side).

'abort' acts on facts: a hazard found at the fork is a prediction, so the child goes on
(its record is written), and the stuck-fork watchdog (watchdog.py) ends it with status 86
if it actually blocks on an inherited lock. Where the watchdog is not watching (off, or
unavailable), 'abort' reports like 'warn' and lets the child run. 'abort-now' ends a child
with a predicted hazard at the fork (the behaviour 'abort' had before the watchdog)."""
import os

from . import render, sink
from .settings import ABORT_STATUS


def deliver(event, settings, watched=False):
    """Write the record where the settings say; under 'abort-now', end a hazardous child.

    watched: the watchdog watches this child's inherited held locks (under 'abort' it
    reports and ends the child if it blocks on one, so nothing is printed now).

    Printed and acted on: the record's hazards. Locks held at the fork that nothing in the
    child can reach (the record's "unreachable") are counted in one line under a printed
    report, never printed or acted on alone."""
    hazardous = bool(event["hazards"])
    if settings.json_path:
        sink.append_json(settings.json_path, event)  # never raises for I/O: a lost record is said once
    if hazardous and (settings.policy in ("warn", "abort-now", "raise") or
                      (settings.policy == "abort" and not watched)):
        sink.write_stderr(render.text(event))
    if hazardous and settings.policy == "abort-now":
        sink.say("policy 'abort-now': child %d exits with status %d instead of deadlocking"
                 % (event["pid"], ABORT_STATUS))
        os._exit(ABORT_STATUS)
