"""DataModules: real Fashion-MNIST files, CIFAR pickles, ImageFolder trees, and clear errors for bad data."""
import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from moga_lab.data import (DEFAULT_FASHION_MNIST_DIR, CIFARDataModule, CorruptImageError, DataError,
                           FashionMNISTDataModule, ImageFolderDataModule, SyntheticDataModule, create_datamodule)
from moga_lab.data.fashion_mnist import read_idx

HAVE_FMNIST = os.path.isfile(os.path.join(DEFAULT_FASHION_MNIST_DIR, 't10k-images-idx3-ubyte.gz'))


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b''.join(int(d).to_bytes(4, 'big') for d in array.shape)
    with gzip.open(path, 'wb') as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.skipif(not HAVE_FMNIST, reason='dataset-fashion-mnist not installed')
def test_fashion_mnist_real_files():
    dm = FashionMNISTDataModule(batch_size=32)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (55000, 5000, 10000)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (256, 1, 28, 28) and x.dtype == torch.float32
    # normalised with the training-set statistics: roughly zero mean, unit std over the test set
    assert abs(float(x.mean())) < 0.2 and 0.7 < float(x.std()) < 1.3
    labels = dm.test_set.labels
    assert torch.bincount(labels).tolist() == [1000] * 10
    # the split is fixed by the seed: same on every run
    again = FashionMNISTDataModule()
    again.setup('fit')
    assert dm.val_set.indices[:20] == again.val_set.indices[:20]
    assert not set(dm.val_set.indices) & set(dm.train_set.indices)


def test_fashion_mnist_from_a_data_dir(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (('train', 60), ('t10k', 20)):
        _write_idx(tmp_path / f'{prefix}-images-idx3-ubyte.gz', rng.integers(0, 255, (n, 28, 28)))
        _write_idx(tmp_path / f'{prefix}-labels-idx1-ubyte.gz', np.arange(n) % 10)
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), val_size=10, batch_size=8)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (50, 10, 20)
    assert next(iter(dm.train_dataloader()))[0].shape == (8, 1, 28, 28)


def test_fashion_mnist_missing_directory_says_how_to_get_it(tmp_path):
    dm = FashionMNISTDataModule(data_dir=str(tmp_path / 'nowhere'))
    with pytest.raises(DataError, match=r'nowhere does not exist: install .*apt-get install dataset-fashion-mnist'):
        dm.setup()
    with pytest.raises(DataError, match=r'train-images-idx3-ubyte\[\.gz\] not found in'):
        FashionMNISTDataModule(data_dir=str(tmp_path)).setup()


def test_malformed_idx_files(tmp_path):
    bad = tmp_path / 'x.gz'
    with gzip.open(bad, 'wb') as f:
        f.write(b'\x00\x00\x0d\x01' + (5).to_bytes(4, 'big'))
    with pytest.raises(DataError, match='not an unsigned-byte IDX file'):
        read_idx(str(bad))
    with gzip.open(bad, 'wb') as f:
        f.write(b'\x00\x00\x08\x01' + (5).to_bytes(4, 'big') + b'\x01\x02')
    with pytest.raises(DataError, match='truncated'):
        read_idx(str(bad))


def _write_cifar(root, n=30):
    folder = root / 'cifar-10-batches-py'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        batch = {'data': rng.integers(0, 255, (n, 3072), dtype=np.uint8), 'labels': list(np.arange(n) % 10)}
        with open(folder / name, 'wb') as f:
            pickle.dump(batch, f)
    with open(folder / 'batches.meta', 'wb') as f:
        pickle.dump({'label_names': ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse',
                                     'ship', 'truck']}, f)
    return folder


def test_cifar_pickles(tmp_path):
    _write_cifar(tmp_path)
    dm = create_datamodule('cifar10', data_dir=str(tmp_path), val_size=20, batch_size=4)
    dm.setup()
    assert dm.info.class_names[0] == 'airplane' and dm.in_chans == 3 and dm.image_size == 32
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (130, 20, 30)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32)


def test_cifar_missing_is_clear(tmp_path):
    with pytest.raises(DataError, match=r'looked for test_batch in .* or pass --download'):
        CIFARDataModule(data_dir=str(tmp_path)).setup()
    with pytest.raises(DataError, match='needs --data-dir'):
        CIFARDataModule()


def _write_tree(root, corrupt=False):
    from PIL import Image
    for split in ('train', 'val'):
        for c, colour in (('cat', (255, 0, 0)), ('dog', (0, 0, 255))):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(3):
                Image.new('RGB', (40, 30), colour).save(d / f'{i}.png')
    if corrupt:
        (root / 'val' / 'dog' / 'broken.jpg').write_bytes(b'not a jpeg')


def test_imagefolder_tree_with_timm_transforms(tmp_path):
    _write_tree(tmp_path)
    dm = ImageFolderDataModule(data_dir=str(tmp_path), image_size=32, batch_size=2, num_workers=0)
    dm.setup()
    assert dm.info.class_names == ('cat', 'dog') and dm.num_classes == 2
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (6, 3, 32, 32)
    # red images: after ImageNet normalisation the red channel is high, blue low
    assert float(x[y == 0, 0].mean()) > 1.5 and float(x[y == 0, 2].mean()) < -1.5
    xt, _ = next(iter(dm.train_dataloader()))
    assert xt.shape == (2, 3, 32, 32)


def test_imagefolder_corrupt_image_names_the_file(tmp_path):
    _write_tree(tmp_path, corrupt=True)
    dm = ImageFolderDataModule(data_dir=str(tmp_path), image_size=32, num_workers=0)
    dm.setup('validate')
    with pytest.raises(CorruptImageError, match=r'broken\.jpg'):
        list(dm.val_dataloader())


def test_imagefolder_missing_root(tmp_path):
    with pytest.raises(DataError, match=r'does not exist: pass --data-dir'):
        ImageFolderDataModule(data_dir=str(tmp_path / 'none'))


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; accepted: fashion-mnist, cifar10"):
        create_datamodule('mnist')


def test_synthetic_is_deterministic():
    a, b = SyntheticDataModule(seed=3), SyntheticDataModule(seed=3)
    a.setup()
    b.setup()
    torch.testing.assert_close(a.test_set.images, b.test_set.images)
