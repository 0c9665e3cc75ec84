"""Self-supervised objectives: the contract (:class:`Objective`), the masked-prediction family
(:class:`MaskedPrediction`: MAE, SimMIM), latent objectives (data2vec 2.0, I-JEPA, iBOT, LeJEPA) and the EMA
teacher."""

from omnissl.objectives.base import MaskedPrediction, Objective, ObjectiveOutput, draw_mask, repeat_batch
from omnissl.objectives.data2vec2 import Data2Vec2
from omnissl.objectives.ema import EMATeacher, cosine_momentum
from omnissl.objectives.ibot import IBOT
from omnissl.objectives.ijepa import IJEPA
from omnissl.objectives.lejepa import LeJEPA
from omnissl.objectives.mae import MAE
from omnissl.objectives.simmim import SimMIM

__all__ = ["Objective", "ObjectiveOutput", "MaskedPrediction", "draw_mask", "repeat_batch", "EMATeacher",
           "cosine_momentum", "MAE", "SimMIM", "LeJEPA", "Data2Vec2",
           "IJEPA", "IBOT"]
