"""The metrics explorer and dashboards in a real browser (headless Chromium, tests/e2e/browser.py):

* the explorer charts a query over series this test wrote (server-rendered, then after typing
  a new query, with hover values and a table view), and shows a bad query's error as the
  engine words it;
* a built-in dashboard (service-overview) renders every panel without an error over traces
  and logs sent by the Python OpenTelemetry SDK, its `$service` select lists the service and
  keeps the choice in the URL; the other built-in dashboards render without panel errors;
* a bad dashboard file in `ui.dashboards_dir` makes `lookout check-config` fail naming the file
  and the problem, while a running server lists the problem, keeps serving, and picks up the
  fixed file without a restart.
"""

from __future__ import annotations

import logging
import subprocess
import time
import urllib.parse
import uuid

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from helpers import (
    Lookout,
    lookout_bin,
    remote_write,
    report_logs_of,
    search_logs,
    stops_cleanly,
    wait_until,
)

RUN = uuid.uuid4().hex[:8]
METRIC = f"ui_explore_demo_{RUN}"
SERVICE = f"ui-dash-{RUN}"
LOG_LINE = f"inventory low for sku {RUN}"


def q(**params: str) -> str:
    return urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    """One server with two series of METRIC over the last 10 minutes, and the traces and logs
    of SERVICE sent with the OpenTelemetry SDK."""
    lookout = Lookout(tmp_path_factory.mktemp("ui-explore"), name="ui-explore")
    lookout.start()
    with stops_cleanly(lookout):
        now = int(time.time())
        series = []
        for kind, base in (("a", 10.0), ("b", 20.0)):
            samples = [((now - 600 + i * 15) * 1000, base + i) for i in range(41)]
            series.append(({"__name__": METRIC, "job": "e2e", "kind": kind}, samples))
        r = remote_write(lookout.remote_write_url, series)
        assert r.status_code in (200, 204), r.text

        resource = Resource.create({"service.name": SERVICE})
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{lookout.otlp_http}/v1/traces", timeout=10))
        )
        tracer = tracer_provider.get_tracer("e2e.ui.explore")
        for i in range(12):
            with tracer.start_as_current_span("GET /stock", kind=SpanKind.SERVER) as span:
                if i % 4 == 0:
                    span.set_status(Status(StatusCode.ERROR))
        tracer_provider.shutdown()

        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(
            SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{lookout.otlp_http}/v1/logs", timeout=10))
        )
        handler = LoggingHandler(level=logging.NOTSET, logger_provider=logger_provider)
        logger = logging.getLogger(f"e2e.ui.explore.{RUN}")
        logger.propagate = False
        logger.addHandler(handler)
        logger.warning(LOG_LINE)
        logger.removeHandler(handler)
        logger_provider.shutdown()

        wait_until(
            lambda: lookout.query_vector(f'sum(traces_spanmetrics_calls_total{{service="{SERVICE}"}})'),
            15,
            "the span metrics of the service",
        )
        wait_until(
            lambda: search_logs(lookout, f"{RUN}", start=time.time() - 3600),
            15,
            "the log line",
        )
        yield lookout


@pytest.fixture
def server(ui_server, request):
    report_logs_of(request, ui_server)
    return ui_server


# ---- explorer ----------------------------------------------------------------------------


def test_explorer_charts_a_query_server_rendered_and_in_the_browser(server, page):
    url = f"{server.http}/explore?{q(query=METRIC, start='now-15m', end='now')}"
    # the first HTML already holds the chart and both series
    html = requests.get(url, timeout=10).text
    assert html.count('class="line"') == 2, html[-3000:]
    assert f'kind=\\"a\\"' in html or 'kind="a"' in html or "kind=&quot;a&quot;" in html

    page.goto(url)
    legend = page.texts(".legend .legend-item")
    assert len(legend) == 2, legend
    assert all(METRIC in t for t in legend), legend
    assert page.count(".chart path.line") == 2
    # the metric names list offers the metric
    assert page.exists(f'#metric-names option[value="{METRIC}"]')

    # hover values: the tooltip lists both series with numbers
    page.hover(".chart-svg")
    tip = page.wait_for(".chart-tip")
    assert tip.count(METRIC) == 2, tip

    # a new query typed into the box and run
    page.type("textarea[name=query]", f"sum({METRIC})")
    page.submit("form.explore-form")
    page.wait_url(lambda u: "sum" in urllib.parse.unquote(u))
    page.wait_until("document.querySelectorAll('.legend .legend-item').length === 1", what="one summed series")
    assert page.count(".chart path.line") == 1


