"""The web pages: each is served assembled from its shared partials, once, with the security headers."""

import re
from collections import Counter
from string import Template

import aiohttp
import pytest

from node.pages import CSP, PARTIALS, WEB, PageTemplateError, assemble

# Each page's route, its title and script (the head partial's parameters) and its SOS banner's wording, if any.
PAGES = {
    "/": ("Neighborhood Node", "/static", "app.js", "Tap"),
    "/join": ("Join your building's Neighborhood Node", "/static", "join.js", None),
    "/login": ("Manager sign-in · Neighborhood Node", "/static", "login.js", None),
    "/manage": ("Manager console · Neighborhood Node", "/static", "manage.js", "Click"),
    "/transparency": ("Transparency · Neighborhood Node", "/static", "transparency.js", None),
    "/agency": ("Agency portal · Neighborhood Node", "/agency", "agency.js", None),
}


def partial(name: str, **parameters: str) -> str:
    """The partial `name` filled as a page's include marker would fill it."""
    return Template((PARTIALS / name).read_text(encoding="utf-8").removesuffix("\n")).substitute(parameters)


def test_every_page_is_checked_here():
    served = {f"{path.strip('/') or 'app'}.html" for path in PAGES}
    assert {path.name for path in WEB.glob("*.html")} == served


async def test_each_page_is_served_with_its_head_and_banner_once(make_node):
    node = await make_node("pages")
    async with aiohttp.ClientSession() as session:
        for route, (title, assets, script, gesture) in PAGES.items():
            async with session.get(node.url + route) as response:
                assert response.status == 200, route
                body = await response.text()
                assert response.headers["Content-Type"] == "text/html; charset=utf-8"
                assert response.headers["Content-Security-Policy"] == CSP
                assert response.headers["Cache-Control"] == "no-cache"
                etag = response.headers["ETag"]
            assert "<!--#" not in body, route
            assert body.startswith('<!doctype html>\n<html lang="en">\n<head>\n'), route
            assert body.count(partial("head.html", title=title, assets=assets, script=script)) == 1, route
            assert body.count("<head>") == body.count("<title>") == body.count("<script") == 1, route
            assert body.count(' id="sos-banner"') == (gesture is not None), route
            if gesture:
                assert body.count(partial("sos-banner.html", gesture=gesture)) == 1, route
            ids = Counter(re.findall(r' id="([^"]+)"', body))
            assert [i for i, n in ids.items() if n > 1] == [], route
            # The page is not read again per visit: a revalidation gets a 304 with the same headers.
            async with session.get(node.url + route, headers={"If-None-Match": etag}) as again:
                assert again.status == 304 and again.headers["Content-Security-Policy"] == CSP, route
                assert await again.read() == b""


async def test_partials_and_raw_pages_are_not_served(make_node):
    node = await make_node("pages")
    async with aiohttp.ClientSession() as session:
        for name in ("head.html", "partials%2Fhead.html", "partials", "sos-banner.html"):
            async with session.get(f"{node.url}/static/{name}") as response:
                assert response.status == 404, name
        async with session.get(node.url + "/agency/agency.html") as response:
            assert response.status == 404
        # The old /static/ address of a page gives the same assembled page as its route.
        async with session.get(node.url + "/static/manage.html") as by_file, \
                session.get(node.url + "/manage") as by_route:
            assert by_file.status == 200 and await by_file.text() == await by_route.text()


def write(folder, name: str, text: str):
    """Write `text` to folder/name and return its path."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_includes_are_filled_from_their_partials(tmp_path):
    write(tmp_path, "greet.html", "<p>Hello, $who.</p>\n")
    page = write(tmp_path, "page.html", '<body>\n<!--#include greet.html who="you &amp; me"-->\n</body>\n')
    assert assemble(page, tmp_path) == "<body>\n<p>Hello, you &amp; me.</p>\n</body>\n"


@pytest.mark.parametrize("marker, error", [
    ('<!--#include nope.html-->', r"page.html: <!--#include nope.html-->: no partial 'nope.html'"),
    ('<!--#include greet.html-->', r"greet.html takes the parameters \['who'\], got \[\]"),
    ('<!--#include greet.html who="a" whom="b"-->', r"takes the parameters \['who'\], got \['who', 'whom'\]"),
    ('<!--#include greet.html who=a-->', r"page.html: line 2: malformed include marker"),
    ('<!--#inclde greet.html who="a"-->', r"page.html: line 2: malformed include marker"),
    ('<!--#include ../page.html-->', r"no partial '../page.html'"),
])
def test_a_bad_include_fails_when_the_page_is_loaded(tmp_path, marker, error):
    write(tmp_path, "greet.html", "<p>Hello, $who.</p>\n")
    page = write(tmp_path, "page.html", f"<body>\n{marker}\n</body>\n")
    with pytest.raises(PageTemplateError, match=error):
        assemble(page, tmp_path)


def test_partials_do_not_nest(tmp_path):
    write(tmp_path, "outer.html", "<!--#include inner.html-->\n")
    write(tmp_path, "inner.html", "<p>inner</p>\n")
    page = write(tmp_path, "page.html", "<!--#include outer.html-->\n")
    with pytest.raises(PageTemplateError, match=r"page.html: a partial holds an include marker"):
        assemble(page, tmp_path)


def test_a_stray_dollar_in_a_partial_fails_when_the_page_is_loaded(tmp_path):
    write(tmp_path, "price.html", "<p>$5</p>\n")
    page = write(tmp_path, "page.html", "<!--#include price.html-->\n")
    with pytest.raises(PageTemplateError, match=r"price.html: a \$ that starts no \$name parameter"):
        assemble(page, tmp_path)
