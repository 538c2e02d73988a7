"""ImageNet input: TFRecords of the TPU reference models, TFDS, synthetic.

TFRecord format (as written by the TPU reference `imagenet_to_gcs.py`): one
`tf.train.Example` per image with `image/encoded` (JPEG bytes) and
`image/class/label` (int64, 1..1000; `label_offset` = 1 maps it to 0..999),
in files `train-*` and `validation-*` under the data folder.

Training images get an Inception-style random crop (area 8%-100%, aspect
3/4-4/3) and a random horizontal flip; evaluation images a central crop of
87.5%. Both are resized to `image_size` and normalised with the ImageNet mean
and standard deviation. Decoding runs in parallel (`tf.data.AUTOTUNE`) and
batches are prefetched.
"""

import os

import tensorflow as tf

from models.common.data import DataError

NUM_CLASSES = 1000
NUM_TRAIN_EXAMPLES = 1_281_167
NUM_EVAL_EXAMPLES = 50_000
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
CENTRAL_FRACTION = 0.875
FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
}


def _normalize(image):
    return (tf.cast(image, tf.float32) - MEAN_RGB) / STDDEV_RGB


def preprocess_train(jpeg, image_size, seed=1):
    """Random crop of the encoded JPEG (decoded inside the crop only), random
    flip, resize, normalise. Returns float32 [image_size, image_size, 3].
    `seed` is the ops' seed (with the global one: a reproducible sequence;
    op determinism requires it non-zero)."""
    shape = tf.io.extract_jpeg_shape(jpeg)
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True, seed=seed)
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.io.decode_and_crop_jpeg(jpeg, window, channels=3)
    image = tf.image.random_flip_left_right(image, seed=seed)
    image = tf.image.resize(image, [image_size, image_size])
    return _normalize(image)


def preprocess_eval(jpeg, image_size):
    """Central crop (87.5%), resize, normalise."""
    image = tf.io.decode_jpeg(jpeg, channels=3)
    image = tf.image.central_crop(image, CENTRAL_FRACTION)
    image = tf.image.resize(image, [image_size, image_size])
    return _normalize(image)


def record_files(data_dir, split):
    """The sorted TFRecord files of `split` ("train" or "validation")."""
    pattern = os.path.join(data_dir, f"{split}-*")
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise DataError(
            f"No ImageNet TFRecord files match {pattern}. Pass --data_dir with "
            f"the train-* and validation-* files of the TPU reference format, "
            "or --data=tfds or --data=synthetic.")
    return files


def parse_record(serialized, label_offset):
    parsed = tf.io.parse_single_example(serialized, FEATURES)
    label = tf.cast(parsed["image/class/label"] - label_offset, tf.int32)
    return parsed["image/encoded"], label


def check_first_record(files, label_offset):
    """Parses and decodes the first record eagerly, so that a malformed file
    is one clear error instead of a failure deep inside the training loop."""
    for serialized in tf.data.TFRecordDataset(files[:1]).take(1):
        try:
            jpeg, label = parse_record(serialized, label_offset)
            tf.io.decode_jpeg(jpeg, channels=3)
        except (tf.errors.InvalidArgumentError, ValueError) as error:
            detail = str(error).strip().splitlines()[0][:300]
            raise DataError(
                f"{files[0]} is not an ImageNet TFRecord of the TPU reference "
                "format (features image/encoded: JPEG bytes, "
                f"image/class/label: int64): {detail}") from None
        if not 0 <= int(label) < NUM_CLASSES:
            raise DataError(
                f"{files[0]}: label {int(label) + label_offset} minus "
                f"--label_offset={label_offset} is outside [0, {NUM_CLASSES}).")
        return
    raise DataError(f"{files[0]} holds no records.")


def tfrecord_dataset(files, *, training, image_size, per_replica_batch,
                     input_context, label_offset=1, seed=0, eval_examples=None):
    """Per-replica batches from TFRecord files, sharded over input pipelines
    by file: (image, label) for training, (image, label, mask) batches of the
    first `eval_examples` records otherwise."""
    files = tf.data.Dataset.from_tensor_slices(files)
    if training:
        files = files.shuffle(1024, seed=seed)
    files = files.shard(input_context.num_input_pipelines,
                        input_context.input_pipeline_id)
    dataset = files.interleave(tf.data.TFRecordDataset,
                               cycle_length=tf.data.AUTOTUNE,
                               num_parallel_calls=tf.data.AUTOTUNE,
                               deterministic=not training)
    if training:
        dataset = dataset.shuffle(16 * per_replica_batch, seed=seed).repeat()

    def prepare(serialized):
        jpeg, label = parse_record(serialized, label_offset)
        image = (preprocess_train(jpeg, image_size) if training
                 else preprocess_eval(jpeg, image_size))
        return image, label

    return _batched(dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE),
                    training, image_size, per_replica_batch, input_context,
                    eval_examples)


