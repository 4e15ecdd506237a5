"""Pooling over valid frames: padding of any value must not change the output."""

import pytest
import torch

from ser.nn.pooling import AttentionPooling, MeanPooling, masked_mean_pool, valid_frame_mask

FEATURES = 6


def _poolers():
    torch.manual_seed(0)
    return {
        "mean": MeanPooling(),
        "attention_safari": AttentionPooling(FEATURES),
        "attention_mlp": AttentionPooling(FEATURES, hidden_size=5),
    }


def _pad(sequences, max_len, filler):
    """Stack variable-length (time, features) tensors, padding with filler(n, f)."""
    rows, lengths = [], []
    for seq in sequences:
        extra = max_len - seq.shape[0]
        rows.append(torch.cat([seq, filler(extra, seq.shape[1])]))
        lengths.append(seq.shape[0] / max_len)
    return torch.stack(rows), torch.tensor(lengths)


FILLERS = {
    "zeros": lambda n, f: torch.zeros(n, f),
    "random_junk": lambda n, f: 50 * torch.randn(n, f),
    "huge": lambda n, f: torch.full((n, f), 1e30),
    "inf_and_nan": lambda n, f: torch.where(
        torch.rand(n, f) < 0.5, torch.full((n, f), float("inf")), torch.full((n, f), float("nan"))
    ),
}


@pytest.mark.parametrize("pooler_name", list(_poolers()))
@pytest.mark.parametrize("filler_name", list(FILLERS))
def test_padding_leaves_each_pooled_vector_unchanged(pooler_name, filler_name):
    pooler = _poolers()[pooler_name]
    torch.manual_seed(1)
    sequences = [torch.randn(n, FEATURES) for n in (1, 3, 7, 12)]
    alone = torch.stack([pooler(s.unsqueeze(0), torch.tensor([1.0]))[0] for s in sequences])

    # Short sequences beside a long one, then even more padding after it.
    for max_len in (12, 20, 57):
        x, lengths = _pad(sequences, max_len, FILLERS[filler_name])
        pooled = pooler(x, lengths)
        assert pooled.shape == (len(sequences), FEATURES)
        assert torch.isfinite(pooled).all()
        torch.testing.assert_close(pooled, alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooler_name", list(_poolers()))
def test_batch_composition_does_not_matter(pooler_name):
    pooler = _poolers()[pooler_name]
    torch.manual_seed(2)
    short, long_ = torch.randn(4, FEATURES), torch.randn(30, FEATURES)
    x_small, len_small = _pad([short, short[:2]], 4, FILLERS["random_junk"])
    x_big, len_big = _pad([short, long_, short[:2]], 30, FILLERS["random_junk"])
    small = pooler(x_small, len_small)
    big = pooler(x_big, len_big)
    torch.testing.assert_close(big[[0, 2]], small, rtol=1e-5, atol=1e-6)


def test_attention_weights_sum_to_one_on_valid_frames_and_vanish_on_padding():
    torch.manual_seed(3)
    pooler = AttentionPooling(FEATURES, hidden_size=8)
    sequences = [torch.randn(n, FEATURES) for n in (1, 5, 9)]
    x, lengths = _pad(sequences, 9, FILLERS["huge"])
    weights = pooler.attention_weights(x, lengths).detach()
    for row, seq in enumerate(sequences):
        n = seq.shape[0]
        assert weights[row, :n].sum().item() == pytest.approx(1.0, abs=1e-6)
        assert (weights[row, :n] > 0).all()
        assert (weights[row, n:] == 0).all()


def test_attention_is_a_learned_not_uniform_average():
    # Guards against a pooler that silently degenerates to the mean.
    torch.manual_seed(4)
    pooler = AttentionPooling(FEATURES)
    x = torch.randn(1, 10, FEATURES)
    attention = pooler(x).detach()
    assert not torch.allclose(attention, x.mean(dim=1), atol=1e-4)


def test_mean_pooling_matches_plain_mean_of_valid_frames():
    torch.manual_seed(5)
    x = torch.randn(2, 8, 3)
    pooled = MeanPooling()(x, torch.tensor([1.0, 3 / 8]))
    torch.testing.assert_close(pooled[0], x[0].mean(dim=0))
    torch.testing.assert_close(pooled[1], x[1, :3].mean(dim=0))


@pytest.mark.parametrize("pooler_name", list(_poolers()))
def test_gradients_are_finite_with_junk_padding(pooler_name):
    pooler = _poolers()[pooler_name]
    torch.manual_seed(6)
    x, lengths = _pad([torch.randn(2, FEATURES), torch.randn(6, FEATURES)], 6,
                      FILLERS["inf_and_nan"])
    x.requires_grad_(True)
    pooler(x, lengths).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad[0, 2:] == 0).all()
    for parameter in pooler.parameters():
        assert torch.isfinite(parameter.grad).all()


def test_large_valid_values_stay_finite_in_attention():
    pooler = AttentionPooling(FEATURES)
    with torch.no_grad():
        pooler.scorer.weight.fill_(1.0)
    x = torch.full((1, 4, FEATURES), 1e4)
    x[0, 0] = -1e4
    assert torch.isfinite(pooler(x)).all()


def test_mask_rounds_relative_lengths_like_speechbrain():
    mask = valid_frame_mask(torch.tensor([1.0, 0.5, 0.34, 0.01]), 10)
    assert mask.sum(dim=1).tolist() == [10, 5, 3, 1]  # 0.1 frame rounds to 0 -> kept 1


@pytest.mark.parametrize("bad", [[0.0], [1.5], [-0.2], [float("nan")]])
def test_bad_lengths_give_a_clear_error(bad):
    with pytest.raises(ValueError, match="relative lengths in"):
        masked_mean_pool(torch.zeros(1, 4, 2), torch.tensor(bad))


def test_bad_shapes_give_a_clear_error():
    with pytest.raises(ValueError, match="batch, time, features"):
        MeanPooling()(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="lengths has 1 entries but the batch has 2"):
        MeanPooling()(torch.zeros(2, 4, 2), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="built for 6 features, got 2"):
        AttentionPooling(6)(torch.zeros(1, 4, 2))
