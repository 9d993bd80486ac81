"""MostPop: exact training counts, scored without reading the history."""

import numpy as np
import torch

from recbole_rimirec.config import Config
from recbole_rimirec.data.loaders import train_sequences
from recbole_rimirec.data.preparation import create_dataset, data_preparation
from recbole_rimirec.quick_start import run


def test_counts_every_training_interaction_once(tiny):
    config = Config("MostPop", "tiny", config_dict=tiny)
    train, _, test = data_preparation(config, create_dataset(config))
    model = config.model_class(config, train._dataset)
    _, flat, _ = train_sequences(train._dataset)
    want = np.bincount(flat, minlength=model.n_items)
    want[0] = 0
    assert model.counts.numpy().tolist() == want.tolist()
    batch = next(iter(test))[0]
    scores = model.full_sort_predict(batch)
    shuffled = batch[model.ITEM_SEQ][torch.randperm(len(scores))]
    batch.interaction[model.ITEM_SEQ] = shuffled
    assert torch.equal(scores, model.full_sort_predict(batch))  # the history never matters
    assert torch.equal(model.predict(batch), model.counts[batch[model.ITEM_ID]])


def test_runs_one_epoch_under_the_sequential_protocol(tiny):
    result = run("MostPop", "tiny", config_dict={**tiny, "epochs": 5})
    assert result["timings"]["epochs"] == 1
    assert result["test_result"]["hit@50"] > 0
