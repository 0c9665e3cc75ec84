import pytest
import torch

from objective_kit import Toy, grid_sample

from omnissl import Modality, TargetStream, collate_tokens
from omnissl.maskers import RandomMasker
from omnissl.objectives import MAE, MaskedPrediction, Objective, SimMIM, draw_mask, repeat_batch
from omnissl.plugins import get_registry

# Plugins test their own components (omnissl.testing); these are the core's masked-prediction
# objectives (latent objectives have their own tests: test_lejepa.py, test_ema.py).
BUILTIN = sorted(n for n, (factory, owner) in get_registry().components["objectives"].items()
                 if owner == "omnissl" and isinstance(factory, type) and issubclass(factory, MaskedPrediction))
def build(name: str, modality: Modality = Toy()):
    torch.manual_seed(0)
    encoder = get_registry().get("encoders", "transformer")(modality.spec(), modality, dim=32, depth=2, heads=4)
    options = {"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 4} if name == "mae" else {}
    return get_registry().get("objectives", name)(encoder, modality, **options)


@pytest.mark.parametrize("name", BUILTIN)
def test_loss_ignores_padding_and_visible_tokens(name):
    objective = build(name).eval()
    batch = collate_tokens([grid_sample(4, 0), grid_sample(6, 1)])
    mask = RandomMasker(0.5)(batch, torch.Generator().manual_seed(0))
    loss = objective(batch, mask).loss
    assert torch.isfinite(loss)
    poisoned = collate_tokens([grid_sample(4, 0), grid_sample(6, 1)])
    poisoned.values[batch.pad] = 1e4  # padding
    assert torch.allclose(objective(poisoned, mask).loss, loss)
    changed = collate_tokens([grid_sample(4, 0), grid_sample(6, 1)])
    changed.values[mask.hidden] = torch.randn_like(changed.values[mask.hidden])  # new targets: the loss must move
    assert not torch.allclose(objective(changed, mask).loss, loss)


@pytest.mark.parametrize("name", BUILTIN)
def test_loss_goes_down(name):
    objective = build(name)
    batch = collate_tokens([grid_sample(4, s) for s in range(8)])
    optimizer = torch.optim.AdamW(objective.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        mask = RandomMasker(0.5)(batch, torch.Generator().manual_seed(step % 3))
        loss = objective(batch, mask).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_target_streams_and_weights():
    class TwoStreams(Toy):
        def target_streams(self):
            ce = lambda pred, target: torch.nn.functional.cross_entropy(pred, target[:, 0].long(), reduction="none")
            return [TargetStream("values", weight=0.5), TargetStream("cls", dim=3, loss=ce, normalize=False)]

    objective = build("mae", TwoStreams())
    samples = [grid_sample(4, s) for s in range(2)]
    for s in samples:
        s.targets["cls"] = (s.values[:, :1] > 0).float()
    batch = collate_tokens(samples)
    out = objective(batch, RandomMasker(0.5)(batch, torch.Generator().manual_seed(0)))
    assert set(out.metrics) == {"loss", "loss_values", "loss_cls"}
    expected = 0.5 * out.metrics["loss_values"] + out.metrics["loss_cls"]
    assert torch.allclose(out.loss.detach(), expected)


def test_reconstruct_undoes_target_normalisation():
    objective = build("mae").eval()
    batch = collate_tokens([grid_sample(4, 0)])
    mask = RandomMasker(0.5)(batch, torch.Generator().manual_seed(0))
    full = objective.reconstruct(batch, mask)["values"]
    assert full.shape == batch.values.shape
    assert (full[~mask.hidden] == 0).all()


@pytest.mark.parametrize("with_mask", [None, "pad", "bias"])
def test_forward_at_equals_full_stack_then_gather(with_mask):
    from omnissl.layers import TransformerStack, attention_mask
    from omnissl.tokens import gather_rows

    torch.manual_seed(0)
    stack = TransformerStack(32, 2, 4).eval()
    x = torch.randn(3, 10, 32)
    idx = torch.tensor([[1, 4, 9], [0, 0, 2], [7, 3, 5]])
    pad = torch.zeros(3, 10, dtype=torch.bool)
    pad[1, 6:] = True
    bias = torch.randn(3, 4, 10, 10) if with_mask == "bias" else None
    mask = attention_mask(pad, bias, x.dtype) if with_mask else None
    assert torch.allclose(stack.forward_at(x, idx, mask), gather_rows(stack(x, mask), idx), atol=1e-5)


def test_builtin_masked_prediction_objectives_are_tested():
    assert {"mae", "simmim"} <= set(BUILTIN)


def test_state_dict_keys_of_mae_and_simmim_are_unchanged():
    # Checkpoints written before the contract split (streams and heads moved to MaskedPrediction) load.
    mae = build("mae").state_dict()
    assert {k.split(".")[0] for k in mae} == {"encoder", "mask_token", "decoder_embed", "decoder",
                                              "heads"}
    assert {"heads.to_values.weight", "decoder.blocks.0.attn.qkv.weight", "decoder.norm.weight"} <= set(mae)
    simmim = build("simmim").state_dict()
    assert {k for k in simmim if not k.startswith("encoder.")} == {"heads.to_values.weight", "heads.to_values.bias"}


def test_contract_optional_parts():
    # The loop and the plots test these with hasattr: the base class must not define them.
    assert not hasattr(Objective, "after_step") and not hasattr(Objective, "reconstruct")
    assert hasattr(MaskedPrediction, "reconstruct") and issubclass(MAE, MaskedPrediction)
    assert issubclass(SimMIM, MaskedPrediction)


def test_several_masks_per_sample_are_drawn_sample_major():
    objective = build("mae")
    batch = collate_tokens([grid_sample(4, 0), grid_sample(6, 1)])
    masker = RandomMasker(0.5)
    one = draw_mask(objective, masker, batch, torch.Generator().manual_seed(0))
    assert torch.equal(one.hidden, masker(batch, torch.Generator().manual_seed(0)).hidden)
    objective.masks_per_sample = 3
    many = draw_mask(objective, masker, batch, torch.Generator().manual_seed(0))
    assert many.hidden.shape == (6, batch.num_tokens)
    cloned = repeat_batch(batch, 3)
    assert torch.equal(cloned.pad, batch.pad.repeat_interleave(3, 0))
    assert torch.equal(cloned.values[4], batch.values[1]) and len(cloned.meta) == len(batch.meta) * 3
    # row b * 3 + j is mask j of sample b: its own ratio, never padding, and the three differ
    assert not (many.hidden & cloned.pad).any()
    assert many.hidden.sum(1).tolist() == [8, 8, 8, 18, 18, 18]
    assert len({tuple(row.tolist()) for row in many.hidden[3:]}) == 3
    again = draw_mask(objective, masker, batch, torch.Generator().manual_seed(0))
    assert torch.equal(many.hidden, again.hidden)


def test_draw_mask_falls_back_to_the_masker_for_plain_modules():
    class Plain(torch.nn.Module):
        pass

    batch = collate_tokens([grid_sample(4, 0)])
    mask = draw_mask(Plain(), RandomMasker(0.5), batch, torch.Generator().manual_seed(1))
    assert torch.equal(mask.hidden, RandomMasker(0.5)(batch, torch.Generator().manual_seed(1)).hidden)
