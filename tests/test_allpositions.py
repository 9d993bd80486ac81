"""The all-positions path computes the same loss as RecBole's prefix rows, at a fraction of the cost."""

import numpy as np
import pytest
import torch

from recbole_rimirec.config import Config
from recbole_rimirec.data.loaders import AllPositionsDataLoader, RandomCutDataLoader, train_sequences
from recbole_rimirec.data.preparation import create_dataset, data_preparation


def build(tiny, model="SASRecAllPos", **extra):
    config = Config(model, "tiny", config_dict={**tiny, "train_mode": "prefixes", **extra})
    train, _, _ = data_preparation(config, create_dataset(config))
    return config, train._dataset


def test_sequences_match_the_raw_file(tiny):
    _, ds = build(tiny)
    users, flat, offsets = train_sequences(ds)
    raw = {}
    for line in (ds.config["data_path"] + "/tiny.inter",):
        for row in open(line).read().splitlines()[1:]:
            u, i, _ = row.split("\t")
            raw.setdefault(u, []).append(i)
    for k, u in enumerate(users[:50]):
        tokens = ds.id2token(ds.iid_field, flat[offsets[k] : offsets[k + 1]]).tolist()
        assert tokens == raw[ds.id2token(ds.uid_field, u)][:-2]  # leave-one-out: last two are valid/test


@pytest.mark.parametrize("max_len", [30, 8])
def test_all_positions_loss_equals_mean_prefix_loss(tiny, max_len):
    config, ds = build(tiny, MAX_ITEM_LIST_LENGTH=max_len)
    torch.manual_seed(0)
    model = config.model_class(config, ds).eval()  # dropout off
    users, flat, offsets = train_sequences(ds)
    fits = set(users[np.diff(offsets) <= max_len + 1].tolist())
    prefix_rows = ds.inter_feat[torch.tensor([int(u) in fits for u in ds.inter_feat[ds.uid_field]])]
    windows = AllPositionsDataLoader(config, ds, shuffle=False)._dataset.inter_feat
    windows = windows[torch.tensor([int(u) in fits for u in windows[ds.uid_field]])]
    assert len(windows) == len(fits)  # users that fit have exactly one window
    with torch.no_grad():
        prefix_loss = model.calculate_loss(prefix_rows)  # RecBole's path: mean over prefix rows
        all_pos_loss = model.calculate_loss(windows)
    assert len(prefix_rows) == int((windows[ds.iid_field + "_targets"] > 0).sum())
    assert torch.allclose(prefix_loss, all_pos_loss, rtol=1e-5, atol=1e-6)
    if max_len == 8:
        assert len(fits) < len(users)  # some users are windowed (and differ), the rest were compared


def test_random_cut_yields_one_row_per_user_per_epoch(tiny):
    config, ds = build(tiny)
    loader = RandomCutDataLoader(config, ds, shuffle=True)
    seen = torch.cat([batch[ds.uid_field] for batch in loader])
    users, _, offsets = train_sequences(ds)
    assert sorted(seen.tolist()) == sorted(users[np.diff(offsets) >= 2].tolist())
    first = next(iter(loader))
    assert {ds.item_id_list_field, ds.item_list_length_field, ds.iid_field} <= set(first.columns)


def test_all_positions_rejected_for_models_without_it(tiny):
    from recbole_rimirec.errors import ConfigError

    config = Config("SASRec", "tiny", config_dict={**tiny, "train_mode": "all_positions"})
    with pytest.raises(ConfigError, match="not supported by SASRec"):
        data_preparation(config, create_dataset(config))


