"""Values the whole package agrees on. Importing this module imports nothing else."""

#: Mask value meaning "not annotated": such pixels count for no class and add nothing to any loss.
IGNORE_VALUE = 255
#: Height and width of every network input are multiples of this (the ResNet-18 trunk's stride).
SIZE_MULTIPLE = 16
#: Value of padding pixels in images: white, an empty slide.
IMAGE_PAD_VALUE = 255
