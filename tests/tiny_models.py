"""Tiny random LLaMA-architecture models saved as local folders, for mechanics tests.

Two shapes: SmolLM2-like (the bundled tokenizer and ChatML template, tied
embeddings) and Llama-3.2-like (``rope_scaling`` of type ``llama3``, grouped
query attention, ``<|begin_of_text|>``/``<|eot_id|>`` special tokens and the
Llama 3 chat template), the latter reached through the same ``--model PATH``
route a user with real Llama-3.x weights takes.
"""

from __future__ import annotations

from pathlib import Path

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def smollm_tokenizer(cache_dir: Path):
    """The bundled SmolLM2 tokenizer (converted once into ``cache_dir``)."""
    from transformers import AutoTokenizer

    from rag_app.models import ensure_bundled_checkpoint

    return AutoTokenizer.from_pretrained(str(ensure_bundled_checkpoint(cache_dir)))


def save_tiny_smollm(folder: Path, cache_dir: Path, seed: int = 0) -> Path:
    """2 layers, hidden 64, the SmolLM2 tokenizer; ~3M parameters (the embedding dominates)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = smollm_tokenizer(cache_dir)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def llama3_tokenizer(folder: Path):
    """A small word-level tokenizer with Llama 3's special tokens and chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        "Sources: Question: answer the question using only the numbered sources given with the question",
        "Paris is the capital of France. The Eiffel Tower is in Paris. I don't know from the provided documents.",
        "system user assistant cite the source you used with its number in square brackets like [1] [2] [3]",
    ]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["<unk>", *LLAMA3_SPECIALS]))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", unk_token="<unk>",
        pad_token="<|end_of_text|>", additional_special_tokens=LLAMA3_SPECIALS[2:4],
    )
    fast.chat_template = LLAMA3_TEMPLATE
    return fast


def save_tiny_llama32(folder: Path, seed: int = 0) -> Path:
    """Shaped like Llama-3.2: llama3 rope scaling, GQA (4 heads / 2 KV), untied... tiny."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = llama3_tokenizer(folder)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
        bos_token_id=tok.bos_token_id, eos_token_id=tok.convert_tokens_to_ids("<|eot_id|>"),
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
