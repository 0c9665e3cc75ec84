"""Self-supervised objectives."""

from omnissl.objectives.base import Objective, ObjectiveOutput
from omnissl.objectives.mae import MAE
from omnissl.objectives.simmim import SimMIM

__all__ = ["Objective", "ObjectiveOutput", "MAE", "SimMIM"]
