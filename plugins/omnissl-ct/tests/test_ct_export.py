"""Export to MONAI: UNETR's ViT loads the weights with nothing missing and computes what omnissl's encoder computes."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNETR, ViT

from omnissl.encoders.transformer import TokenEncoder
from omnissl_ct.export import match_layernorm_eps, to_monai_vit, unetr_kwargs, vit_kwargs
from omnissl_ct.modality import CTModality


def _trained_like_encoder(modality: CTModality, depth: int = 2) -> TokenEncoder:
    torch.manual_seed(0)
    encoder = TokenEncoder(modality.spec(), modality, dim=48, depth=depth, heads=4).eval()
    with torch.no_grad():  # move every weight off its initial value, as training would
        for parameter in encoder.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return encoder


@pytest.mark.parametrize("proj_type", ["conv", "perceptron"])
def test_unetr_vit_matches_the_omnissl_encoder(proj_type):
    modality = CTModality(crop_size=32, patch_size=16)
    encoder = _trained_like_encoder(modality, depth=12)  # UNETR's ViT always has 12 blocks
    net = UNETR(in_channels=1, out_channels=3, feature_size=8, **unetr_kwargs(encoder, (32, 32, 32), proj_type))
    missing, unexpected = net.vit.load_state_dict(to_monai_vit(encoder, (32, 32, 32), (16, 16, 16),
                                                               proj_type=proj_type), strict=True)
    assert missing == [] and unexpected == []
    match_layernorm_eps(net.vit)
    net.eval()
    volume = torch.rand(2, 1, 32, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = torch.stack([encoder.forward_batch(_batch(modality, v))[0] for v in volume])  # [2, 8, 48]
        theirs, _ = net.vit(volume)  # [2, 8, 48]
        segmentation = net(volume)
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
    assert segmentation.shape == (2, 3, 32, 32, 32) and torch.isfinite(segmentation).all()


def test_vit_with_other_patch_and_image_sizes():
    modality = CTModality(crop_size=16, patch_size=8)
    encoder = _trained_like_encoder(modality)
    vit = ViT(in_channels=1, **vit_kwargs(encoder, (16, 16, 24), (8, 8, 8)))
    vit.load_state_dict(to_monai_vit(encoder, (16, 16, 24), (8, 8, 8)))
    match_layernorm_eps(vit).eval()
    volume = torch.rand(1, 1, 16, 16, 24, generator=torch.Generator().manual_seed(2))
    tokens = modality.patchifier(volume[0])
    with torch.no_grad():
        ours = encoder(tokens.values[None], tokens.coords[None])
        theirs, _ = vit(volume)
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)


def _batch(modality: CTModality, volume: torch.Tensor):
    from omnissl import collate_tokens

    return collate_tokens([modality.patchifier(volume)])
