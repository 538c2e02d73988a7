"""ResNet-50 v1.5 with LEGW + LARS: model, ImageNet TFRecord input, errors.
Tiny images keep it to seconds on a CPU."""


import numpy as np
import pytest
import tensorflow as tf

from models import resnet50
from models import resnet50_input
from models.common.data import DataError
from models.common.flags import run_options, schedule_of


def _jpeg(rng, size=40):
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    return tf.io.encode_jpeg(pixels).numpy()


def _example(features):
    return tf.train.Example(features=tf.train.Features(feature=features)) \
        .SerializeToString()


def _write_records(path, count, rng):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for _ in range(count):
            writer.write(_example({
                "image/encoded": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[_jpeg(rng)])),
                "image/class/label": tf.train.Feature(
                    int64_list=tf.train.Int64List(
                        value=[int(rng.integers(1, 1001))])),
            }))


def test_parameter_count_and_v1_5_strides():
    model = resnet50.build_resnet50()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 25_557_032  # the published ResNet-50 count
    # v1.5: the 3x3 convolution of a stage's first block is strided.
    assert model.get_layer("stage3_block1_2_conv").strides == (2, 2)
    assert model.get_layer("stage3_block1_1_conv").strides == (1, 1)
    assert model.output.dtype == "float32"


def test_default_flags_are_the_papers_table_4():
    _, options = run_options(resnet50.Options, resnet50.BASE,
                             dict(batch_size=32768))
    schedule = schedule_of(options, resnet50_input.NUM_TRAIN_EXAMPLES)
    assert schedule.peak_learning_rate == pytest.approx(32.0)  # 2^5
    assert schedule.warmup_epochs == pytest.approx(10.0)
    assert schedule.decay == "polynomial" and schedule.total_epochs == 90


def test_tfrecords_train_two_steps_on_two_replicas(tmp_path):
    rng = np.random.default_rng(0)
    _write_records(tmp_path / "train-00000-of-00002", 6, rng)
    _write_records(tmp_path / "train-00001-of-00002", 6, rng)
    _write_records(tmp_path / "validation-00000-of-00001", 9, rng)
    results = resnet50.run(
        batch_size=4, data="tfrecord", data_dir=str(tmp_path), image_size=32,
        max_steps=2, num_train_examples=12, num_eval_examples=5,
        eval_batch_size=4, strategy="mirrored", num_cpu_devices=2,
        model_dir=str(tmp_path / "run"), verbose=0)
    assert results["steps"] == 2 and results["num_replicas"] == 2
    assert results["eval_examples"] == 5  # 5 of the 9, padding masked out
    assert 0.0 <= results["top1_accuracy"] <= 1.0
    assert results["images_per_second"] > 0
    assert np.isfinite(results["final_loss"])


def test_eval_size_defaults():
    assert resnet50.eval_sizes("synthetic", 2, None, None) == (2, 2)
    assert resnet50.eval_sizes("synthetic", 4096, None, None) == (1024, 1024)
    assert resnet50.eval_sizes("tfrecord", 2, None, None) == (1024, 50_000)
    assert resnet50.eval_sizes("tfds", 256, 512, 1000) == (512, 1000)
    with pytest.raises(ValueError, match="--num_eval_examples must be"):
        resnet50.eval_sizes("synthetic", 2, None, 0)


def test_missing_records_are_one_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"No ImageNet TFRecord files match "
                                        r".*train-\*"):
        resnet50.run(batch_size=4, data="tfrecord", data_dir=str(tmp_path),
                     num_cpu_devices=2, model_dir=str(tmp_path / "run"))


def test_malformed_records_are_one_clear_error(tmp_path):
    with tf.io.TFRecordWriter(str(tmp_path / "train-0")) as writer:
        writer.write(_example({"image/raw": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[b"x"]))}))
    (tmp_path / "validation-0").write_bytes(b"")
    with pytest.raises(DataError, match="is not an ImageNet TFRecord of the "
                                        "TPU reference format"):
        resnet50.run(batch_size=4, data="tfrecord", data_dir=str(tmp_path),
                     num_cpu_devices=2, model_dir=str(tmp_path / "run"))


