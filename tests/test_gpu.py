"""The GPU path: tests marked ``gpu`` run where CUDA is available and are skipped elsewhere.

The unmarked tests check, on any machine, the parts of the GPU path that do not need a GPU:
the backend ``auto`` resolves, and the bf16 autocast runs and restores torch's state.
"""

from __future__ import annotations

import pytest
import torch

from recbole_rimirec.catalog import plugin_models
from recbole_rimirec.errors import ConfigError
from recbole_rimirec.quick_start import run
from recbole_rimirec.retrieval.index import resolve_backend

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_auto_backend_is_torch_on_a_gpu_and_faiss_elsewhere():
    assert resolve_backend("auto", torch.device("cuda", 0)) == "exact"
    assert resolve_backend("auto", torch.device("cpu")) == "faiss"
    assert resolve_backend("faiss", torch.device("cuda", 0)) == "faiss"  # a named backend is kept


def test_bf16_autocast_trains_and_restores_the_autocast_dtype(tiny, monkeypatch):
    from recbole_rimirec.model.rimirec import RimiRec

    seen = []
    loss = RimiRec.calculate_loss

    def watched(self, interaction):  # what the training step runs under
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return loss(self, interaction)

    monkeypatch.setattr(RimiRec, "calculate_loss", watched)
    before = torch.get_autocast_dtype("cpu")
    torch.set_autocast_dtype("cpu", torch.float16)
    try:
        result = run("RimiRec", "tiny", config_dict={**tiny, "epochs": 1, "enable_amp": True})
        assert seen and set(seen) == {(True, torch.bfloat16)}
        assert torch.get_autocast_dtype("cpu") == torch.float16  # bfloat16 only inside training
    finally:
        torch.set_autocast_dtype("cpu", before)
    assert result["test_result"]["ndcg@10"] >= 0


def test_bad_amp_dtype_is_one_line(tiny):
    with pytest.raises(ConfigError, match="amp_dtype 'fp8' is not one of bfloat16, float16"):
        run("SASRecAllPos", "tiny", config_dict={**tiny, "amp_dtype": "fp8"})


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("model", plugin_models())
def test_one_epoch_of_every_plugin_model_on_cuda(tiny, model):
    result = run(model, "tiny", config_dict={**tiny, "epochs": 1})  # RecBole picks CUDA where there is one
    assert result["test_result"]["ndcg@10"] >= 0


def _rimirec(tiny):
    from tests.test_rimirec import TREE, prepare

    _, _, net, _, _, test = prepare({**tiny, **TREE, "retrieval": "exact"})
    return net.eval(), next(iter(test))[0]


@pytest.mark.gpu
@cuda
def test_rimirec_retrieval_on_cuda_equals_cpu(tiny):
    net, batch = _rimirec(tiny)
    with torch.no_grad():
        cpu_s, cpu_i, *_ = net.retrieve(batch, 50)
        net.to("cuda").build_index()
        gpu_s, gpu_i, *_ = net.retrieve(batch.to("cuda"), 50)
    assert torch.allclose(gpu_s.cpu(), cpu_s, atol=1e-4)
    assert (gpu_i.cpu() == cpu_i).float().mean() > 0.99  # ties may swap places


@pytest.mark.gpu
@cuda
def test_checkpoints_move_between_gpu_and_cpu(tiny):
    from recbole_rimirec.checkpoint import load_checkpoint

    trained = run("RimiRec", "tiny", config_dict={**tiny, "tree_branching": 8, "tree_leaf_size": 10, "epochs": 1})
    state = load_checkpoint(trained["checkpoint"], map_location="cpu")["state_dict"]  # saved on the GPU
    assert all(t.device.type == "cpu" for t in state.values())
    net, batch = _rimirec(tiny)
    net.load_state_dict(state)
    with torch.no_grad():
        on_cpu = net.full_sort_predict(batch)
        path = tiny["checkpoint_dir"] + "/cpu.pth"
        torch.save({"state_dict": net.state_dict()}, path)  # saved on the CPU
        net.to("cuda").load_state_dict(load_checkpoint(path, map_location="cuda")["state_dict"])
        on_gpu = net.full_sort_predict(batch.to("cuda"))
    assert torch.allclose(on_gpu.cpu(), on_cpu, atol=1e-4)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("model", ["RimiRec", "SASRecAllPos", "ComiRecSA"])
def test_a_seed_repeats_its_metrics_on_cuda(tiny, model):
    first = run(model, "tiny", config_dict={**tiny, "epochs": 1})
    second = run(model, "tiny", config_dict={**tiny, "epochs": 1})
    assert first["test_result"] == pytest.approx(second["test_result"], abs=1e-4)
