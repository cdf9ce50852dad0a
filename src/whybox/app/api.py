"""The app factory: a FastAPI application over one or more workspaces.

Everything a server needs lives on the application object it returns (``app.state``):
no module-level state, so several apps (several visualizers) run in one process.

Routes (JSON unless noted)::

    GET  /                                          the page (HTML; its script and style
    GET  /static/app.js, /static/app.css            are served here: nothing from a CDN)
    GET  /api/health
    GET  /api/workspaces
    GET  /api/workspaces/{wid}
    GET  /api/workspaces/{wid}/examples             ?offset&limit&model&predicted&label&correctness
    GET  /api/workspaces/{wid}/examples/{eid}
    GET  /api/workspaces/{wid}/examples/{eid}/image/{fid}    (PNG)
    GET  /api/workspaces/{wid}/methods
    GET  /api/workspaces/{wid}/methods/{name}
    POST /api/workspaces/{wid}/jobs                 -> 202, a job id to poll
    GET  /api/jobs
    GET  /api/jobs/{jid}                            ?since: status, progress, new results
    POST /api/jobs/{jid}/cancel
    GET  /api/jobs/{jid}/export?format=json|html|png

Every refusal is a JSON ``{"error": message}`` with a 4xx status: unknown ids (404 in the
path, 422 in a body), malformed bodies and wrong types (422), too much work (422) or too
many jobs at once (429).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .catalog import Catalog, Limits, RequestError
from .compute import compute_cell
from .frontend import APP_CSS, APP_JS, INDEX_HTML
from .jobs import JobRunner, QueueFull
from .render import export_html, export_json, export_png
from .workspace import DatasetError, Workspace

__all__ = ["create_app", "AppState", "JobRequest", "MethodRequest"]

log = logging.getLogger("whybox.app")

MAX_BODY_BYTES = 1_000_000
_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors *"
)


# -- request bodies -----------------------------------------------------------------------------
class MethodRequest(BaseModel):
    """One method of a job: its registry name and its parameters."""

    model_config = ConfigDict(strict=True, extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)


class JobRequest(BaseModel):
    """A job: every method on every model for every example."""

    model_config = ConfigDict(strict=True, extra="forbid")
    examples: list[int] = Field(min_length=1, max_length=1000)
    models: list[int] | None = Field(default=None, min_length=1, max_length=100)
    methods: list[MethodRequest] = Field(min_length=1, max_length=100)
    target: int | Literal["predicted", "label"] = "predicted"


# -- state ---------------------------------------------------------------------------------------
@dataclass
class AppState:
    """What one application serves: its workspaces, their catalogues, one job runner."""

    workspaces: dict[str, Workspace]
    catalogs: dict[str, Catalog]
    runner: JobRunner
    limits: Limits

    def space(self, wid: str) -> tuple[Workspace, Catalog]:
        """The workspace ``wid`` and its catalogue; 404 when unknown."""
        if wid not in self.workspaces:
            raise RequestError(
                f"Unknown workspace {wid!r}; known: {sorted(self.workspaces)}.", status=404
            )
        return self.workspaces[wid], self.catalogs[wid]


def _as_spaces(workspaces: Workspace | Mapping[str, Workspace]) -> dict[str, Workspace]:
    if isinstance(workspaces, Workspace):
        return {"default": workspaces}
    if not isinstance(workspaces, Mapping) or not workspaces:
        raise TypeError("create_app needs a Workspace or a non-empty {id: Workspace} mapping.")
    out: dict[str, Workspace] = {}
    for key, ws in workspaces.items():
        if not isinstance(key, str) or not key or "/" in key:
            raise ValueError(f"Workspace ids must be non-empty strings without '/'. Got {key!r}.")
        if not isinstance(ws, Workspace):
            raise TypeError(f"Workspace {key!r} must be a whybox.app.Workspace.")
        out[key] = ws
    return out


# -- error messages -------------------------------------------------------------------------------
def _kind(value: Any) -> str:
    names = {list: "an array", dict: "an object", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _validation_message(errors: list[dict[str, Any]]) -> str:
    """Pydantic's errors as one sentence a person can act on."""
    parts: list[str] = []
    for error in errors[:4]:
        loc = [str(p) for p in error.get("loc", ())]
        kind = error.get("type", "")
        msg = error.get("msg", "invalid")
        if loc[:1] == ["body"]:
            where = ".".join(loc[1:])
            if kind == "json_invalid":
                detail = (error.get("ctx") or {}).get("error", "")
                parts.append(f"The request body is not valid JSON ({detail}).")
            elif not where and kind == "missing":
                parts.append("The request needs a JSON object body.")
            elif not where and isinstance(error.get("input"), bytes):
                parts.append(
                    "The request body must be a JSON object sent with "
                    "Content-Type: application/json."
                )
            elif not where:
                parts.append(
                    f"The request body must be a JSON object; got {_kind(error.get('input'))}."
                )
            elif kind == "missing":
                parts.append(f"Field '{where}' is required.")
            elif kind == "extra_forbidden":
                parts.append(f"Unknown field '{where}'.")
            else:
                got = f" (got {_short(error.get('input'))})" if "input" in error else ""
                parts.append(f"Field '{where}': {msg}{got}.")
        elif loc[:1] in (["query"], ["path"]):
            got = f" (got {_short(error.get('input'))})" if "input" in error else ""
            parts.append(f"{loc[0].capitalize()} parameter '{'.'.join(loc[1:])}': {msg}{got}.")
        else:
            parts.append(f"{'.'.join(loc) or 'request'}: {msg}.")
    if len(errors) > 4:
        parts.append(f"({len(errors) - 4} more problems)")
    return " ".join(parts)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


