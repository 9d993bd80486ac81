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
