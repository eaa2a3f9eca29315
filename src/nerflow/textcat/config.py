"""The config of a text-classification run: the shared sections plus the keys only text classification reads."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from nerflow.config import DataConfig, EvaluateConfig, PipelineConfig, TokenizeConfig


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


class TextcatEvaluateConfig(EvaluateConfig):
    calibration_bins: PositiveInt = 15   # expected calibration error and the reliability plot
    worst_examples: PositiveInt = 25     # the worst-classified validation and test texts kept as an artifact


class TextcatConfig(PipelineConfig):
    task: Literal["text-classification"] = "text-classification"
    data: TextcatDataConfig = TextcatDataConfig()
    tokenize: TextcatTokenizeConfig = TextcatTokenizeConfig()
    evaluate: TextcatEvaluateConfig = TextcatEvaluateConfig()
