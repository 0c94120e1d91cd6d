"""The dashboard in a real headless Chromium (Debian's chromium driven by Playwright): open the overview, filter
the samples, open one, compare snapshots, promote an adapter, start a retraining and watch its progress.

The whole stack is real: ``python -m services.api`` in its own process (on the port it prints), a Celery worker
running the real ``train_adapter`` job (LoRA on a tiny untrained model, over the store's accepted samples), a
store writer, Kafka, and a SQLite store. Screenshots go to ``test-artifacts/dashboard/``.

Needs ``apt-get install chromium`` and the ``playwright`` package (never ``playwright install``): skipped without
them, except on CI (``CI`` set), where that fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schemas.messages import CONSUMER_GROUPS

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
SHOTS = REPO / "test-artifacts" / "dashboard"
CHROMIUM = os.environ.get("LOOP_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _require_browser():
    problems = []
    if not Path(CHROMIUM).exists():
        problems.append(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright package is not installed (pip install -e '.[test]')")
    if problems:
        if os.environ.get("CI"):
            pytest.fail("; ".join(problems) + "; CI must run the browser test")
        pytest.skip("; ".join(problems))


@pytest.fixture(scope="session", autouse=True)
def _browser_is_installed():
    """Checked before the (session-scoped) job stack starts, so that a skip costs nothing."""
    _require_browser()


@pytest.fixture
def browser_page(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1360, "height": 900},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(20_000)
            yield page
        finally:
            context.close()


@pytest.fixture
def api_server(seeded_job_stack, tmp_path):
    """``python -m services.api --port 0`` on the job stack; yields the URL it printed."""
    log_path = tmp_path / "api.log"
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.api", "--port", "0"],  # retraining runs the real train_adapter job
        cwd=REPO,
        env=seeded_job_stack.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (match := re.search(r"serving on (http://\S+)", log_path.read_text(errors="replace"))):
            assert process.poll() is None, f"the API server exited:\n{log_path.read_text(errors='replace')[-3000:]}"
            assert time.monotonic() < deadline, "the API server printed no URL in 60 s"
            time.sleep(0.1)
        yield match.group(1)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_dashboard_end_to_end(seeded_job_stack, api_server, browser_page, auth):
    from playwright.sync_api import expect

    page, standard = browser_page, seeded_job_stack.standard
    token = auth["Authorization"].removeprefix("Bearer ")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))

    # Overview: the current adapter, the rates, the accuracy chart.
    page.goto(api_server + "/")
    expect(page.locator("#current-adapter")).to_have_text("a2")
    expect(page.locator("#accuracy-chart polyline")).to_have_count(3)
    # Filled in by the page's script from /api/metrics/lag: a row per topic of every consumer group.
    expect(page.locator("#lag tbody tr")).to_have_count(sum(len(t) for t in CONSUMER_GROUPS.values()))
    shot(page, "01-overview")

    # Sample browser: filter by family and status, then by text.
    page.get_by_role("link", name="Samples").click()
    expect(page.locator("#sample-total")).to_have_text("14 match")
    page.select_option("select[name=family]", "arithmetic")
    page.select_option("select[name=status]", "accepted")
    page.select_option("select[name=sort]", "difficulty")
    page.click("#apply-filters")
    expect(page.locator("#sample-total")).to_have_text("6 match")
    expect(page.locator("#samples tbody tr")).to_have_count(6)
    assert "status=accepted" in page.url and "family=arithmetic" in page.url
    shot(page, "02-samples-filtered")
    page.fill("input[name=q]", "2+2")
    page.click("#apply-filters")
    expect(page.locator("#sample-total")).to_have_text("1 match")

    # One sample: problem, answers with the chosen label, checks, lineage.
    page.locator("a.sample-link").first.click()
    expect(page.locator("#problem")).to_have_text("2+2")
    expect(page.locator("#answers tbody tr")).to_have_count(3)
    expect(page.locator("#answers tr.chosen")).to_have_count(2)
    expect(page.locator("#checks")).to_contain_text("2 of 3 answers agree")
    expect(page.locator("#lineage")).to_contain_text("the base model")
    expect(page.locator("#lineage")).to_contain_text("s1")
    assert page.url.endswith("/samples/" + standard.arithmetic[2])
    shot(page, "03-sample-detail")

    # Snapshot diff.
    page.get_by_role("link", name="Snapshots").click()
    page.select_option("select[name=base]", "s1")
    page.select_option("select[name=target]", "s2")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#diff")).to_contain_text("+2 added")
    expect(page.locator("#diff-difficulty tbody tr")).to_have_count(3)
    shot(page, "04-snapshot-diff")

    # The token, once, from the address `loopctl up` prints (after '#'), which then leaves the address bar; then
    # promote an adapter.
    page.goto(api_server + f"/adapters#token={token}")
    expect(page.locator("#token-state")).to_have_text("✓ set")
    assert "token" not in page.url and page.locator("#token").input_value() == token
    page.locator("button[data-action=promote][data-adapter=a3]").click()
    expect(page.locator("#flash")).to_contain_text("Promoted a3 (was a2)")
    assert dialogs and "Promote a3?" in dialogs[-1]
    expect(page.locator("#a3 .pill")).to_have_text("current", timeout=30_000)  # reloaded once the store follows
    shot(page, "05-adapters-promoted")

    # Retrain: start it, watch its progress move, see it succeed.
    page.get_by_role("link", name="Retrain & jobs").click()
    # The real training job, on a tiny model and the accepted arithmetic samples of the store.
    page.fill("#overrides", '{"families": ["arithmetic"], "lora": {"steps": 300, "batch_size": 8, "rank": 4, "alpha": 8}}')
    page.click("#retrain")
    expect(page.locator("#flash")).to_contain_text("Retraining queued as job")
    expect(page.locator("#job-panel")).to_be_visible()
    expect(page.locator("#job-state")).to_have_text("progress", timeout=90_000)
    page.wait_for_function("document.getElementById('job-progress').value >= 0.3", timeout=30_000)
    shot(page, "06-retrain-in-progress")
    midway = float(page.locator("#job-progress").evaluate("el => el.value"))
    assert 0.0 < midway < 1.0
    expect(page.locator("#job-state")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#job-percent")).to_have_text("100%")
    shot(page, "07-retrain-succeeded")
    page.reload()
    expect(page.locator("#jobs")).to_contain_text("train_adapter")
    shot(page, "08-jobs-list")

    # Dead letters: hostile bytes shown as text, not markup.
    page.get_by_role("link", name="Dead letters").click()
    page.locator("details.dead-letter summary").first.click()
    expect(page.locator("pre.raw").first).to_contain_text("<script>alert(1)</script>")
    assert page.locator("script", has_text="alert(1)").count() == 0
    shot(page, "09-dead-letters")