@pytest.mark.parametrize("model", ["SASRecAllPos", "RimiRec"])
def test_stride_one_windows_give_every_user_the_prefix_loss(tiny, model):
    # stride 1: every target keeps min(position, L) items of history, exactly RecBole's prefix row;
    # RimiRec: generator, two-tower and global losses all at every causal position
    config, ds = build(tiny, model, MAX_ITEM_LIST_LENGTH=8, all_positions_stride=1)
    torch.manual_seed(0)
    model = config.model_class(config, ds).eval()  # dropout off
    _, _, offsets = train_sequences(ds)
    assert (np.diff(offsets) > 9).any()  # some users are longer than one window
    windows = AllPositionsDataLoader(config, ds, shuffle=False)._dataset.inter_feat
    assert len(ds.inter_feat) == int((windows[ds.iid_field + "_targets"] > 0).sum())
    with torch.no_grad():
        prefix_loss = model.calculate_loss(ds.inter_feat)
        all_pos_loss = model.calculate_loss(windows)
    assert torch.allclose(prefix_loss, all_pos_loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "stride, message",
    [
        (0, r"all_positions_stride must be an integer of at least 1, not 0"),
        (2.5, r"all_positions_stride must be an integer of at least 1, not 2.5"),
        (9, r"all_positions_stride 9 is above MAX_ITEM_LIST_LENGTH 8: set all_positions_stride to at most 8, or ~"),
    ],
)
def test_bad_stride_is_a_one_line_error(tiny, stride, message):
    from recbole_rimirec.errors import ConfigError

    config, ds = build(tiny, MAX_ITEM_LIST_LENGTH=8, all_positions_stride=stride)
    with pytest.raises(ConfigError, match=message):
        AllPositionsDataLoader(config, ds)


def test_rimirec_default_stride_under_a_short_max_len_says_which_key_to_set(tiny):
    from recbole_rimirec.errors import ConfigError

    config, ds = build(tiny, "RimiRec", MAX_ITEM_LIST_LENGTH=3)  # RimiRec's YAML sets all_positions_stride: 5
    with pytest.raises(ConfigError, match=r"all_positions_stride 5 is above MAX_ITEM_LIST_LENGTH 3"):
        AllPositionsDataLoader(config, ds)


def test_length_grouped_epochs_cover_every_window_with_less_padding(tiny):
    config, ds = build(
        tiny,
        MAX_ITEM_LIST_LENGTH=30,
        all_positions_group_by_length=True,
        all_positions_shift=False,
        all_positions_pack=False,
        train_batch_size=8,
    )
    grouped = AllPositionsDataLoader(config, ds, shuffle=True)
    plain_config = build(tiny, MAX_ITEM_LIST_LENGTH=30, train_batch_size=8, all_positions_pack=False)[0]
    plain = AllPositionsDataLoader(plain_config, ds, shuffle=True)
    targets = ds.iid_field + "_targets"

    def epoch(loader):
        batches = list(loader)
        # each window as (user, sum of its target ids): the same multiset in both epochs
        rows = sorted(
            pair for b in batches for pair in zip(b[ds.uid_field].tolist(), b[targets].sum(1).tolist(), strict=True)
        )
        return rows, sum(b[ds.item_id_list_field].numel() for b in batches)

    rows_g, width_g = epoch(grouped)
    rows_p, width_p = epoch(plain)
    assert rows_g == rows_p  # the same windows, each once per epoch
    assert width_g < width_p  # fewer padded positions computed
    again = AllPositionsDataLoader(config, ds, shuffle=True)
    assert [b[ds.uid_field].tolist() for b in again] == [
        b[ds.uid_field].tolist() for b in AllPositionsDataLoader(config, ds, shuffle=True)
    ]


