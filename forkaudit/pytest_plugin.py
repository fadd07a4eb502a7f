"""forkaudit's pytest plugin (entry point pytest11; inert unless asked for).

    pytest --forkaudit [--forkaudit-policy=fail|warn]      or ini:  forkaudit = true

Importing this module installs no hook and imports nothing of forkaudit. When
enabled, every fork made while a test runs is audited: in the test process
(policy "record" to a per-session report file; only the light at-fork hooks are
activated, the flow and the native shim load at the first fork) and in every
Python process the tests start (FORKAUDIT=record and FORKAUDIT_JSON for the
session). A test during which a hazardous fork happened fails with the report.

Attribution (documented choice): by time window. Every child record carries the
time of its fork (taken in the forking process); a record belongs to the test
whose setup, call or teardown phase was running at that time in this process.
This covers forks made by processes the test started (they share the clock and
the report file), which a per-test environment variable could not reach once
they are running. After each phase the plugin waits (at most
forkaudit_child_timeout) until every fork made by the test process itself in
that phase has its child's record. Records that arrive after their test was
reported are counted in the summary as late.

Options: --forkaudit, --forkaudit-policy (ini forkaudit_policy; fail or warn),
ini forkaudit_ignore (fnmatch patterns on a hazard's lock path, symbol,
library or owner thread name), ini forkaudit_child_timeout (seconds, default
10: a child with a hazardous record still asleep that long after it, or a
child of the test process that has written no record that long after its
fork, is killed by a watcher process, and reported). Marker:
@pytest.mark.forkaudit(enabled=False), or a module's pytestmark, opts out.
Under pytest-xdist each worker audits its own tests with its own report file;
the controller adds up the summary.
"""
import os

import pytest

POLICIES = ("fail", "warn")
MARKER = ("forkaudit(enabled=True): enabled=False keeps forkaudit's pytest plugin from failing this "
          "test for a hazardous fork")


def pytest_addoption(parser):
    group = parser.getgroup("forkaudit", "fork-after-threads audit (forkaudit)")
    group.addoption("--forkaudit", action="store_true", default=None,
                    help="audit every fork made while a test runs; a hazardous fork fails the test")
    group.addoption("--forkaudit-policy", choices=POLICIES, default=None,
                    help="fail (default): the test fails; warn: only the terminal summary reports it")
    parser.addini("forkaudit", type="bool", default=False, help="enable forkaudit's fork audit")
    parser.addini("forkaudit_policy", default="fail", help="fail or warn")
    parser.addini("forkaudit_ignore", type="linelist", default=[],
                  help="fnmatch patterns: hazards whose lock path, symbol, library or owner thread name matches")
    parser.addini("forkaudit_child_timeout", default="10",
                  help="seconds before a hung child (with a hazardous record, or with none) is killed (default 10)")


def _enabled(config):
    opt = config.getoption("forkaudit", None)
    return bool(opt) if opt is not None else bool(config.getini("forkaudit"))


def _is_xdist_controller(config):
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None)) \
        and getattr(config.option, "dist", "no") != "no"


def pytest_configure(config):
    config.addinivalue_line("markers", MARKER)
    if not _enabled(config):
        return
    policy = config.getoption("forkaudit_policy", None) or config.getini("forkaudit_policy") or "fail"
    if policy not in POLICIES:
        raise pytest.UsageError("forkaudit_policy must be fail or warn, not %r" % policy)
    if _is_xdist_controller(config):
        config.pluginmanager.register(_Controller(), "forkaudit-controller")
        return
    from ._pytest_audit import Audit
    config.pluginmanager.register(Audit(config, policy), "forkaudit-audit")


class _Controller:
    """pytest-xdist's controller: it runs no test; it adds up the workers' summaries."""

    def __init__(self):
        self.totals = {"hazardous": 0, "tests": set(), "audited": 0, "killed": 0, "late": 0, "warn": []}

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        out = getattr(node, "workeroutput", {}).get("forkaudit")
        if not out:
            return
        t = self.totals
        for key in ("hazardous", "audited", "killed", "late"):
            t[key] += out.get(key, 0)
        t["tests"].update(out.get("tests", []))
        t["warn"].extend(out.get("warn", []))

    def pytest_terminal_summary(self, terminalreporter):
        from ._pytest_audit import summary_line
        t = self.totals
        for nodeid, text in t["warn"]:
            terminalreporter.write_sep("-", "forkaudit: hazardous fork in %s" % nodeid)
            terminalreporter.write(text)
        terminalreporter.write_line(summary_line(t["hazardous"], len(t["tests"]), t["audited"], t["killed"],
                                                 t["late"]))
