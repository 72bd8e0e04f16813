"""torchvision state_dict import, checked against a real PyTorch forward pass."""

import numpy as np
import pytest
import torch
from torch import nn

from weaksegtf.errors import WeightsError
from weaksegtf.models import ResNet18Encoder
from weaksegtf.models.torch_weights import load_encoder_weights, load_torchvision_weights


class _BasicBlock(nn.Module):
    # torchvision.models.resnet.BasicBlock, written out because PyPI torchvision
    # does not import beside the CPU torch wheel used here.
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class _TorchResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(_BasicBlock(64, 64, 1), _BasicBlock(64, 64, 1))
        self.layer2 = nn.Sequential(_BasicBlock(64, 128, 2), _BasicBlock(128, 128, 1))
        self.layer3 = nn.Sequential(_BasicBlock(128, 256, 2), _BasicBlock(256, 256, 1))
        self.layer4 = nn.Sequential(_BasicBlock(256, 512, 2), _BasicBlock(512, 512, 1))
        self.fc = nn.Linear(512, 1000)

    def forward_to_layer3(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))


@pytest.fixture(scope="module")
def torch_model():
    torch.manual_seed(0)
    model = _TorchResNet18()
    # Non-trivial running statistics, so the batch-norm mapping is really tested.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("prefix", ["", "model.", "resnet."])
def test_state_dict_import_matches_pytorch(torch_model, tmp_path, prefix):
    path = tmp_path / "resnet18.pth"
    torch.save({prefix + k: v for k, v in torch_model.state_dict().items()}, path)
    encoder = ResNet18Encoder()
    load_torchvision_weights(encoder, path)

    x = np.random.default_rng(0).normal(size=(2, 64, 96, 3)).astype("float32")
    keras_out = np.asarray(encoder(x, training=False))
    with torch.no_grad():
        torch_out = torch_model.forward_to_layer3(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    torch_out = torch_out.transpose(0, 2, 3, 1)
    assert keras_out.shape == (2, 4, 6, 256)
    np.testing.assert_allclose(keras_out, torch_out, atol=1e-4, rtol=0)


def test_encoder_parameter_count_equals_torchvision_up_to_layer3(torch_model):
    torch_count = sum(
        p.numel() for name, p in torch_model.state_dict().items()
        if not name.startswith(("layer4", "fc")) and not name.endswith("num_batches_tracked")
    )
    encoder = ResNet18Encoder()
    print(f"encoder parameters (incl. BN statistics): {encoder.count_params():,}")
    assert encoder.count_params() == torch_count == 2_787_264


def test_keras_weights_file_round_trip(tmp_path):
    source = ResNet18Encoder()
    source.layers[2].kernel.assign(np.full(source.layers[2].kernel.shape, 0.01, "float32"))
    path = tmp_path / "encoder.weights.h5"
    source.save_weights(path)
    target = ResNet18Encoder()
    load_encoder_weights(target, path)
    x = np.ones((1, 32, 32, 3), "float32")
    np.testing.assert_array_equal(np.asarray(source(x)), np.asarray(target(x)))


def test_wrong_keys_are_refused(tmp_path, torch_model):
    state = dict(torch_model.state_dict())
    del state["layer2.0.downsample.0.weight"]
    state["layer2.0.extra.weight"] = torch.zeros(3)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"broken\.pth does not match ResNet-18.*layer2\.0\.downsample\.0\.weight.*layer2\.0\.extra\.weight"):
        load_torchvision_weights(ResNet18Encoder(), path)


def test_wrong_shape_is_refused_and_nothing_is_copied(tmp_path, torch_model):
    state = dict(torch_model.state_dict())
    state["layer3.1.conv2.weight"] = torch.zeros(256, 256, 1, 1)
    path = tmp_path / "shape.pth"
    torch.save(state, path)
    encoder = ResNet18Encoder()
    before = np.asarray(encoder.get_layer("conv1").kernel).copy()
    with pytest.raises(WeightsError, match=r"'layer3\.1\.conv2\.weight' has shape \(256, 256, 1, 1\), expected \(256, 256, 3, 3\)"):
        load_torchvision_weights(encoder, path)
    np.testing.assert_array_equal(np.asarray(encoder.get_layer("conv1").kernel), before)


def test_not_a_resnet_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(WeightsError, match="other.pth does not look like a ResNet-18 state_dict"):
        load_torchvision_weights(ResNet18Encoder(), path)
