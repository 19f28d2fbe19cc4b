"""Every model the book trains, one file per family."""

from .mnist import MnistCNN
from .dcgan import DCGANDiscriminator, DCGANGenerator, dcgan
from .dcgan import ConditionalDCGANGenerator, ProjectionDiscriminator, conditional_dcgan
from .resnet import ResNet, CifarResNet, BasicBlock, Bottleneck, PlainBlock, resnet18, resnet34, resnet50, resnet20, resnet32, resnet44, resnet56, resnet110, cifar_resnet, plain_cifar
from .classic import LeNet5, lenet5, AlexNet, alexnet, VGG, vgg11, vgg16, Inception, GoogLeNet, googlenet
from .cifar import CifarConvNet, ThreeConvNet, cifar_convnet, three_conv_net
from .mnist import MnistBNNet, ConvBlock, conv_bn_relu
from .deep import PlainCNN, plain_cnn
