"""The config of a token-classification (NER) run: the shared sections plus the keys only NER reads."""
from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeInt, PositiveInt

from nerflow.config import DataConfig, EvaluateConfig, PipelineConfig, TokenizeConfig


class NerDataConfig(DataConfig):
    format: Literal["conll", "jsonl", "hf"] = "conll"
    tag_column: int = -1                 # CoNLL: which column holds the tag (default: the last)
    scheme: Literal["iob2", "iob1", "bioes"] = "iob2"
    invalid_iob2: Literal["repair", "fail"] = "repair"   # I-X after O / another type in IOB2 input
    min_tokens: PositiveInt = 1          # sentence-length bounds checked by validation
    max_tokens: PositiveInt = 1000


class NerTokenizeConfig(TokenizeConfig):
    label_all_subtokens: bool = False    # every sub-token of a word carries its tag (default: the first only)
    # document: each sentence is encoded with neighbouring sentences of its document as unscored context (FLERT)
    context: Literal["sentence", "document"] = "sentence"
    context_tokens: NonNegativeInt = 96  # document context: at most this many sub-tokens, split left/right


class NerConfig(PipelineConfig):
    task: Literal["token-classification"] = "token-classification"
    data: NerDataConfig = NerDataConfig()
    tokenize: NerTokenizeConfig = NerTokenizeConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