@pytest.mark.parametrize("model", ["SASRecAllPos", "RimiRec"])
def test_length_grouped_batches_weigh_every_target_the_same(tiny, model):
    """A mean per grouped batch would weigh a target in a batch of short windows more; the loss is
    rescaled so that the epoch's summed loss is the same however the windows are batched."""
    config, ds = build(
        tiny,
        model,
        MAX_ITEM_LIST_LENGTH=30,
        all_positions_group_by_length=True,
        all_positions_shift=False,
        all_positions_pack=False,
        train_batch_size=8,
    )
    torch.manual_seed(0)
    net = config.model_class(config, ds).eval()  # dropout off
    loader = AllPositionsDataLoader(config, ds, shuffle=True)
    targets = ds.iid_field + "_targets"
    windows = loader._dataset.inter_feat
    per_window = float((windows[targets] > 0).sum(1).float().mean())
    with torch.no_grad():
        epoch = sum(net.calculate_loss(b) * len(b) for b in loader)  # sum over batches of loss x rows
        del windows.interaction[targets + "_norm"]  # the plain mean over every target of the epoch
        mean_all = net.calculate_loss(windows)
    n_targets = int((windows[targets] > 0).sum())
    # RimiRec's tower loss is a mean over (position, tree level) pairs and leaves sit at different
    # depths, so its per-target weight is even only up to the batch's mix of depths.
    assert torch.allclose(epoch, mean_all * n_targets / per_window, rtol=1e-5 if model == "SASRecAllPos" else 1e-3)


def test_windows_per_batch_rounds_to_the_nearest_whole_window():
    from recbole_rimirec.data.sequences import windows_per_batch

    assert windows_per_batch(2048, 5.84) == 351  # Amazon Beauty's train split
    assert windows_per_batch(2048, 40.0) == 51
    assert windows_per_batch(10, 50.0) == 1  # never an empty batch
    assert windows_per_batch(100, 0.0) >= 1


