"""The config of a text-classification run: the shared sections plus the keys only text classification reads."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from nerflow.config import DataConfig, EvaluateConfig, PipelineConfig, TokenizeConfig, TrainConfig


class TextcatDataConfig(DataConfig):
    format: Literal["csv", "tsv", "jsonl", "folders", "hf"] = "csv"
    text_column: str = "text"            # csv/tsv/hf column (jsonl field) with the text
    label_column: str = "label"          # ... with the label (jsonl: "label", or "labels" for a list)
    labels: list[str] | None = None      # the label set; None: the labels seen in train
    multi_label: bool = False            # several labels per text (sigmoid, a threshold per label)
    label_separator: str = "|"           # csv/tsv multi-label: labels within one cell
    min_class_examples: PositiveInt = 10  # fewer train examples of a class: a validation warning


class TextcatTokenizeConfig(TokenizeConfig):
    # what happens to a text longer than max_length (nothing is cut unless chosen here)
    long_documents: Literal["head", "head_tail", "windows"] = "windows"   # windows: every token is read
    head_share: float = Field(0.25, gt=0.0, lt=1.0)   # head_tail: this share of the budget from the start
    pool: Literal["mean", "max"] = "mean"    # windows: a text's logits are the mean or max over its windows
    window_training: Literal["each", "pooled"] = "each"   # windows: each window trained with the text's label,
    #                                                       or the pooled logits trained per text


class TextcatTrainConfig(TrainConfig):
    # multi-label only: the weight of each label's positive terms in the binary cross-entropy. auto: per label, its
    # negatives / positives among the training examples, at most nerflow.textcat.training.POS_WEIGHT_MAX; a number:
    # that weight for every label. Rare labels then pull on the model as hard as their absence does.
    pos_weight: Literal["none", "auto"] | PositiveFloat = "none"


class TextcatEvaluateConfig(EvaluateConfig):
    calibration_bins: PositiveInt = 15   # expected calibration error and the reliability plot
    worst_examples: PositiveInt = 25     # the worst-classified validation and test texts kept as an artifact


class TextcatConfig(PipelineConfig):
    task: Literal["text-classification"] = "text-classification"
    data: TextcatDataConfig = TextcatDataConfig()
    tokenize: TextcatTokenizeConfig = TextcatTokenizeConfig()
    train: TextcatTrainConfig = TextcatTrainConfig()
    evaluate: TextcatEvaluateConfig = TextcatEvaluateConfig()

    @field_validator("train", mode="before")
    @classmethod
    def _shared_train_section(cls, value):
        # a shared TrainConfig, built by code that knows no task type, is this task's with its own keys at defaults
        if isinstance(value, TrainConfig) and not isinstance(value, TextcatTrainConfig):
            return value.model_dump(exclude_unset=True)
        return value

    @model_validator(mode="after")
    def _pos_weight_is_multi_label(self):
        # single-label training uses softmax cross-entropy, which has no positive term to weight: an error rather
        # than a setting that silently does nothing
        if self.train.pos_weight != "none" and not self.data.multi_label:
            raise ValueError(f"train.pos_weight={self.train.pos_weight} weights the positive labels of multi-label "
                             "data; set data.multi_label=true or remove train.pos_weight")
        return self
