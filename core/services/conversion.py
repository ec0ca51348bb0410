"""ConversionService: conversion jobs on folders inside the models directories; outputs join the registry."""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from inferno.config_file import ConfigError
from inferno.core.catalog import confine
from inferno.core.convert.jobs import (
    ConversionJob,
    JobRunner,
    JobStatus,
    default_output_name,
    job_quantization,
)
from inferno.errors import InfernoError, invalid_param
from inferno.v1 import conversion_service_pb2 as pb
from inferno.v1 import conversion_service_pb2_grpc

_STATUSES = {
    JobStatus.QUEUED: pb.CONVERSION_STATUS_QUEUED,
    JobStatus.PROCESSING: pb.CONVERSION_STATUS_PROCESSING,
    JobStatus.COMPLETED: pb.CONVERSION_STATUS_COMPLETED,
    JobStatus.FAILED: pb.CONVERSION_STATUS_FAILED,
    JobStatus.CANCELLED: pb.CONVERSION_STATUS_CANCELLED,
}


def job_message(job: ConversionJob) -> pb.ConversionJob:
    end = job.finished or time.time()
    message = pb.ConversionJob(
        job_id=job.job_id,
        source=job.source,
        target_format=job.target_format,
        quantization=job.quantization,
        status=_STATUSES[job.status],
        progress=job.progress,
        duration_seconds=end - job.started if job.started else 0.0,
        output_file=job.output_file,
        source_bytes=job.source_bytes,
        output_bytes=job.output_bytes,
        error=job.error,
        created=int(job.created),
        model_id=job.model_id,
    )
    estimate = job.estimated_seconds(time.time())
    if estimate is not None:
        message.estimated_seconds = estimate
    return message


class ConversionServicer(conversion_service_pb2_grpc.ConversionServiceServicer):
    def __init__(self, runner: JobRunner, models_dirs: tuple[Path, ...]) -> None:
        self._runner = runner
        self._roots = models_dirs

    async def CreateConversionJob(
        self, request: pb.CreateConversionJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateConversionJobResponse:
        if not self._roots:
            raise InfernoError(
                "invalid_parameters",
                "conversion needs a models directory: set models_dirs in [server] of inferno.toml, "
                "or pass --models-dir DIR to inferno serve (or inferno core)",
            )
        if not request.source:
            raise invalid_param("source_model", "'source_model' is required")
        target = request.target_format or "gguf"
        quantization = job_quantization(target, request.quantization)
        source = self._inside(request.source, "source_model")
        output_name = request.output_file or default_output_name(source.name, target, quantization)
        _check_output_name(output_name, target)
        output = self._inside(output_name, "output_file")
        job = self._runner.submit(source, request.source, output, output_name, target, quantization)
        return pb.CreateConversionJobResponse(job=job_message(job))

    async def GetConversionJob(
        self, request: pb.GetConversionJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetConversionJobResponse:
        return pb.GetConversionJobResponse(job=job_message(self._runner.get(request.job_id)))

    async def ListConversionJobs(
        self, request: pb.ListConversionJobsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListConversionJobsResponse:
        return pb.ListConversionJobsResponse(jobs=[job_message(j) for j in self._runner.all()])

    async def CancelConversionJob(
        self, request: pb.CancelConversionJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelConversionJobResponse:
        return pb.CancelConversionJobResponse(job=job_message(self._runner.cancel(request.job_id)))

    def _inside(self, path_text: str, param: str) -> Path:
        if "\x00" in path_text:
            # The OS refuses NUL in paths (ValueError from every path call), so it can name no file.
            raise invalid_param(param, f"'{param}' must not contain a NUL character")
        try:
            return confine(path_text, self._roots, f"'{param}'")
        except ConfigError as error:
            raise invalid_param(param, str(error)) from None


def _check_output_name(name: str, target: str) -> None:
    if "/" in name:
        raise invalid_param("output_file", "'output_file' must be a name inside the models directory")
    if target == "gguf" and not name.endswith(".gguf"):
        raise invalid_param("output_file", "'output_file' must be a file name ending in .gguf")
    if target == "exl2" and (name.endswith(".gguf") or name.startswith(".")):
        raise invalid_param(
            "output_file", "'output_file' for exl2 names a new folder (not .gguf, not hidden)"
        )
