"""Trained models shared by the runtime and precision tests (test_backends, test_quantisation):
each is trained once per session."""
from types import SimpleNamespace

import pytest

from glacier_mapper_plugin.core.labels import Inventory
from glacier_mapper_plugin.core.segmentation.train import TrainOptions, train_model
from glacier_mapper_plugin.core.vector import read_layer


@pytest.fixture(scope="session")
def trained(small_region, tmp_path_factory):
    """8 epochs on the synthetic region: a map with both classes."""
    path = tmp_path_factory.mktemp("backend") / "m.gmm"
    inv = Inventory.from_layer(read_layer(small_region.inventory, "inventory"))
    train_model([small_region.imagery_start], inv, path, small_region.dem,
                TrainOptions(patch_size=64, encoder="resnet18", epochs=8, batch_size=4, device="cpu", seed=1,
                             learning_rate=0.01))
    return path


@pytest.fixture(scope="session")
def khumbu(shared_data, tmp_path_factory):
    """A model trained 3 epochs on the train part of ../shared/data/everest_west (Landsat 7 over
    Khumbu, RGI 6.0 outlines; scripts/bench_accuracy.py's split), the test part and its truth."""
    from scripts.bench_accuracy import TEST_ROWS, TRAIN_ROWS, crop, truth_on
    work = tmp_path_factory.mktemp("khumbu")
    data = shared_data / "everest_west"
    inv = Inventory.from_layer(read_layer(data / "rgi60_everest_west.gpkg"), "RGIId")
    train, test = crop(data / "everest_west.tif", TRAIN_ROWS, work / "train.tif"), \
        crop(data / "everest_west.tif", TEST_ROWS, work / "test.tif")
    model = work / "khumbu.gmm"
    train_model([train], inv, model, None, TrainOptions(patch_size=64, encoder="resnet18", epochs=3, batch_size=8,
                                                        device="cpu", seed=1, quality="none",
                                                        patch_cache=str(work / "p")))
    return SimpleNamespace(model=model, test=test, truth=truth_on(test, inv))
