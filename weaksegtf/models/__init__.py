"""Keras models (imports TensorFlow)."""

from weaksegtf.models.classifier_head import ClassifierHead
from weaksegtf.models.resnet18_encoder import ResNet18Encoder
from weaksegtf.models.segmentation_head import SegmentationHead
from weaksegtf.models.unet_backbone import UNetBackbone
from weaksegtf.models.weak_segmenter import WeakSegmenter

__all__ = ["ClassifierHead", "ResNet18Encoder", "SegmentationHead", "UNetBackbone", "WeakSegmenter"]