@pytest.mark.parametrize("pack", [False, True])
def test_batch_targets_sets_windows_per_batch_and_keeps_every_target(tiny, pack):
    extra = {"MAX_ITEM_LIST_LENGTH": 8, "all_positions_pack": pack}
    config = Config("SASRecAllPos", "tiny", config_dict={**tiny, **extra, "all_positions_batch_targets": 60})
    loader, _, _ = data_preparation(config, create_dataset(config))
    plain_config = Config("SASRecAllPos", "tiny", config_dict={**tiny, **extra, "train_batch_size": 1000})
    everything, _, _ = data_preparation(plain_config, create_dataset(plain_config))
    targets = "item_id_targets"
    per_window = float((loader._dataset.inter_feat[targets] > 0).sum(1).float().mean())
    assert loader.step == max(1, round(60 / per_window)) != config["train_batch_size"]
    batches = list(loader)
    assert len(batches) == -(-len(loader._dataset) // loader.step)
    seen = torch.cat([b[targets][b[targets] > 0] for b in batches]).sort().values
    assert torch.equal(seen, torch.cat([b[targets][b[targets] > 0] for b in everything]).sort().values)
    # batches hold about 60 targets on average (all but the short last one)
    assert abs(np.mean([int((b[targets] > 0).sum()) for b in batches[:-1]]) - 60) < 0.25 * 60


@pytest.mark.parametrize("value", [0, 2.5, "many"])
def test_bad_batch_targets_is_a_one_line_error(tiny, value):
    from recbole_rimirec.errors import ConfigError

    config = Config("SASRecAllPos", "tiny", config_dict={**tiny, "all_positions_batch_targets": value})
    with pytest.raises(ConfigError, match=r"all_positions_batch_targets must be an integer of at least 1, not"):
        data_preparation(config, create_dataset(config))


class _FakeConfig(dict):
    def __init__(self, values, external):
        super().__init__(values)
        self.external_config_dict = external


def test_a_users_own_batch_size_beats_a_models_default_batch_in_targets():
    from recbole_rimirec.data.loaders import all_positions_batch_targets

    default = {"all_positions_batch_targets": 2048, "train_batch_size": 128}
    assert all_positions_batch_targets(_FakeConfig(default, {})) == 2048  # the model's default applies
    assert all_positions_batch_targets(_FakeConfig(default, {"train_batch_size": 128})) is None  # user's windows
    both = {"train_batch_size": 128, "all_positions_batch_targets": 2048}
    assert all_positions_batch_targets(_FakeConfig(default, both)) == 2048  # both set: targets win
    assert all_positions_batch_targets(_FakeConfig({**default, "all_positions_batch_targets": None}, {})) is None


@pytest.mark.parametrize("pack", [False, True])
def test_split_windows_give_every_target_once_per_epoch_from_more_users(tiny, pack):
    extra = {"MAX_ITEM_LIST_LENGTH": 8, "all_positions_pack": pack, "all_positions_batch_targets": 60}
    config, ds = build(tiny, **extra, all_positions_splits=3)
    split = AllPositionsDataLoader(config, ds, shuffle=True)
    plain = AllPositionsDataLoader(build(tiny, **extra)[0], ds, shuffle=True)
    targets, seq = ds.iid_field + "_targets", ds.item_id_list_field

    def epoch(loader):
        batches = list(loader)
        pairs = sorted(
            (u, t)
            for b in batches
            for u, row in zip(b[ds.uid_field].tolist(), b[targets], strict=True)
            for t in row[row > 0].tolist()
        )
        return batches, pairs

    first, pairs = epoch(split)
    second, again = epoch(split)
    if not pack:  # (packed rows name their first window's user only)
        assert pairs == again == epoch(plain)[1]  # each user's targets, each once per epoch
    flat = lambda batches: torch.cat([b[targets][b[targets] > 0] for b in batches]).sort().values  # noqa: E731
    assert torch.equal(flat(first), flat(list(plain)))  # every target once per epoch
    assert split.step > 2 * plain.step  # a step of ~60 targets spans ~3x the windows
    assert abs(np.mean([int((b[targets] > 0).sum()) for b in first[:-1]]) - 60) < 0.25 * 60
    deal = lambda batches: [b[targets].tolist() for b in batches]  # noqa: E731
    assert deal(first) != deal(second)  # a new deal every epoch
    if not pack:  # each row's inputs end at its last own target
        for b in first:
            last = b[targets].shape[1] - torch.argmax((b[targets] > 0).flip(1).int(), dim=1)
            assert torch.equal(b[ds.item_list_length_field], last)
            assert torch.equal(b[seq] > 0, torch.arange(b[seq].shape[1])[None] < last[:, None])


def test_split_rows_keep_the_epoch_loss(tiny):
    """Dealt out among rows, every target keeps its prefix loss (dropout off): the epoch's sum is the same."""
    extra = {"MAX_ITEM_LIST_LENGTH": 8, "all_positions_pack": True, "train_batch_size": 16}
    config, ds = build(tiny, **extra, all_positions_splits=4)
    torch.manual_seed(0)
    net = config.model_class(config, ds).eval()
    targets = ds.iid_field + "_targets"
    with torch.no_grad():
        sums = [
            sum(net.calculate_loss(b) * int((b[targets] > 0).sum()) for b in AllPositionsDataLoader(c, ds, True))
            for c in (config, build(tiny, **extra)[0])
        ]
    assert torch.allclose(sums[0], sums[1], rtol=1e-5)


@pytest.mark.parametrize("value", [0, 1.5, "two"])
def test_bad_splits_is_a_one_line_error(tiny, value):
    from recbole_rimirec.errors import ConfigError

    config = Config("SASRecAllPos", "tiny", config_dict={**tiny, "all_positions_splits": value})
    with pytest.raises(ConfigError, match=r"all_positions_splits must be an integer of at least 1, not"):
        data_preparation(config, create_dataset(config))


@pytest.mark.parametrize("splits", [1, 3])
def test_shifted_windows_move_between_epochs_and_keep_every_target_once(tiny, splits):
    extra = {"MAX_ITEM_LIST_LENGTH": 8, "all_positions_pack": False, "train_batch_size": 16}
    config, ds = build(tiny, **extra, all_positions_splits=splits, all_positions_shift=True)
    loader = AllPositionsDataLoader(config, ds, shuffle=True)
    plain = AllPositionsDataLoader(build(tiny, **extra)[0], ds, shuffle=True)
    targets, length = ds.iid_field + "_targets", ds.item_list_length_field

    def epoch(loader):
        """(user, target item, its position in the row) of every target of one epoch."""
        out = []
        for b in loader:
            assert (b[length] > 0).all()  # slots without a window this epoch are not fed
            for u, row in zip(b[ds.uid_field].tolist(), b[targets], strict=True):
                out += [(u, int(row[c]), c) for c in torch.nonzero(row > 0).flatten().tolist()]
        return sorted(out)

    first, second, unshifted = epoch(loader), epoch(loader), epoch(plain)
    without_position = lambda rows: sorted((u, t) for u, t, _ in rows)  # noqa: E731
    assert without_position(first) == without_position(second) == without_position(unshifted)  # each once
    assert first != second  # the cuts moved: targets at other positions of their windows
    users, _, offsets = train_sequences(ds)
    short = {int(u) for u, n in zip(users, np.diff(offsets) - 1, strict=True) if n <= 8}  # one window: never shifted
    assert short and [r for r in first if r[0] in short] == [r for r in unshifted if r[0] in short]


def test_grouping_with_the_default_shift_is_a_one_line_error(tiny):
    from recbole_rimirec.errors import ConfigError

    config, ds = build(tiny, all_positions_group_by_length=True, all_positions_pack=False)  # shift: the default
    with pytest.raises(ConfigError, match=r"^all_positions_shift \(on by default.*set one to False$"):
        AllPositionsDataLoader(config, ds)


@pytest.mark.parametrize("model", ["SASRecAllPos", "RimiRec"])
def test_batches_left_without_targets_give_a_zero_loss_not_nan(tiny, model):
    """One-row batches of shifted and split rows: some hold no target this epoch."""
    extra = {"MAX_ITEM_LIST_LENGTH": 8, "train_batch_size": 1, "all_positions_splits": 4}
    config, ds = build(tiny, model, **extra, all_positions_shift=True)
    torch.manual_seed(0)
    net = config.model_class(config, ds)
    targets = ds.iid_field + "_targets"
    losses, empty = [], 0
    for batch in AllPositionsDataLoader(config, ds, shuffle=True):
        empty += int((batch[targets] > 0).sum()) == 0
        loss = net.calculate_loss(batch)
        loss.backward()
        losses.append(float(loss.detach()))
        if empty >= 2 and len(losses) >= 20:
            break
    assert empty >= 2 and all(np.isfinite(losses))


def test_sasrecallpos_sampled_softmax_trains(tiny):
    from recbole_rimirec.quick_start import run

    result = run("SASRecAllPos", "tiny", config_dict={**tiny, "global_negatives": 32})
    assert result["test_result"]["hit@50"] > 0


@pytest.mark.parametrize("backend", ["faiss", "exact"])
def test_sasrecallpos_search_scores_as_its_full_ranking(tiny, backend):
    from recbole_rimirec.quick_start import evaluate_saved, run

    result = run("SASRecAllPos", "tiny", config_dict={**tiny, "epochs": 2})
    searched = evaluate_saved(result["checkpoint"], {"retrieval": backend, "eval_from_lists": True})
    assert searched["result"] == pytest.approx(result["test_result"], abs=2e-3)  # the same lists, up to exact ties
    assert searched["nodes_per_user"] == 1 and searched["library_fraction"] == pytest.approx(1.0)


def test_sasrecallpos_bad_retrieval_is_a_one_line_error(tiny):
    from recbole_rimirec.errors import ConfigError
    from recbole_rimirec.quick_start import run

    with pytest.raises(ConfigError, match="retrieval 'ann' is not one of full, auto, faiss, exact"):
        run("SASRecAllPos", "tiny", config_dict={**tiny, "retrieval": "ann"})
