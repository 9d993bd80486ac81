import pytest

from recbole_rimirec.config import Config, properties_dir
from recbole_rimirec.errors import ConfigError
from recbole_rimirec.utils import get_model, get_trainer


def test_plugin_model_first_recbole_fallback():
    from recbole.model.sequential_recommender.sasrec import SASRec

    from recbole_rimirec.model.sasrecallpos import SASRecAllPos

    assert get_model("SASRecAllPos") is SASRecAllPos
    assert get_model("SASRec") is SASRec


def test_unknown_model_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model 'NoSuchModel'"):
        get_model("NoSuchModel")


def test_layers_recbole_then_plugin_then_user(tiny, tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("topk: [5]\nlearning_rate: 0.01\n")
    config = Config("SASRecAllPos", "tiny", config_file_list=[str(user)], config_dict=tiny)
    assert config["valid_metric"] == "NDCG@10"  # plugin overall.yaml over RecBole's MRR@10
    assert config["train_mode"] == "all_positions"  # plugin model/SASRecAllPos.yaml over overall.yaml
    assert config["n_layers"] == 1  # config_dict over model yaml
    assert config["topk"] == [5] and config["learning_rate"] == 0.01  # user file over plugin defaults
    assert config["train_neg_sample_args"]["distribution"] == "none"  # sequential.yaml: CE needs no sampler


def test_command_line_overrides_win(tiny):
    config = Config("SASRec", "tiny", config_dict={**tiny, "epochs": 3}, cmd_args=["--epochs=7", "--topk=[1,2]"])
    assert config["epochs"] == 7 and config["topk"] == [1, 2]


def test_general_model_keeps_negative_sampling(tiny):
    config = Config("BPR", "tiny", config_dict=tiny)
    assert config["train_neg_sample_args"]["distribution"] == "uniform"
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}


@pytest.mark.parametrize(
    "content, message",
    [(None, "config file not found"), ("a: [1, 2\n", "not valid YAML"), ("- 1\n- 2\n", "must hold a mapping")],
)
def test_bad_config_files(tmp_path, content, message):
    path = tmp_path / "c.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        Config("SASRec", "tiny", config_file_list=[str(path)])


def test_bad_command_line_argument():
    with pytest.raises(ConfigError, match="--key=value"):
        Config("SASRec", "tiny", cmd_args=["epochs"])


def test_trainers_are_checkpoint_safe():
    from recbole.utils import ModelType

    from recbole_rimirec.trainer import SafeCheckpointMixin

    for model_type, name in [
        (ModelType.SEQUENTIAL, "SASRec"),
        (ModelType.KNOWLEDGE, "KGAT"),
        (ModelType.GENERAL, "Pop"),
    ]:
        assert issubclass(get_trainer(model_type, name), SafeCheckpointMixin)


def test_properties_are_found():
    assert (properties_dir() / "overall.yaml").is_file()


def test_unknown_keys_are_the_user_keys_no_layer_defines(tiny, caplog):
    from recbole_rimirec.config import unknown_keys
    from recbole_rimirec.quick_start import run

    config = Config("ComiRecSA", "ml-100k", config_dict={"interest_nums": 8, "interest_num": 2, "nproc": 1})
    assert unknown_keys(config) == ["interest_nums"]  # a model key, a plugin key, a runner key are known
    with pytest.raises(ConfigError, match="not found"):  # warned before the data is read
        run("ComiRecSA", "no-such-data", config_dict={"data_path": "/nonexistent", "interest_nums": 8})
    assert any("(misspelt?): interest_nums" in r.getMessage() for r in caplog.records)


def test_user_values_must_have_their_defaults_type(tiny):
    from recbole_rimirec.quick_start import check_config

    for bad, message in [
        ({"interest_num": 2.5}, "interest_num must be an integer"),
        ({"alpha": "x"}, "alpha must be a number"),
        ({"learning_rate": -0.1}, "learning_rate must be above 0"),
        ({"hidden_size": 30, "n_heads": 4}, "a multiple of n_heads"),
        ({"topk": [5]}, "valid_metric 'NDCG@10' is not computed"),
    ]:
        model = "RimiRec" if "alpha" in bad else "SASRecAllPos" if "n_heads" in bad else "ComiRecSA"
        with pytest.raises(ConfigError, match=message):
            check_config(Config(model, "tiny", config_dict={**tiny, **bad}))
    check_config(Config("RimiRec", "tiny", config_dict={**tiny, "alpha": 2, "show_progress": 0}))  # int for float


def test_none_on_the_command_line_turns_a_default_off(tiny):
    """The docs' `--tree_rebuild=None` (a YAML `~`) switches off RimiRec's default rebuild."""
    assert Config("RimiRec", "tiny", config_dict=tiny)["tree_rebuild"] == "plateau"
    config = Config("RimiRec", "tiny", config_dict=tiny, cmd_args=["--tree_rebuild=None"])
    assert config["tree_rebuild"] is None
