"""Pair relations as attention-bias channels: a 2-D group and a 3-D group in one tensor.

Channel layout of the (n, n, R) relation tensor, R = (max_path + 1) + bond classes + K + 1:

* 2-D group: one-hot shortest-path length 0 .. max_path - 1 plus one "max_path or more / other
  fragment" channel (Graphormer's spatial encoding, Ying et al., NeurIPS 2021), then one-hot
  bond class (none = all zero);
* 3-D group: K Gaussian basis functions of the interatomic distance (Uni-Mol, Zhou et al.,
  ICLR 2023; SchNet's radial basis, Schütt et al., NeurIPS 2017), zero for molecules without
  a conformer, then one channel that is 1 where the 3-D distance is known.

The encoder projects the R channels to one bias per head with a learned linear layer.
MoleBLEND (Yu et al., "MoleBLEND", ICLR 2024) shows each pair either its 2-D or its 3-D
group; :meth:`RelationChannels.blend` does that.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from omnissl_molecule.features import NUM_BOND_CLASSES


class RelationChannels:
    """Builds and edits the relation tensor.

    Args:
        max_path: shortest paths of this many bonds or more share one channel.
        distance_kernels: K, the number of Gaussian distance basis functions.
        cutoff: the largest basis centre in Å (centres spread evenly over [0, cutoff]).
    """

    def __init__(self, max_path: int = 6, distance_kernels: int = 16, cutoff: float = 8.0):
        self.max_path = max_path
        self.num_path = max_path + 1
        self.num_bond = NUM_BOND_CLASSES - 1
        self.num_distance = distance_kernels
        self.centres = np.linspace(0.0, cutoff, distance_kernels, dtype=np.float32)
        self.width = float(cutoff / max(distance_kernels - 1, 1))
        self.two_d = slice(0, self.num_path + self.num_bond)
        self.three_d = slice(self.two_d.stop, self.two_d.stop + distance_kernels + 1)
        self.distance = slice(self.three_d.start, self.three_d.stop - 1)
        self.known = self.three_d.stop - 1

    @property
    def channels(self) -> int:
        return self.three_d.stop

    def build(self, path: np.ndarray, bonds: np.ndarray, distance: np.ndarray, has_3d: bool) -> np.ndarray:
        """(n, n) path lengths, bond classes and distances -> (n, n, R) float32 relations."""
        n = path.shape[0]
        out = np.zeros((n, n, self.channels), dtype=np.float32)
        rows, cols = np.indices((n, n))
        out[rows, cols, np.minimum(path, self.max_path)] = 1.0
        bonded = bonds > 0
        out[rows[bonded], cols[bonded], self.num_path + bonds[bonded] - 1] = 1.0
        if has_3d:
            out[..., self.distance] = self.gaussians_np(distance)
            out[..., self.known] = 1.0
        return out

    def gaussians_np(self, distance: np.ndarray) -> np.ndarray:
        """(...,) distances in Å -> (..., K) Gaussian basis values."""
        return np.exp(-0.5 * ((distance[..., None] - self.centres) / self.width) ** 2)

    def gaussians(self, distance: Tensor) -> Tensor:
        """Torch version of :meth:`gaussians_np`: (...,) -> (..., K)."""
        centres = torch.as_tensor(self.centres, device=distance.device, dtype=distance.dtype)
        return torch.exp(-0.5 * ((distance[..., None] - centres) / self.width) ** 2)

    def with_coords(self, relations: Tensor, coords: Tensor) -> Tensor:
        """Relations whose distance channels are recomputed from (noisy) coordinates.

        Args:
            relations: (B, N, N, R) relation tensor.
            coords: (B, N, 3) coordinates in Å.
        Returns:
            (B, N, N, R); pairs whose 3-D distance is unknown (``known`` channel 0) stay zero.
        """
        distance = torch.cdist(coords.float(), coords.float())  # [B, N, N]
        known = relations[..., self.known:self.known + 1]
        out = relations.clone()
        out[..., self.distance] = self.gaussians(distance).to(relations.dtype) * known
        return out

    def blend(self, relations: Tensor, pad: Tensor, generator: torch.Generator | None = None,
              p_three_d: float = 0.5) -> tuple[Tensor, Tensor]:
        """MoleBLEND: each atom pair (symmetrically) keeps only its 2-D or its 3-D group.

        Pairs without a known 3-D distance always keep their 2-D group.

        Args:
            relations: (B, N, N, R).
            pad: (B, N) padding.
            p_three_d: probability that a pair shows its 3-D group.
        Returns:
            (blended (B, N, N, R), shows_3d (B, N, N) bool).
        """
        b, n = pad.shape
        draw = torch.rand(b, n, n, generator=generator, device=relations.device) < p_three_d
        shows_3d = torch.triu(draw) | torch.triu(draw, diagonal=1).transpose(1, 2)  # symmetric
        shows_3d &= relations[..., self.known] > 0
        out = relations.clone()
        out[..., self.two_d] *= (~shows_3d)[..., None].to(out.dtype)
        out[..., self.three_d] *= shows_3d[..., None].to(out.dtype)
        return out, shows_3d