def test_explorer_table_and_several_queries(server, page):
    params = {"query": f'{METRIC}{{kind="a"}}', "query2": f'{METRIC}{{kind="b"}} * 2', "tab": "table"}
    page.goto(f"{server.http}/explore?{q(**params)}")
    tables = page.texts(".explore-table")
    assert len(tables) == 2, tables
    # instant query at the range's end: the last sample written (10 + 40, and (20 + 40) * 2)
    assert "50" in tables[0] and "kind" in tables[0], tables[0]
    assert "120" in tables[1], tables[1]
    # to the graph: both expressions' lines, named by their letter
    page.click(".tabs a.tab", text="Graph")
    page.wait_until("document.querySelectorAll('.chart path.line').length === 2", what="two lines")
    legend = page.texts(".legend .legend-item")
    assert any(t.startswith("A: ") for t in legend) and any(t.startswith("B: ") for t in legend), legend


def test_explorer_shows_the_engines_error(server, page):
    page.goto(f"{server.http}/explore?{q(query=f'sum({METRIC}')}")
    err = page.text(".explore-results .error")
    api = requests.get(f"{server.http}/api/v1/query", params={"query": f"sum({METRIC}"}, timeout=10).json()
    assert api["status"] == "error"
    assert api["error"] in err, (err, api)
    assert page.count(".chart path.line") == 0


# ---- dashboards --------------------------------------------------------------------------


def test_dashboards_list_the_built_in_ones(server, page):
    page.goto(f"{server.http}/dashboards")
    titles = page.texts(".dash-list a.dash-link")
    for t in ("Service overview", "Lookout", "Node"):
        assert t in titles, titles
    assert not page.exists(".dash-problems")
    page.click(".dash-list a.dash-link", text="Service overview")
    page.wait_url("/dashboards/service-overview")


def test_service_overview_renders_every_panel(server, page):
    url = f"{server.http}/dashboards/service-overview?{q(**{'var-service': SERVICE, 'start': 'now-15m'})}"
    page.goto(url)
    assert page.count(".dash-panel") == 9
    assert page.count(".dash-panel .error") == 0, page.texts(".dash-panel .error")
    assert page.value("select[name=var-service]") == SERVICE
    assert page.exists(f'select[name=var-service] option[value="{SERVICE}"]')
    # 12 requests, 3 of them errors: a rate above zero and an error ratio near 25%
    rate = page.text(".dash-panel", text="Request rate")
    assert "/s" in rate and "-\n" not in rate, rate
    # (rate() extrapolates over the window's edges, so about a quarter, not exactly)
    ratio = page.text(".dash-panel .stat-value", text="%")
    assert 15 <= float(ratio.strip().rstrip("%")) <= 40, ratio
    assert page.count(".dash-panel.dash-timeseries .chart path.line") >= 3
    assert "GET /stock" in page.text(".dash-panel.dash-table", text="Operations")
    assert LOG_LINE in page.text(".dash-panel.dash-logs")
    # the panel's link opens its query, with the variable filled in, in the explorer
    href = page.attr(".dash-panel.dash-timeseries a.dash-panel-link", "href")
    assert href.startswith("/explore?") and SERVICE in urllib.parse.unquote(href), href


def test_dashboard_variable_choice_lives_in_the_url(server, page):
    page.goto(f"{server.http}/dashboards/service-overview?start=now-15m")
    options = page.eval("[...document.querySelectorAll('select[name=var-service] option')].map(o => o.value)")
    assert SERVICE in options, options
    page.select("select[name=var-service]", SERVICE)
    page.wait_url(lambda u: f"var-service={SERVICE}" in u)
    page.wait_until(
        "[...document.querySelectorAll('.dash-logs')].some(e => e.innerText.includes(%r))" % LOG_LINE,
        what="the service's log line",
    )


@pytest.mark.parametrize("dashboard", ["lookout", "node"])
def test_other_built_in_dashboards_render_without_errors(server, page, dashboard):
    page.goto(f"{server.http}/dashboards/{dashboard}")
    assert page.count(".dash-panel") >= 8
    assert page.count(".dash-panel .error") == 0, page.texts(".dash-panel .error")


