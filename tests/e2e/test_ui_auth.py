"""The UI behind query auth: a browser without a token is sent to the sign-in page, which
checks the token and keeps it in an HttpOnly, SameSite=Strict cookie that pages and the APIs
accept; API clients without a token still get the JSON 401; sign-out forgets the cookie."""

from __future__ import annotations

import requests

AUTH = {"server": {"auth": {"ingest_tokens": ["ingest-1"], "query_tokens": ["q 1/é"]}}}
HTML = {"Accept": "text/html,application/xhtml+xml"}


def test_ui_asks_for_the_query_token_and_remembers_it(lookout_factory):
    lookout = lookout_factory(AUTH)
    s = requests.Session()

    # a page load without a token goes to the sign-in page, remembering where it was going
    r = s.get(f"{lookout.http}/services?start=now-3h", headers=HTML, allow_redirects=False)
    assert r.status_code == 303, (r.status_code, r.text[:200])
    assert r.headers["Location"] == "/login?next=%2Fservices%3Fstart%3Dnow-3h"
    page = s.get(f"{lookout.http}{r.headers['Location']}", headers=HTML)
    assert page.status_code == 200
    assert 'name="token"' in page.text and 'value="/services?start=now-3h"' in page.text

    # an API call without a token is still a JSON 401, not a redirect
    api = s.get(f"{lookout.http}/api/v1/services", allow_redirects=False)
    assert api.status_code == 401 and api.json()["errorType"] == "unauthorized"

    # a wrong token is refused and sets nothing
    bad = s.post(
        f"{lookout.http}/login",
        data={"token": "nope", "next": "/services"},
        allow_redirects=False,
    )
    assert bad.status_code == 401 and "not accepted" in bad.text
    assert "set-cookie" not in bad.headers

    # the right one (with characters a cookie cannot hold as they are) signs in
    ok = s.post(
        f"{lookout.http}/login",
        data={"token": "q 1/é", "next": "/services?start=now-3h"},
        allow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["Location"] == "/services?start=now-3h"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "q 1" not in cookie

    services = s.get(f"{lookout.http}/services?start=now-3h", headers=HTML, allow_redirects=False)
    assert services.status_code == 200, services.status_code
    assert "<!DOCTYPE html>" in services.text and "Lookout" in services.text
    assert s.get(f"{lookout.http}/api/v1/services").status_code == 200

    # sign-in never sends people to another site
    away = s.post(
        f"{lookout.http}/login",
        data={"token": "q 1/é", "next": "//evil.example/"},
        allow_redirects=False,
    )
    assert away.headers["Location"] == "/"

    # sign-out forgets the cookie
    out = s.get(f"{lookout.http}/logout", allow_redirects=False)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    s.cookies.clear()
    again = s.get(f"{lookout.http}/services", headers=HTML, allow_redirects=False)
    assert again.status_code == 303


def test_without_query_auth_the_sign_in_page_steps_aside(lookout):
    r = requests.get(f"{lookout.http}/login?next=/traces", allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/traces"
    page = requests.get(f"{lookout.http}/services", headers=HTML)
    assert page.status_code == 200 and "<!DOCTYPE html>" in page.text
