"""The generator role: k answers per problem from the base model and the promoted adapter."""

from workers.generator.engine import GenerationEngine, SamplingSpec, pick_device

__all__ = ["GenerationEngine", "SamplingSpec", "pick_device"]