def _coordinate_image(size=48, step=5):
    """Red = 5 x column, green = 5 x row, blue = 100: each pixel says where
    it came from."""
    rows, cols = np.mgrid[0:size, 0:size]
    return np.stack([cols * step, rows * step, np.full_like(rows, 100)],
                    axis=-1).astype(np.uint8)


def _denormalize(image):
    return (np.asarray(image) * np.array(resnet50_input.STDDEV_RGB)
            + np.array(resnet50_input.MEAN_RGB))


def test_eval_crop_is_the_central_87_5_percent():
    # 48 x 0.875 = 42: a margin of 3 pixels each side; resized to 42 the
    # crop is unchanged, so pixel (i, j) comes from (i + 3, j + 3).
    image = _coordinate_image()
    jpeg = tf.io.encode_jpeg(image, quality=100)
    got = _denormalize(resnet50_input.preprocess_eval(jpeg, 42))
    error = np.abs(got - image[3:45, 3:45])
    # JPEG (chroma subsampling) moves a few values by up to ~4; a crop one
    # pixel off moves every red and green value by 5.
    assert error.mean() < 1.5 and error.max() < 8, (error.mean(), error.max())


def test_train_crop_is_an_upright_window_flipped_left_right_only():
    image = _coordinate_image()
    jpeg = tf.io.encode_jpeg(image, quality=100)
    flips = set()
    for seed in range(1, 9):
        tf.random.set_seed(seed)
        got = _denormalize(resnet50_input.preprocess_train(jpeg, 16, seed))
        red, green = got[..., 0], got[..., 1]
        # Columns run one way across the image (both ways over seeds), rows
        # always top to bottom; each row holds the same columns.
        column_step = np.diff(red.mean(axis=0))
        assert np.all(column_step > 0) or np.all(column_step < 0)
        flips.add(bool(column_step[0] < 0))
        assert np.all(np.diff(green.mean(axis=1)) > 0)
        np.testing.assert_allclose(red, red[:1].repeat(16, 0), atol=6)
        np.testing.assert_allclose(got[..., 2], 100, atol=6)
        assert red.min() >= -6 and red.max() <= 5 * 47 + 6
    assert flips == {False, True}


def test_preprocessing_shapes_and_normalisation():
    gray = np.full((50, 60, 3), 124, np.uint8)
    jpeg = tf.io.encode_jpeg(gray, quality=100)
    train = resnet50_input.preprocess_train(jpeg, 32)
    evaluation = resnet50_input.preprocess_eval(jpeg, 32)
    assert train.shape == evaluation.shape == (32, 32, 3)
    expected = (124.0 - np.array(resnet50_input.MEAN_RGB)) / np.array(
        resnet50_input.STDDEV_RGB)
    np.testing.assert_allclose(evaluation.numpy().mean(axis=(0, 1)), expected,
                               atol=0.03)


@pytest.mark.parametrize("kwargs,message", [
    (dict(dtype="float64"), "--dtype must be one of"),
    (dict(data="imagenet"), "--data must be one of"),
    (dict(data="tfrecord"), "--data=tfrecord needs --data_dir"),
])
def test_bad_arguments(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        resnet50.run(batch_size=4, model_dir=str(tmp_path), **kwargs)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_mixed_precision_synthetic_step(dtype, tmp_path):
    """Two steps in each dtype; with bfloat16, synthetic data's default
    evaluation: one batch of the training size (the padded count of a
    chosen size: the TFRecord test above)."""
    evaluation = {} if dtype == "bfloat16" else dict(num_eval_examples=2,
                                                     eval_batch_size=2)
    results = resnet50.run(batch_size=2, data="synthetic", dtype=dtype,
                           image_size=32, max_steps=2, num_train_examples=8,
                           num_cpu_devices=2, model_dir=str(tmp_path),
                           verbose=0, **evaluation)
    assert results["steps"] == 2
    assert np.isfinite(results["final_loss"])
    assert results["eval_examples"] == 2
