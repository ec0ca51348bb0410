"""Inferno's gRPC services, named once: the core serves them, Envoy transcodes and routes them, the gateway's
relay passes them on."""

from __future__ import annotations

from google.protobuf.descriptor import ServiceDescriptor

from inferno.v1 import (
    admin_service_pb2,
    auth_service_pb2,
    conversion_service_pb2,
    inference_service_pb2,
    model_service_pb2,
    response_service_pb2,
)

SERVICES: tuple[ServiceDescriptor, ...] = (
    inference_service_pb2.DESCRIPTOR.services_by_name["InferenceService"],
    model_service_pb2.DESCRIPTOR.services_by_name["ModelService"],
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"],
    auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"],
    conversion_service_pb2.DESCRIPTOR.services_by_name["ConversionService"],
    response_service_pb2.DESCRIPTOR.services_by_name["ResponseService"],
)
SERVICE_NAMES = tuple(service.full_name for service in SERVICES)
