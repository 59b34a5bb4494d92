"""Byte-level BPE tokenizer of the embedded default pipeline, laid out like Pythia's.

GPT-NeoX's tokenizer is a byte-level BPE with an NFC normalizer, a ByteLevel
pre-tokenizer (no prefix space) and decoder, and ``<|endoftext|>`` at id 0 as
bos/eos/unk. We train the same kind on the default corpus with ``tokenizers`` and
use ``<|endoftext|>`` as the pad token too (the reference code sets pad = eos),
padding on the left so that prompts end where generation starts. The result is
saved as ``tokenizer.json`` + ``tokenizer_config.json`` and reloads with
``AutoTokenizer.from_pretrained``.
"""

from collections.abc import Iterable

import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from jaxirl.errors import ConfigError, DataError

EOS_TOKEN = "<|endoftext|>"


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 3000,
    *,
    min_frequency: int = 2,
    model_max_length: int = 2048,
) -> transformers.PreTrainedTokenizerFast:
    """Trains a GPT-NeoX-style byte-level BPE on ``texts``.

    Deterministic: the same texts in the same order give the same vocab and merges.

    Args:
      texts: training strings.
      vocab_size: final vocabulary size including the 256 byte symbols and
        ``<|endoftext|>`` (id 0); at least 258. It can come out smaller when the
        texts support fewer merges.
      min_frequency: a pair is merged only if it occurs at least this often.
      model_max_length: the longest input, in tokens, the tokenizer will accept.

    Returns:
      A fast tokenizer with bos = eos = unk = pad = ``<|endoftext|>`` and left padding.
    """
    if vocab_size < 258:
        raise ConfigError(f"vocab_size must be >= 258 (256 bytes + 1 special + 1 merge), "
                          f"got {vocab_size}")
    texts = [t for t in texts if t]
    if not texts:
        raise DataError("cannot train a tokenizer on an empty list of texts")
    tok = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="",
                               fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        padding_side="left",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
