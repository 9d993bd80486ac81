"""Cutting trailing padding (training and evaluation batches) changes no model output."""

import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_rimirec.config import Config
from recbole_rimirec.data.loaders import trim_padding
from recbole_rimirec.data.preparation import create_dataset, data_preparation


def test_trim_padding_cuts_to_the_longest_row():
    batch = Interaction({"seq": torch.arange(12).view(3, 4), "t": torch.ones(3, 4), "len": torch.tensor([1, 3, 2])})
    out = trim_padding(batch, ["seq", "t"], "len")
    assert out["seq"].tolist() == [[0, 1, 2], [4, 5, 6], [8, 9, 10]]
    assert out["t"].shape == (3, 3)


@pytest.mark.parametrize("name", ["SASRecAllPos", "RimiRec", "MIND", "ComiRecDR", "ComiRecSA"])
def test_trimmed_batches_score_the_same(name, tiny):
    config = Config(name, "tiny", config_dict=tiny)
    train, _, test = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    model = config.model_class(config, train._dataset)
    assert model.trims_padding
    model.eval()
    interaction = next(iter(test))[0]
    short = interaction[model.ITEM_SEQ_LEN] < model.max_seq_length - 2
    interaction = interaction[short.nonzero().squeeze(1)]  # rows that leave padding to cut
    longest = int(interaction[model.ITEM_SEQ_LEN].max())
    assert len(interaction) > 10 and longest < interaction[model.ITEM_SEQ].size(1)
    with torch.no_grad():
        full = model.full_sort_predict(interaction)
        cut = trim_padding(interaction, [model.ITEM_SEQ], model.ITEM_SEQ_LEN)  # in place, after ``full``
        assert cut[model.ITEM_SEQ].size(1) == longest
        trimmed = model.full_sort_predict(cut)
    assert torch.allclose(full, trimmed, atol=1e-5)