# -- the factory ------------------------------------------------------------------------------------
def create_app(
    workspaces: Workspace | Mapping[str, Workspace],
    *,
    limits: Limits | None = None,
    title: str | None = None,
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """Build the web app over ``workspaces``.

    Parameters
    ----------
    workspaces : Workspace or mapping of str to Workspace
        What to serve; a single workspace gets the id ``"default"``.
    limits : Limits, optional
        Bounds on the work per request (defaults: :class:`Limits`).
    title : str, optional
        Page title (default: the first workspace's title).
    allowed_hosts : list of str, optional
        ``Host`` headers accepted (e.g. ``["127.0.0.1", "localhost"]`` for a loopback
        server, which stops DNS-rebinding pages from reading it); ``None`` accepts any.

    Returns
    -------
    fastapi.FastAPI
        The application; its :class:`AppState` is ``app.state.whybox``. The job worker
        stops when the application shuts down.
    """
    spaces = _as_spaces(workspaces)
    limits = limits or Limits()
    state = AppState(
        workspaces=spaces,
        catalogs={k: Catalog(ws, limits) for k, ws in spaces.items()},
        runner=JobRunner(max_pending=limits.max_pending_jobs, keep=limits.kept_jobs),
        limits=limits,
    )
    page_title = title or next(iter(spaces.values())).title

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        yield
        state.runner.close()

    # no /docs or /redoc: FastAPI serves their scripts from a CDN, and the app is offline
    app = FastAPI(title=page_title, docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.whybox = state
    _install_handlers(app, allowed_hosts)
    _install_pages(app, page_title)
    _install_api(app, state)
    return app


def _install_handlers(app: FastAPI, allowed_hosts: list[str] | None) -> None:
    hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if hosts is not None:
            host = request.headers.get("host", "").lower()
            name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
            if name not in hosts:
                return _error(400, f"Host {host!r} is not served here.")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return _error(413, f"The request body is larger than {MAX_BODY_BYTES} bytes.")
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(RequestError)
    async def on_request_error(_: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _error(404, f"No such page or endpoint: {request.url.path}")
        if exc.status_code == 405:
            return _error(405, f"{request.method} is not allowed on {request.url.path}.")
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            return _error(400, "The request body could not be read as JSON (is it UTF-8?).")
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(DatasetError)
    async def on_dataset(_: Request, exc: DatasetError) -> JSONResponse:
        # the workspace owner's data or model, not the request: a server error with its cause
        return _error(500, str(exc))

    @app.exception_handler(Exception)
    async def on_crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return _error(500, f"Internal error: {type(exc).__name__}: {exc}")


def _install_pages(app: FastAPI, page_title: str) -> None:
    from .render import escape_html

    index = INDEX_HTML.replace("__TITLE__", escape_html(page_title))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home() -> HTMLResponse:
        """The page."""
        return HTMLResponse(index, headers={"Content-Security-Policy": _CSP})

    @app.get("/static/app.js", include_in_schema=False)
    def script() -> Response:
        """The page's script."""
        return Response(APP_JS, media_type="text/javascript; charset=utf-8")

    @app.get("/static/app.css", include_in_schema=False)
    def style() -> Response:
        """The page's style sheet."""
        return Response(APP_CSS, media_type="text/css; charset=utf-8")


Wid = Annotated[str, Path(min_length=1, max_length=200)]
Eid = Annotated[int, Path(ge=0)]
Jid = Annotated[str, Path(min_length=1, max_length=200)]


def _install_api(app: FastAPI, state: AppState) -> None:
    limits = state.limits

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        """Whether the server answers."""
        return {"status": "ok", "workspaces": len(state.workspaces)}

    @app.get("/api/workspaces")
    def list_workspaces() -> list[dict[str, Any]]:
        """Every workspace: id, title, models, features."""
        return [_workspace_summary(wid, ws) for wid, ws in state.workspaces.items()]

    @app.get("/api/workspaces/{wid}")
    def workspace(wid: Wid) -> dict[str, Any]:
        """One workspace with its classes and the limits on work per request."""
        ws, _ = state.space(wid)
        out = _workspace_summary(wid, ws)
        out.update(
            classes=ws.classes,
            use_label_for_attr=ws.use_label_for_attr,
            top_k=ws.top_k,
            loaded=ws.loaded,
            exhausted=ws.exhausted,
            limits=limits.to_json(),
        )
        return out

    @app.get("/api/workspaces/{wid}/examples")
    def examples(
        wid: Wid,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
        limit: Annotated[int, Query(ge=1, le=10**6)] = 12,
        model: Annotated[int, Query(ge=0)] = 0,
        predicted: Annotated[list[str], Query(max_length=1000)] = [],  # noqa: B006
        label: Annotated[list[str], Query(max_length=1000)] = [],  # noqa: B006
        correctness: Literal["all", "correct", "incorrect"] = "all",
    ) -> dict[str, Any]:
        """A page of examples matching the filter, with predictions (computed lazily)."""
        ws, _ = state.space(wid)
        if limit > limits.max_page_size:
            raise RequestError(
                f"Query parameter 'limit': at most {limits.max_page_size} examples per page; "
                f"got {limit}."
            )
        if model >= len(ws.models):
            raise RequestError(
                f"Query parameter 'model': unknown model {model}; models are 0.."
                f"{len(ws.models) - 1}."
            )
        page = ws.page(
            offset=offset,
            limit=limit,
            model=model,
            predicted=_classes(ws, predicted, "predicted"),
            labels=_classes(ws, label, "label"),
            correctness=correctness,
            scan_budget=limits.max_scan,
        )
        items = _example_items(wid, ws, page.indices)
        return {
            "items": items,
            "offset": page.offset,
            "limit": page.limit,
            "has_more": page.has_more,
            "total": page.total,
            "scanned": page.scanned,
            "scan_limited": page.scan_limited,
            "loaded": ws.loaded,
            "exhausted": ws.exhausted,
        }

    @app.get("/api/workspaces/{wid}/examples/{eid}")
    def example(wid: Wid, eid: Eid) -> dict[str, Any]:
        """One example with every model's top-k predictions."""
        ws, _ = state.space(wid)
        _known_example(ws, eid, status=404)
        return _example_items(wid, ws, [eid])[0]

    @app.get("/api/workspaces/{wid}/examples/{eid}/image/{fid}")
    def example_image(wid: Wid, eid: Eid, fid: Annotated[int, Path(ge=0)]) -> Response:
        """The picture of an image feature of an example (PNG)."""
        ws, _ = state.space(wid)
        _known_example(ws, eid, status=404)
        if fid >= len(ws.features) or ws.features[fid].kind != "image":
            images = [i for i, f in enumerate(ws.features) if f.kind == "image"]
            raise RequestError(
                f"Feature {fid} is not an image feature of {wid!r}; image features: {images}.",
                status=404,
            )
        try:
            png = ws.image_png(eid, fid)
        except ValueError as error:
            raise DatasetError(str(error)) from error
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/workspaces/{wid}/methods")
    def methods(wid: Wid) -> list[dict[str, Any]]:
        """Every registered method with its parameters, bounds and availability."""
        _, catalog = state.space(wid)
        return [spec.to_json() for spec in catalog.specs()]

    @app.get("/api/workspaces/{wid}/methods/{name}")
    def method(wid: Wid, name: Annotated[str, Path(max_length=200)]) -> dict[str, Any]:
        """One method's description."""
        _, catalog = state.space(wid)
        return catalog.get(name).to_json()

    @app.post("/api/workspaces/{wid}/jobs", status_code=202)
    def submit(wid: Wid, body: JobRequest) -> dict[str, Any]:
        """Validate and queue a job (every method x model x example); 202 with its id."""
        ws, catalog = state.space(wid)
        request, tasks = _plan(ws, catalog, limits, body)
        try:
            job = state.runner.submit(workspace=wid, request=request, tasks=tasks)
        except QueueFull as error:
            raise RequestError(f"Too many jobs: {error}.", status=429) from None
        return job.snapshot()

    @app.get("/api/jobs")
    def jobs() -> list[dict[str, Any]]:
        """Known jobs, newest first, without their results."""
        return [job.snapshot(results=False) for job in state.runner.jobs()]

    def _job(jid: str) -> Any:
        try:
            return state.runner.get(jid)
        except KeyError:
            raise RequestError(f"Unknown job {_short(jid)}.", status=404) from None

    @app.get("/api/jobs/{jid}")
    def job(jid: Jid, since: Annotated[int, Query(ge=0, le=10**6)] = 0) -> dict[str, Any]:
        """A job's status, progress and its results from cell ``since`` on."""
        return _job(jid).snapshot(since=since)

    @app.post("/api/jobs/{jid}/cancel")
    def cancel(jid: Jid) -> dict[str, Any]:
        """Cancel a queued or running job."""
        _job(jid)
        return state.runner.cancel(jid).snapshot(results=False)

    @app.get("/api/jobs/{jid}/export")
    def export(jid: Jid, format: Literal["json", "html", "png"] = "json") -> Response:  # noqa: A002
        """A finished job's results as JSON (full attributions), HTML or PNG."""
        found = _job(jid)
        if found.status in ("queued", "running"):
            raise RequestError(
                f"Job {jid} is still {found.status}; export it when it is done.", status=409
            )
        ws = state.workspaces[found.workspace]
        name = f"whybox-{jid}.{format}"
        disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
        if format not in found.exports:  # drawn once per job and format
            if format == "json":
                found.exports[format] = JSONResponse(export_json(found)).body
            elif format == "html":
                found.exports[format] = export_html(found, ws).encode("utf-8")
            else:
                found.exports[format] = export_png(found, ws)
        media = {"json": "application/json", "html": "text/html; charset=utf-8", "png": "image/png"}
        return Response(found.exports[format], media_type=media[format], headers=disposition)


# -- helpers --------------------------------------------------------------------------------------
def _workspace_summary(wid: str, ws: Workspace) -> dict[str, Any]:
    return {
        "id": wid,
        "title": ws.title,
        "models": [{"index": i, "name": n} for i, n in enumerate(ws.model_names)],
        "features": [
            {"index": i, "name": f.name, "type": f.kind, "categories": list(f.categories or [])}
            for i, f in enumerate(ws.features)
        ],
        "n_classes": len(ws.classes),
    }


def _classes(ws: Workspace, values: list[str], name: str) -> list[int]:
    out = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            index = ws.class_index(part)
            if index is None or index >= max(len(ws.classes), 1):
                raise RequestError(
                    f"Query parameter '{name}': unknown class {_short(part)}; give a class "
                    f"name or an index 0..{len(ws.classes) - 1}."
                )
            out.append(index)
    return out


def _known_example(ws: Workspace, eid: int, *, status: int) -> None:
    try:
        ws.example(eid)
    except KeyError:
        more = "" if ws.exhausted else " so far"
        raise RequestError(
            f"Unknown example id {_short(eid)}: {ws.loaded} examples are loaded{more}.",
            status=status,
        ) from None


def _example_items(wid: str, ws: Workspace, indices: list[int]) -> list[dict[str, Any]]:
    predictions = [ws.predictions(m, indices) for m in range(len(ws.models))]
    items = []
    for row, i in enumerate(indices):
        example = ws.example(i)
        features: list[dict[str, Any]] = []
        for fi, feature in enumerate(ws.features):
            item: dict[str, Any] = {"name": feature.name, "type": feature.kind}
            if feature.kind == "image":
                item["image_url"] = f"api/workspaces/{wid}/examples/{i}/image/{fi}"
            elif feature.kind == "text":
                item["tokens"] = ws.tokens(i, fi)[:256]
            elif feature.kind == "general":
                raw = example.inputs[fi].reshape(-1)[:256]
                item["values"] = [float(v) for v in raw.tolist()]
                item["names"] = list(feature.categories or ())[:256]
            features.append(item)
        models = []
        for m, preds in enumerate(predictions):
            pred = preds[row]
            models.append(
                {
                    "model": m,
                    "model_name": ws.model_names[m],
                    "top": [
                        {"index": c, "name": ws.class_name(c), "score": s} for c, s in pred.top
                    ],
                    "predicted": pred.predicted,
                    "predicted_name": ws.class_name(pred.predicted),
                    "correct": pred.correct,
                }
            )
        items.append(
            {
                "id": i,
                "label": example.label,
                "label_name": ws.class_name(example.label),
                "predictions": models,
                "features": features,
            }
        )
    return items


def _plan(
    ws: Workspace, catalog: Catalog, limits: Limits, body: JobRequest
) -> tuple[dict[str, Any], list[Any]]:
    """Validate a job request completely before anything is queued."""
    examples = list(dict.fromkeys(body.examples))
    if len(examples) > limits.max_examples_per_job:
        raise RequestError(
            f"Field 'examples': at most {limits.max_examples_per_job} examples per job; "
            f"got {len(examples)}."
        )
    for eid in examples:
        if eid < 0:
            raise RequestError(f"Field 'examples': example ids are >= 0; got {eid}.")
        _known_example(ws, eid, status=422)
    n_models = len(ws.models)
    models = list(dict.fromkeys(body.models)) if body.models is not None else list(range(n_models))
    for m in models:
        if not 0 <= m < n_models:
            raise RequestError(f"Field 'models': unknown model {m}; models are 0..{n_models - 1}.")
    if len(models) > limits.max_models_per_job:
        raise RequestError(
            f"Field 'models': at most {limits.max_models_per_job} models per job; got {len(models)}."
        )
    if len(body.methods) > limits.max_methods_per_job:
        raise RequestError(
            f"Field 'methods': at most {limits.max_methods_per_job} methods per job; "
            f"got {len(body.methods)}."
        )
    target = body.target
    if isinstance(target, int) and not 0 <= target < len(ws.classes):
        raise RequestError(
            f"Field 'target': class {target} is out of range 0..{len(ws.classes) - 1}."
        )
    planned = []
    for item in body.methods:
        spec, params = catalog.validate(item.name, item.params, models=models)
        for eid in examples:
            inputs, _ = ws.model_inputs(eid)
            catalog.check_cost(spec, params, inputs)
        planned.append((spec, params))
    cells = len(examples) * len(models) * len(planned)
    if cells > limits.max_cells_per_job:
        raise RequestError(
            f"This job has {cells} cells (examples x models x methods), above the limit of "
            f"{limits.max_cells_per_job}; ask for fewer."
        )
    tasks = []
    for eid in examples:
        for spec, params in planned:
            for m in models:
                run = functools.partial(_run_cell, ws, catalog, eid, m, spec, params, target)
                tasks.append((f"{spec.label} · {ws.model_names[m]} · #{eid}", run))
    request = {
        "examples": examples,
        "models": models,
        "methods": [{"name": s.name, "params": p} for s, p in planned],
        "target": target,
    }
    return request, tasks


def _run_cell(
    ws: Workspace,
    catalog: Catalog,
    eid: int,
    m: int,
    spec: Any,
    params: Any,
    target: Any,
    check: Any,
) -> Any:
    return compute_cell(
        ws, catalog, example=eid, model=m, spec=spec, params=params, target=target, check=check
    )
