"""/v1/convert: conversion jobs in the seed's shapes (create, status, list, cancel)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from inferno.errors import invalid_param
from inferno.model_names import conversion_status_name
from inferno.v1 import conversion_service_pb2 as pb

from .core_client import CORE
from .humanize import human_duration, iso_utc
from .openai.requests import optional_str, parse_json_object

# The seed's "optimization": accepted for compatibility; the quantization decides the trade-off.
_OPTIMIZATIONS = (None, "speed", "balanced", "size")


async def create_job(request: web.Request) -> web.Response:
    """{"source_model", "target_format", "quantization", "optimization"?, "output_file"?}: 201, the job."""
    body = parse_json_object(await request.read())
    fields = {
        name: optional_str(body.get(name), name) or ""
        for name in ("source_model", "target_format", "quantization", "output_file")
    }
    if body.get("optimization") not in _OPTIMIZATIONS:
        raise invalid_param("optimization", "'optimization' must be speed, balanced or size")
    message = pb.CreateConversionJobRequest(
        source=fields["source_model"],
        target_format=fields["target_format"],
        quantization=fields["quantization"],
        output_file=fields["output_file"],
    )
    core = request.app[CORE]
    reply = await core.unary(request, core.conversion.CreateConversionJob, message)
    return web.json_response(job_json(reply.job), status=201)


async def get_job(request: web.Request) -> web.Response:
    core = request.app[CORE]
    message = pb.GetConversionJobRequest(job_id=request.match_info["job_id"])
    reply = await core.unary(request, core.conversion.GetConversionJob, message)
    return web.json_response(job_json(reply.job))


async def list_jobs(request: web.Request) -> web.Response:
    core = request.app[CORE]
    reply = await core.unary(request, core.conversion.ListConversionJobs, pb.ListConversionJobsRequest())
    return web.json_response({"object": "list", "data": [job_json(j) for j in reply.jobs]})


async def cancel_job(request: web.Request) -> web.Response:
    core = request.app[CORE]
    message = pb.CancelConversionJobRequest(job_id=request.match_info["job_id"])
    reply = await core.unary(request, core.conversion.CancelConversionJob, message)
    return web.json_response(job_json(reply.job))


def job_json(job: pb.ConversionJob) -> dict[str, Any]:
    finished = job.status in (
        pb.CONVERSION_STATUS_COMPLETED, pb.CONVERSION_STATUS_FAILED, pb.CONVERSION_STATUS_CANCELLED
    )  # fmt: skip
    reduction = 1 - job.output_bytes / job.source_bytes if job.source_bytes and job.output_bytes else None
    return {
        "job_id": job.job_id,
        "status": conversion_status_name(job.status),
        "source_model": job.source,
        "target_format": job.target_format,
        "quantization": job.quantization,
        "progress": round(job.progress, 1),
        "estimated_duration": human_duration(job.estimated_seconds)
        if job.HasField("estimated_seconds")
        else None,
        "duration": human_duration(job.duration_seconds) if finished and job.duration_seconds else None,
        "output_file": job.output_file or None,
        "size_reduction": f"{reduction:.0%}" if reduction is not None else None,
        "model_id": job.model_id or None,
        "error": job.error or None,
        "created": iso_utc(job.created),
    }
