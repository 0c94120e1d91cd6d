"""The dashboard's pages render from the store, escape what they show, and shrug off bad query strings."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.kafka


def page(client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def test_overview_shows_the_current_adapter_the_rates_and_the_chart(client, standard):
    html = page(client, "/")
    assert 'id="current-adapter"' in html and ">a2</a>" in html
    assert '<svg id="accuracy-chart"' in html and "arithmetic d3" in html
    accuracy = html.split('id="accuracy-chart"')[1].split("</svg>")[0]
    assert accuracy.count("<polyline") == 3  # one line per difficulty
    assert '<svg id="kept-chart"' in html and "arithmetic kept right" in html  # and the kept labels' line


def test_overview_of_an_empty_store_explains_the_missing_chart(client):
    html = page(client, "/")
    assert "base model" in html and 'id="accuracy-empty"' in html


def test_sample_browser_filters_and_pages(client, standard):
    html = page(client, "/samples?family=arithmetic&status=accepted&sort=generated_at")
    assert '<span class="muted" id="sample-total">6 match</span>' in html
    assert html.count('class="sample-link"') == 6
    html = page(client, "/samples?difficulty=two&round=-3&offset=x&sort=bogus&status=maybe")
    assert "ignored difficulty=&#39;two&#39;" in html and "ignored round=-3" in html
    assert 'id="sample-total">14 match' in html  # the bad values were ignored, not applied
    assert 'id="sample-total">1 match' in page(client, "/samples?q=Kavo")


def test_sample_page_shows_answers_checks_evidence_and_lineage(client, standard):
    html = page(client, f"/samples/{standard.grounded[0]}")
    assert "where does Kavo live?" in html and "supported by p1" in html
    assert "Kavo lives in Tesa, by the &lt;b&gt;river&lt;/b&gt;." in html  # evidence text is escaped
    assert 'href="/adapters#a1">a1</a>' in html and 'href="/samples?snapshot=s1">s1</a>' in html
    page(client, "/samples/not-a-sample", status=404)


def test_snapshots_page_compares_two(client, standard):
    html = page(client, "/snapshots?base=s1&target=s2")
    assert "s1 → s2" in html and "+2</strong> added" in html and "format=parquet" in html
    assert "no such snapshot: nope" in page(client, "/snapshots?base=s1&target=nope")


def test_adapters_page_offers_promote_and_roll_back(client, standard):
    html = page(client, "/adapters")
    assert 'data-action="promote" data-adapter="a3"' in html and 'data-adapter="a2"' not in html  # a2 is current
    assert 'data-rejected="yes"' in html and 'id="rollback" data-action="rollback" >' in html


def test_jobs_page_has_the_retrain_button_and_lists_jobs(client, standard):
    html = page(client, "/jobs")
    assert 'id="retrain"' in html and 'id="job-progress"' in html
    assert "job-running" in html and 'data-job="job-running"' in html and 'data-job="job-done"' not in html


def test_dead_letters_page_escapes_the_raw_bytes(client, standard):
    html = page(client, "/dead-letters")
    assert "<script>alert(1)</script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "\x1b" not in html and "\u202e" not in html
    assert "00000000  1b 5b 33 31 6d" in html


def test_static_files_are_served(client):
    assert "selfloop.apiToken" in client.get("/static/app.js").text
    assert client.get("/static/style.css").status_code == 200
