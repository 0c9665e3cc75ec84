"""3-D Gaussian splats for omnissl: PLY reading, FPS + kNN group tokens, Gaussian-MAE losses."""

from omnissl_splat.datasets import GeneratedShapes, SplatFolder
from omnissl_splat.generate import generate_shapes
from omnissl_splat.modality import SplatModality
from omnissl_splat.ply import read_splat_ply, write_splat_ply

__version__ = "0.1.0"
__all__ = ["SplatModality", "SplatFolder", "GeneratedShapes", "generate_shapes", "read_splat_ply",
           "write_splat_ply"]
