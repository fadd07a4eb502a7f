"""What happens with a finished child record: the policies warn, record, abort (and raise's child side)."""
import os

from . import render, sink
from .settings import ABORT_STATUS


def deliver(event, settings):
    """Write the record where the settings say; under 'abort', end a hazardous child."""
    hazardous = bool(event["hazards"])
    if settings.json_path:
        try:
            sink.append_json(settings.json_path, event)
        except OSError as e:
            sink.say("cannot append the report to %s: %s" % (settings.json_path, e.strerror or e))
    if hazardous and settings.policy in ("warn", "abort", "raise"):
        sink.write_stderr(render.text(event))
    if hazardous and settings.policy == "abort":
        sink.say("policy 'abort': child %d exits with status %d instead of deadlocking"
                 % (event["pid"], ABORT_STATUS))
        os._exit(ABORT_STATUS)
