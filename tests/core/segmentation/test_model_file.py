import json

import pytest
import torch

from glacier_mapper_plugin.core.segmentation.model_file import (ModelFileError, ModelHeader, load_model,
                                                   new_model, read_header, save_model)


def test_round_trip_header_and_weights(tmp_path):
    net, header = new_model(tmp_path / "m.gmm", ["B2", "B3", "B4"], mean=[0.1, 0.2, 0.3],
                            std=[1, 2, 3], encoder="resnet18", seed=3, metrics={"iou": 0.5})
    back, h2 = load_model(tmp_path / "m.gmm")
    assert h2 == header and h2.metrics == {"iou": 0.5}
    for (k, a), (_, b) in zip(net.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    assert not back.training


def test_header_is_readable_json_in_safetensors(tmp_path):
    new_model(tmp_path / "m.gmm", ["B8"], encoder="resnet18")
    raw = (tmp_path / "m.gmm").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    meta = json.loads(raw[8:8 + n])["__metadata__"]
    assert json.loads(meta["glacier_mapper"])["bands"] == ["B8"]


def test_truncated_file(tmp_path):
    new_model(tmp_path / "m.gmm", ["B2"], encoder="resnet18")
    data = (tmp_path / "m.gmm").read_bytes()
    (tmp_path / "t.gmm").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        load_model(tmp_path / "t.gmm")


def test_garbage_and_missing_file(tmp_path):
    (tmp_path / "g.gmm").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelFileError, match="not a readable safetensors"):
        read_header(tmp_path / "g.gmm")
    with pytest.raises(ModelFileError, match="does not exist"):
        read_header(tmp_path / "nope.gmm")


class _Boom:
    def __reduce__(self):
        import os
        return (os.system, ("touch /tmp/glacier_mapper_pwned",))


def test_pickle_is_never_unpickled(tmp_path):
    import os
    if os.path.exists("/tmp/glacier_mapper_pwned"):
        os.remove("/tmp/glacier_mapper_pwned")
    torch.save({"x": _Boom()}, tmp_path / "evil.gmm")
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "evil.gmm")
    assert not os.path.exists("/tmp/glacier_mapper_pwned")


def test_weights_that_do_not_fit_the_architecture(tmp_path):
    net, header = new_model(tmp_path / "m.gmm", ["B2", "B3"], encoder="resnet18")
    header.encoder = "resnet34"
    save_model(tmp_path / "lie.gmm", net, header)
    with pytest.raises(ModelFileError, match="do not fit a Unet with a resnet34 encoder"):
        load_model(tmp_path / "lie.gmm")


def test_safetensors_without_header(tmp_path):
    from safetensors.torch import save_file
    save_file({"a": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ModelFileError, match="without a Glacier Mapper header"):
        read_header(tmp_path / "plain.safetensors")


@pytest.mark.parametrize("change, word", [(dict(std=[0.0]), "non-positive"),
                                          (dict(mean=[0.0, 1.0]), "normalisation"),
                                          (dict(architecture="DeepLabV3"), "not supported"),
                                          (dict(format_version=99), "newer"),
                                          (dict(bands=["B2", "B2"], mean=[0, 0], std=[1, 1]), "repeats")])
def test_invalid_headers(change, word):
    fields = dict(bands=["B2"], mean=[0.0], std=[1.0])
    fields.update(change)
    with pytest.raises(ModelFileError, match=word):
        ModelHeader(**fields).validate()
