"""The llama.cpp engine (GGUF on the CPU): the runtime schedules it (shape BatchDecoder)."""

from inferno.core.engines.llamacpp.loader import CAPABILITIES, load

__all__ = ["CAPABILITIES", "load"]
