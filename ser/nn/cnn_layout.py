"""A trained layer-norm CNN feature extractor, computed on contiguous tensors (same results).

Each layer of the WavLM-large / HuBERT-large style CNN in Hugging Face is ``conv -> transpose ->
LayerNorm over channels -> transpose -> GELU``. Left as it is, the GELU gets a transposed view
while its gradient arrives contiguous, and each convolution gets a channels-last gradient from
the layer norm's backward: both take PyTorch's slow strided paths on CPU. On the demo's tiny
WavLM (2 s crops, batches of 8, one thread) the CNN's forward and backward took 120 ms, against
65 ms with the copies below (``torch.profiler``: the GELU backward of the first layer alone went
from 27 ms to 3 ms). Hugging Face also makes the waveform require grad when the CNN trains
(for gradient checkpointing, which these encoders do not use), so the first convolution
computed a gradient for the audio itself: that is turned off too.

It only matters when the CNN is trained (the demo's random-init encoders). The systems freeze
WavLM-large's CNN (paper §6.4), which then builds no autograd graph at all.

Example
-------
>>> import tempfile, torch
>>> from transformers import WavLMModel
>>> from ser.nn.tiny_models import build_tiny_models
>>> model = WavLMModel.from_pretrained(build_tiny_models(tempfile.mkdtemp())["wavlm"])
>>> wav = torch.randn(2, 16000)
>>> before = model.feature_extractor(wav)
>>> contiguous_layer_norm_cnn(model.feature_extractor)
7
>>> torch.allclose(model.feature_extractor(wav), before, atol=1e-5)
True
"""

from torch import autograd, nn

__all__ = ["contiguous_layer_norm_cnn"]


class _ContiguousGradient(autograd.Function):
    """Identity forward; the gradient going back is made contiguous."""

    @staticmethod
    def forward(ctx, tensor):
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, gradient):
        return gradient.contiguous()


class ContiguousLayerNormConv(nn.Module):
    """One layer-norm CNN layer: the same ``conv``, ``layer_norm`` and ``activation`` modules.

    The attribute names are the Hugging Face layer's, so checkpoints (state dicts) are the same.
    """

    def __init__(self, layer):
        super().__init__()
        self.conv, self.layer_norm, self.activation = layer.conv, layer.layer_norm, layer.activation

    def forward(self, hidden_states):
        hidden_states = _ContiguousGradient.apply(self.conv(hidden_states))
        hidden_states = self.layer_norm(hidden_states.transpose(-2, -1).contiguous())
        return self.activation(hidden_states.transpose(-2, -1).contiguous())


def contiguous_layer_norm_cnn(feature_extractor):
    """Swap the layer-norm CNN layers of a Hugging Face feature encoder in place.

    Parameters
    ----------
    feature_extractor : torch.nn.Module
        ``model.feature_extractor`` of a WavLM, HuBERT or wav2vec 2.0 model. Layers without a
        ``LayerNorm`` (the group-norm CNN of wav2vec2-base) are left as they are.

    Returns
    -------
    int
        How many layers were swapped.
    """
    layers = feature_extractor.conv_layers
    swapped = 0
    for index, layer in enumerate(layers):
        if isinstance(getattr(layer, "layer_norm", None), nn.LayerNorm) and hasattr(layer, "conv"):
            layers[index] = ContiguousLayerNormConv(layer)
            swapped += 1
    if getattr(feature_extractor, "gradient_checkpointing", False) is False:
        # Only gradient checkpointing needs the waveform to require grad.
        feature_extractor._requires_grad = False
    return swapped
