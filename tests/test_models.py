import pytest
import torch

from genreclf.errors import ModelError
from genreclf.models import MODELS, create_model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_backward_shapes_gradients_and_no_nan(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=5)
    x = torch.randn(4, 1, 32, 40)  # (batch, 1, mels, frames)
    logits = model(x)
    assert logits.shape == (4, 5)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


def test_resnet18_takes_one_channel_and_any_length() -> None:
    model = create_model("resnet18", num_classes=3).eval()
    assert model.conv1.in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64, 87)).shape == (2, 3)
        assert model(torch.randn(2, 1, 64, 200)).shape == (2, 3)


def test_unknown_model_and_too_few_classes_are_clear_errors() -> None:
    with pytest.raises(ModelError, match=r"known models: .*resnet18"):
        create_model("vgg", num_classes=3)
    with pytest.raises(ModelError, match="at least 2 classes"):
        create_model("resnet18", num_classes=1)
