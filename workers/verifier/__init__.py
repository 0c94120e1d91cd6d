"""The verifier role: checks registered by name, composed into a family's chain."""

from workers.verifier.chain import VerifierChain
from workers.verifier.checks import Check, Reading, build_check, register_check

__all__ = ["Check", "Reading", "VerifierChain", "build_check", "register_check"]
