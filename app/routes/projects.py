"""``/v1/projects``: list, create, read, change and delete projects (docs/api.md,
"Administration")."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.admin import Admin, admin_caller, done, json_body
from app.auth import forbidden
from app.body import validated
from app.errors import APIError
from app.protocol import ProjectCreateRequest, ProjectUpdateRequest


def _not_theirs(admin: Admin, project_id: str, unknown: bool) -> APIError:
    # A key that sees every project learns that one does not exist; others get a 403
    # either way (no probing for project ids).
    if unknown and admin.reach.keys_everywhere:
        return APIError(404, f"Project '{project_id}' does not exist.", code="project_not_found")
    return forbidden("This API key does not grant administration of this project.")


async def list_projects(request: Request) -> Response:
    services, admin = await admin_caller(request)
    projects = await services.control_plane.list_projects()
    seen = [p for p in projects if admin.reach.manages_keys_of(p["id"])
            and admin.project in (None, p["id"])]
    return JSONResponse({"object": "list", "data": seen})


async def create_project(request: Request) -> Response:
    services, admin = await admin_caller(request)
    if not admin.reach.admin_everywhere:
        raise forbidden("Creating a project takes AllProductsFullAccess over the whole "
                        "organisation.")
    body = validated(ProjectCreateRequest, await json_body(request, services))
    return done(await services.control_plane.create_project(
        body.name, body.rpm, body.tpm, body.max_concurrent, admin.actor))


async def get_project(request: Request) -> Response:
    services, admin = await admin_caller(request)
    project_id = request.path_params["project_id"]
    if not admin.reach.manages_keys_of(project_id):
        raise _not_theirs(admin, project_id, unknown=False)
    project = await services.control_plane.project(project_id)
    if project is None:
        raise _not_theirs(admin, project_id, unknown=True)
    return JSONResponse(project)


async def update_project(request: Request) -> Response:
    services, admin = await admin_caller(request)
    project_id = request.path_params["project_id"]
    if not admin.reach.administers(project_id):
        raise forbidden("Changing a project takes AllProductsFullAccess over it.")
    body = validated(ProjectUpdateRequest, await json_body(request, services))
    return done(await services.control_plane.update_project(
        project_id, body.model_dump(exclude_unset=True), admin.actor))


async def delete_project(request: Request) -> Response:
    services, admin = await admin_caller(request)
    project_id = request.path_params["project_id"]
    if not admin.reach.administers(project_id):
        raise forbidden("Deleting a project takes AllProductsFullAccess over it.")
    return done(await services.control_plane.delete_project(project_id, admin.actor))


ROUTES = [
    Route("/v1/projects", list_projects, methods=["GET"]),
    Route("/v1/projects", create_project, methods=["POST"]),
    Route("/v1/projects/{project_id}", get_project, methods=["GET"]),
    Route("/v1/projects/{project_id}", update_project, methods=["PATCH"]),
    Route("/v1/projects/{project_id}", delete_project, methods=["DELETE"]),
]
