"""LoRA (`train.adapter: lora`, nerflow.adapters): trains the adapters and the task head only, through the same loop;
the model kept for serving is the merged one, a plain folder that loads without peft and predicts like the adapter
model; the adapter with its head is saved beside it."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

from nerflow import adapters
from nerflow.config import ConfigError, load_config
from nerflow.ner.tokenization import Encoder
from nerflow.ner.training import train
from nerflow.optim import default_lr
from tests.conftest import TINY_TEXTS
from tests.unit.test_resume import CFG, LABELS, META, SEED, encode, tags_of

# rank 2: the tiny model's layers are 32 wide, so rank 8 on every linear layer would be a quarter of the model; rank 2
# keeps the adapters a small share of it, as rank 8 is of MiniLM's 384-wide layers
LORA = CFG.model_copy(update={"adapter": "lora", "epochs": 2, "checkpoint_every": 0, "lr": 5e-3,
                              "lora": CFG.lora.model_copy(update={"rank": 2})})


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tiny_tokenizer, tmp_path_factory):
    encoder = Encoder(tiny_tokenizer, max_length=12, stride=3)
    val_sentences = [t.split() for t in TINY_TEXTS]
    val = encode(encoder, val_sentences)
    out = tmp_path_factory.mktemp("lora")
    result = train(str(tiny_model_dir), tiny_tokenizer, LABELS, encode(encoder, [t.split() for t in TINY_TEXTS * 6]),
                   val, [tags_of(s) for s in val_sentences], LORA, SEED, out, META)
    return {"out": out, "result": result, "val": val}


def test_lora_trains_only_the_adapters_and_the_head(tiny_model_dir, lora_run):
    base = AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=len(LABELS))
    trained = torch.load(sorted((lora_run["out"] / "checkpoints").glob("step-*"))[-1], weights_only=False)["model"]
    lora_keys = [k for k in trained if "lora_" in k]
    head_keys = [k for k in trained if "modules_to_save" in k]
    assert lora_keys and head_keys
    # the base weights the adapters sit on are untouched; the adapters' B (zero at the start) and the head moved
    base_state = base.state_dict()
    for key, value in trained.items():
        if "lora_" in key or "modules_to_save" in key or "original_module" in key:
            continue
        name = key.removeprefix("base_model.model.").replace(".base_layer", "")
        assert torch.equal(value, base_state[name]), f"{name} changed although LoRA freezes the base"
    assert all(trained[k].abs().sum() > 0 for k in lora_keys if "lora_B" in k)
    result = lora_run["result"]
    n_adapters = sum(trained[k].numel() for k in lora_keys + head_keys)
    assert result.trainable_parameters == n_adapters < sum(p.numel() for p in base.parameters()) / 5


def test_served_model_is_merged_loads_without_peft_and_predicts_like_the_adapter(tiny_model_dir, lora_run):
    from peft import PeftModel

    best = lora_run["out"] / "best"
    served = AutoModelForTokenClassification.from_pretrained(best).eval()   # plain transformers, no peft
    assert not any("lora" in n for n, _ in served.named_parameters())
    adapter_dir = best / adapters.ADAPTER_DIR
    assert (adapter_dir / "adapter_config.json").is_file()
    assert lora_run["result"].adapter_bytes == adapters.folder_bytes(adapter_dir) > 0
    base = AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=len(LABELS))
    adapted = PeftModel.from_pretrained(base, adapter_dir).eval()
    window = lora_run["val"][0]
    ids = torch.tensor([window.input_ids])
    with torch.no_grad():
        a, b = adapted(input_ids=ids).logits, served(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-5, rtol=0)
    assert torch.equal(a.argmax(-1), b.argmax(-1))


def test_textcat_head_is_found_and_trained(tiny_model_dir):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=3)
    assert adapters.task_head(model) == ["classifier"]
    wrapped = adapters.wrap(model, LORA)
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert any("classifier" in n for n in trainable) and any("lora_A" in n for n in trainable)
    assert all("lora_" in n or "classifier" in n for n in trainable)


def test_unknown_target_module_names_the_key(tiny_model_dir):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    bad = LORA.model_copy(update={"lora": LORA.lora.model_copy(update={"target_modules": ["nope"]})})
    with pytest.raises(ValueError, match=r"train\.lora\.target_modules"):
        adapters.wrap(model, bad)


def test_config_keys_and_auto_lr(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("experiment: demo\ndata:\n  train: t.txt\ntrain:\n  adapter: lora\n  lora:\n    rank: 4\n")
    cfg = load_config(cfg_file)
    assert (cfg.train.adapter, cfg.train.lora.rank, cfg.train.lora.alpha, cfg.train.lora.target_modules) == \
        ("lora", 4, 16.0, "all-linear")
    with pytest.raises(ConfigError, match=r"train\.lora\.rnk"):
        load_config(cfg_file, ["train.lora.rnk=4"])
    with pytest.raises(ConfigError, match=r"train\.adapter"):
        load_config(cfg_file, ["train.adapter=qlora"])
    # LoRA's automatic rate is 10x full fine-tuning's (nerflow.optim.LORA_LR_FACTOR)
    assert default_lr(22_000_000, 10_000, 8, "lora") == pytest.approx(10 * default_lr(22_000_000, 10_000, 8))


def test_a_plain_model_is_saved_without_importing_peft(tmp_path):
    """Every train stage asks whether its model has adapters when it saves; for a plain model that must not cost
    peft's import (~2.5 s a stage): a model with adapters was wrapped by peft, so peft is loaded already."""
    import subprocess
    import sys

    code = ("import sys, torch\nfrom nerflow import adapters\nm = torch.nn.Linear(2, 2)\n"
            "assert adapters.merged(m) is m and not adapters.is_adapted(m)\n"
            f"assert adapters.save_adapter(m, __import__('pathlib').Path({str(tmp_path)!r})) == 0\n"
            "print('peft' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
