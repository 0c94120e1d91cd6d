"""The web dashboard: server-rendered pages over the same data functions as the API, a little JavaScript for
live numbers and for the buttons (which call the JSON API with the token the user typed into the page header).

Pages take their filters as text and ignore values that do not parse, so a hand-edited URL shows the page
with a note instead of an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from services.api.deps import DbSession
from services.api.models import SampleSort, SampleStatus
from schemas.messages import PRECISION_BOUND
from services.api.pages.charts import accuracy_chart, kept_chart
from services.api.queries.adapters import list_adapters
from services.api.queries.dead_letters import list_dead_letters
from services.api.queries.jobs import list_jobs
from services.api.queries.metrics import accuracy_points, kept_points, overview
from services.api.queries.samples import filter_choices, get_sample, list_samples, sample_filters
from services.api.queries.snapshots import diff_snapshots, list_snapshots, resolve_snapshot_id

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
SORTS = get_args(SampleSort)
STATUSES = get_args(SampleStatus)


def _render(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request, name, {"nav": name.removesuffix(".html"), **context}, status_code=status_code
    )


def _int(params, name: str, notes: list[str], *, low: int = 0, high: int = 2**31 - 1) -> int | None:
    value = params.get(name, "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        notes.append(f"ignored {name}={value[:40]!r}: not a whole number")
        return None
    if not low <= number <= high:
        notes.append(f"ignored {name}={number}: out of range")
        return None
    return number


def _text(params, name: str) -> str | None:
    value = params.get(name, "").replace("\x00", "").strip()[:200]
    return value or None


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request, session: DbSession) -> HTMLResponse:
    points = accuracy_points(session)
    return _render(request, "overview.html", overview=overview(session), chart=accuracy_chart(points), points=points,
                   kept=kept_chart(kept_points(session), PRECISION_BOUND), bound=PRECISION_BOUND)


@router.get("/samples", response_class=HTMLResponse)
def samples_page(request: Request, session: DbSession) -> HTMLResponse:
    params = request.query_params
    notes: list[str] = []
    family = _text(params, "family")
    status = _text(params, "status") if params.get("status") in STATUSES else None
    difficulty = _int(params, "difficulty", notes)
    adapter = _text(params, "adapter")
    round_no = _int(params, "round", notes)
    text = _text(params, "q")
    snapshot = _text(params, "snapshot")
    chosen = {
        "family": family,
        "status": status,
        "difficulty": difficulty,
        "adapter": adapter,
        "round": round_no,
        "q": text,
        "snapshot": snapshot,
    }
    sort = params.get("sort", "")
    if sort not in SORTS:
        sort = "-generated_at"
    offset = _int(params, "offset", notes, high=10**9) or 0
    filters = sample_filters(
        family=family,
        status=status,
        difficulty=difficulty,
        adapter=adapter,
        round=round_no,
        text=text,
        snapshot=snapshot,
    )
    page = list_samples(session, filters=filters, sort=sort, limit=PAGE_SIZE, offset=offset)
    kept = {k: v for k, v in {**chosen, "sort": sort}.items() if v is not None}

    def page_url(new_offset: int) -> str:
        return "/samples?" + urlencode({**kept, "offset": new_offset})

    return _render(
        request,
        "samples.html",
        page=page,
        chosen=chosen,
        sort=sort,
        sorts=SORTS,
        statuses=STATUSES,
        notes=notes,
        choices=filter_choices(session),
        prev_url=page_url(max(0, offset - PAGE_SIZE)) if offset > 0 else None,
        next_url=page_url(offset + PAGE_SIZE) if offset + PAGE_SIZE < page.total else None,
    )


@router.get("/samples/{sample_id}", response_class=HTMLResponse)
def sample_page(request: Request, session: DbSession, sample_id: str) -> HTMLResponse:
    sample = get_sample(session, sample_id=sample_id[:200])
    if sample is None:
        return _render(request, "missing.html", status_code=404, what=f"sample {sample_id[:200]}", back="/samples")
    return _render(request, "sample.html", sample=sample)


@router.get("/snapshots", response_class=HTMLResponse)
def snapshots_page(request: Request, session: DbSession) -> HTMLResponse:
    params = request.query_params
    notes: list[str] = []
    snapshots = list_snapshots(session, limit=200)
    base, target = _text(params, "base"), _text(params, "target")
    diff = None
    if base and target:
        base_id = resolve_snapshot_id(session, snapshot_id=base)
        target_id = resolve_snapshot_id(session, snapshot_id=target)
        if base_id is None or target_id is None:
            notes.append(
                "no such snapshot: " + ", ".join(s for s, r in ((base, base_id), (target, target_id)) if r is None)
            )
        else:
            diff = diff_snapshots(session, base=base_id, target=target_id, limit=100)
    return _render(request, "snapshots.html", snapshots=snapshots, diff=diff, base=base, target=target, notes=notes)


@router.get("/adapters", response_class=HTMLResponse)
def adapters_page(request: Request, session: DbSession) -> HTMLResponse:
    return _render(request, "adapters.html", adapters=list_adapters(session, limit=200))


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, session: DbSession) -> HTMLResponse:
    return _render(request, "jobs.html", jobs=list_jobs(session, limit=50))


@router.get("/dead-letters", response_class=HTMLResponse)
def dead_letters_page(request: Request, session: DbSession) -> HTMLResponse:
    notes: list[str] = []
    offset = _int(request.query_params, "offset", notes, high=10**9) or 0
    return _render(
        request, "dead_letters.html", page=list_dead_letters(session, limit=PAGE_SIZE, offset=offset), notes=notes
    )
