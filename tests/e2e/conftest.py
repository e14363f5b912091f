"""Fixtures for the end-to-end suite.

`lookout_factory(config)` starts a real `lookout serve` on free ports with its own data dir;
`lookout` is the same with the default config. Every server started in a test is stopped with
SIGTERM at teardown, and a non-zero exit code fails the test. When a test fails, the tail of
each server's log is attached to the report.

`browser` is one headless Chromium for the whole session (tests/e2e/browser.py); `page` is a
fresh tab in it for one test, and fails the test when the page logged a console error or
threw an uncaught exception (expected ones: `page.allow_errors(regex)`).
"""

from __future__ import annotations

import pytest

from helpers import Lookout, lookout_bin

_SERVERS_KEY = pytest.StashKey[list]()
_PAGES_KEY = pytest.StashKey[list]()


@pytest.fixture(scope="session", autouse=True)
def _binary_present():
    # Fail (not skip) when the binary is missing: a suite that silently skips proves nothing.
    try:
        lookout_bin()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def lookout_factory(request, tmp_path):
    servers: list[Lookout] = []
    request.node.stash[_SERVERS_KEY] = servers

    def make(config: dict | None = None, start: bool = True, name: str | None = None) -> Lookout:
        label = name or f"lookout{len(servers) + 1}"
        workdir = tmp_path / label
        workdir.mkdir()
        server = Lookout(workdir, config, name=label)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make

    failures = []
    for server in servers:
        was_running = server.proc is not None and server.proc.poll() is None
        code = server.stop()
        if was_running and code != 0:
            failures.append(f"{server.name} exited with code {code} on SIGTERM\n{server.log_tail()}")
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


@pytest.fixture
def lookout(lookout_factory) -> Lookout:
    return lookout_factory()


@pytest.fixture(scope="session")
def browser():
    from browser import Browser

    b = Browser()
    yield b
    b.close()


@pytest.fixture
def page(request, browser):
    p = browser.new_page()
    request.node.stash[_PAGES_KEY] = [p]
    yield p
    errors = p.unexpected_errors()
    p.close()
    if errors:
        pytest.fail("console errors in the browser:\n" + "\n".join(errors), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for server in item.stash.get(_SERVERS_KEY, []):
            report.sections.append((f"{server.name} log ({report.when})", server.log_tail(120)))
        for p in item.stash.get(_PAGES_KEY, []):
            report.sections.append((f"browser console ({report.when})", "\n".join(p.messages[-60:])))