def test_unknown_dashboard_is_an_error(server, page):
    page.goto(f"{server.http}/dashboards/no-such-board")
    assert "no-such-board" in page.text(".dashboard .error")


# ---- dashboard files ---------------------------------------------------------------------

GOOD_DASHBOARD = """\
title: Mine
rows:
  - panels:
      - {title: Samples, type: stat, expr: 'count(up)'}
"""

# two mistakes in two files: a misspelt key, and PromQL that does not parse plus a variable
# that does not exist
BAD_KEY = """\
title: Typo
rows:
  - panels:
      - title: Oops
        type: timeseries
        exprr: up
"""
BAD_QUERY = """\
title: Broken
rows:
  - panels:
      - title: Half a query
        type: timeseries
        expr: 'sum(rate(x[5m])'
      - title: Ghost
        type: stat
        expr: 'up{job="$ghost"}'
"""


def check_config(path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [lookout_bin(), "check-config", str(path)], capture_output=True, text=True, timeout=30
    )


def test_check_config_reports_bad_dashboard_files(tmp_path):
    dash = tmp_path / "dash"
    dash.mkdir()
    (dash / "mine.yaml").write_text(GOOD_DASHBOARD)
    config = tmp_path / "lookout.yaml"
    config.write_text("ui:\n  dashboards_dir: dash\n")
    p = check_config(config)
    assert p.returncode == 0, p.stderr
    assert "config is valid" in p.stdout

    (dash / "typo.yaml").write_text(BAD_KEY)
    (dash / "broken.yml").write_text(BAD_QUERY)
    p = check_config(config)
    assert p.returncode == 1, p
    lines = p.stderr.strip().splitlines()
    typo = [l for l in lines if "typo.yaml" in l]
    broken = [l for l in lines if "broken.yml" in l]
    assert len(typo) == 1 and "typo.yaml:6:" in typo[0] and "unknown field `exprr`" in typo[0], lines
    assert any('rows[0].panels[0] ("Half a query"): expr does not parse' in l for l in broken), lines
    assert any("$ghost" in l and "not a variable" in l for l in broken), lines
    assert not any("mine.yaml" in l for l in lines), lines

    config.write_text("ui:\n  dashboards_dir: missing\n")
    p = check_config(config)
    assert p.returncode == 1 and "ui.dashboards_dir" in p.stderr and "not a directory" in p.stderr, p.stderr


def test_dashboard_files_reload_and_keep_the_last_good_version(lookout_factory, tmp_path, page):
    dash = tmp_path / "user-dash"
    dash.mkdir()
    (dash / "mine.yaml").write_text(GOOD_DASHBOARD)
    (dash / "typo.yaml").write_text(BAD_KEY)
    server = lookout_factory({"ui": {"dashboards_dir": str(dash)}})

    listing = server.api_get("/api/v1/dashboards")
    ids = [d["id"] for d in listing["dashboards"]]
    assert "mine" in ids and "typo" not in ids, ids
    assert any("typo.yaml" in e["file"] and "exprr" in e["message"] for e in listing["errors"]), listing

    page.goto(f"{server.http}/dashboards")
    problems = page.text(".dash-problems")
    assert "typo.yaml" in problems and "exprr" in problems, problems
    assert "Mine" in page.texts(".dash-list a.dash-link")

    # fix one file, break the other: the fixed one appears, the broken one keeps its last
    # good version, all without a restart
    (dash / "typo.yaml").write_text(BAD_KEY.replace("exprr", "expr"))
    (dash / "mine.yaml").write_text(GOOD_DASHBOARD.replace("type: stat", "type: gauge"))

    def reloaded():
        d = server.api_get("/api/v1/dashboards")
        ids = [x["id"] for x in d["dashboards"]]
        return d if "typo" in ids else None

    listing = wait_until(reloaded, 15, "the fixed dashboard file")
    ids = [d["id"] for d in listing["dashboards"]]
    assert "mine" in ids, ids
    assert any("mine.yaml" in e["file"] and "gauge" in e["message"] for e in listing["errors"]), listing
    page.goto(f"{server.http}/dashboards/mine")
    assert page.count(".dash-panel") == 1
    assert page.count(".dash-panel .error") == 0
