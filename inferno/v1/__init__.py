"""Generated gRPC stubs for the inferno.v1 API. Do not edit."""
