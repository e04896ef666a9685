"""Paper-scale cluster simulator in virtual time (event-driven; events scale with turns)."""

from .simulator import Simulation

__all__ = ["Simulation"]