def eval_steps(eval_examples, per_replica_batch, input_context):
    """Steps that cover `eval_examples` at the global evaluation batch."""
    return -(-eval_examples // (per_replica_batch
                                * input_context.num_replicas_in_sync))


def _batched(dataset, training, image_size, per_replica_batch, input_context,
             eval_examples):
    """Training: full batches. Evaluation: this input pipeline's share of the
    first `eval_examples` examples as (image, label, mask) batches, padded
    (mask 0) to the same number of steps on every input pipeline, so that
    every replica runs the same steps with static shapes."""
    if training:
        return dataset.batch(per_replica_batch, drop_remainder=True) \
            .prefetch(tf.data.AUTOTUNE)
    pipelines = input_context.num_input_pipelines
    local_replicas = input_context.num_replicas_in_sync // pipelines
    share = eval_examples // pipelines + (
        input_context.input_pipeline_id < eval_examples % pipelines)
    padding = tf.data.Dataset.from_tensors(
        (tf.zeros([image_size, image_size, 3]), tf.constant(0), 0.0)).repeat()
    steps = eval_steps(eval_examples, per_replica_batch, input_context)
    return (dataset.take(share).map(lambda image, label: (image, label, 1.0))
            .concatenate(padding)
            .batch(per_replica_batch, drop_remainder=True)
            .take(steps * local_replicas)
            .prefetch(tf.data.AUTOTUNE))


def tfds_dataset(*, split, training, image_size, per_replica_batch,
                 input_context, data_dir=None, seed=0, eval_examples=None):
    """The same from tensorflow-datasets' `imagenet2012` (labels 0..999)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError("--data=tfds needs tensorflow-datasets: "
                        "pip install tensorflow-datasets") from None
    read_config = tfds.ReadConfig(input_context=input_context,
                                  shuffle_seed=seed)
    dataset = tfds.load("imagenet2012", split=split, data_dir=data_dir,
                        shuffle_files=training, read_config=read_config,
                        decoders={"image": tfds.decode.SkipDecoding()})
    if training:
        dataset = dataset.shuffle(16 * per_replica_batch, seed=seed).repeat()

    def prepare(example):
        image = (preprocess_train(example["image"], image_size) if training
                 else preprocess_eval(example["image"], image_size))
        return image, tf.cast(example["label"], tf.int32)

    return _batched(dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE),
                    training, image_size, per_replica_batch, input_context,
                    eval_examples)


def synthetic_dataset(*, image_size, per_replica_batch, input_context,
                      seed=0, eval_examples=None):
    """One random batch, generated on the device and repeated: the input
    costs nothing, for throughput measurement. With `eval_examples`, batches
    whose masks count exactly that many examples."""
    images = tf.random.stateless_normal(
        [per_replica_batch, image_size, image_size, 3], seed=[seed, 0])
    labels = tf.random.stateless_uniform(
        [per_replica_batch], seed=[seed, 1], maxval=NUM_CLASSES, dtype=tf.int32)
    if eval_examples is None:
        return tf.data.Dataset.from_tensors((images, labels)).repeat()
    local_replicas = (input_context.num_replicas_in_sync
                      // input_context.num_input_pipelines)
    first = input_context.input_pipeline_id * local_replicas
    global_batch = per_replica_batch * input_context.num_replicas_in_sync
    steps = eval_steps(eval_examples, per_replica_batch, input_context)

    def masked(i):  # i-th element of this pipeline: step i // local_replicas
        replica = first + i % local_replicas
        start = (i // local_replicas) * global_batch + replica * per_replica_batch
        index = start + tf.range(per_replica_batch, dtype=tf.int64)
        return images, labels, tf.cast(index < eval_examples, tf.float32)

    return tf.data.Dataset.range(steps * local_replicas).map(masked)
