"""ResNet-50 v1.5 in Keras alone (no TensorFlow import), so that it builds on
every Keras backend: the zoo's trainer uses it through `models.resnet50`, and
`bench.gpu_report` on machines without TensorFlow."""

import keras
from keras import layers


def _bottleneck(x, filters, stride, name):
    """Bottleneck block v1.5: 1x1, 3x3 (strided), 1x1 x4, projection
    shortcut when the shape changes; the last batch norm starts at zero."""

    def conv_bn(y, channels, kernel, conv_stride, suffix, zero_gamma=False):
        y = layers.Conv2D(channels, kernel, strides=conv_stride, padding="same",
                          use_bias=False, kernel_initializer="he_normal",
                          name=f"{name}_{suffix}_conv")(y)
        return layers.BatchNormalization(
            momentum=0.9, epsilon=1e-5,
            gamma_initializer="zeros" if zero_gamma else "ones",
            name=f"{name}_{suffix}_batch_norm")(y)

    shortcut = x
    if stride != 1 or x.shape[-1] != 4 * filters:
        shortcut = conv_bn(x, 4 * filters, 1, stride, "shortcut")
    y = layers.ReLU()(conv_bn(x, filters, 1, 1, "1"))
    y = layers.ReLU()(conv_bn(y, filters, 3, stride, "2"))
    y = conv_bn(y, 4 * filters, 1, 1, "3", zero_gamma=True)
    return layers.ReLU()(keras.ops.add(y, shortcut))


def build_resnet50(image_size=224, num_classes=1000):
    """ResNet-50 v1.5; logits in float32 whatever the dtype policy."""

    inputs = keras.Input((image_size, image_size, 3))
    x = layers.Conv2D(64, 7, strides=2, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name="stem_conv")(inputs)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5,
                                  name="stem_batch_norm")(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for stage, (filters, blocks) in enumerate(
            zip((64, 128, 256, 512), (3, 4, 6, 3)), start=2):
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 2 else 1
            x = _bottleneck(x, filters, stride, f"stage{stage}_block{block + 1}")
    x = layers.GlobalAveragePooling2D()(x)
    logits = layers.Dense(num_classes, kernel_initializer=keras.initializers
                          .RandomNormal(stddev=0.01), name="logits")(x)
    outputs = layers.Activation("linear", dtype="float32")(logits)
    return keras.Model(inputs, outputs, name="resnet50")
