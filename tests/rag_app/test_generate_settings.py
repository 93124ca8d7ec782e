"""Which generate settings load another model, and where the abstain threshold applies."""

from __future__ import annotations


def test_loading_key_separates_what_loads_another_model_from_sampling():
    from rag_app.config import GenerateConfig

    base = GenerateConfig(adapter="none")
    same = [GenerateConfig(adapter="none", temperature=0.7, top_p=0.5, max_new_tokens=32, abstain_threshold=0.2)]
    other = [GenerateConfig(adapter="none", **kw) for kw in
             ({"backend": "hf"}, {"threads": 2}, {"seed": 3}, {"context_window": 2048}, {"dtype": "float32"},
              {"device": "cpu"}, {"load_in_4bit": False})] + [GenerateConfig(adapter="/some/adapter")]
    assert all(c.loading_key() == base.loading_key() for c in same)
    assert len({c.loading_key() for c in other} | {base.loading_key()}) == len(other) + 1
    hash(base.loading_key())


def test_abstain_threshold_applies_only_to_a_fine_tuned_model(tmp_path):
    from rag_app.config import GenerateConfig

    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "training_card.json").write_text("{}")
    assert GenerateConfig(adapter="none", abstain_threshold=0.3).applied_abstain_threshold is None
    assert GenerateConfig(adapter=str(tmp_path / "a"), abstain_threshold=0.3).applied_abstain_threshold == 0.3
    assert GenerateConfig(model=str(merged), adapter="none", abstain_threshold=0.3).applied_abstain_threshold == 0.3


def test_the_shipped_adapter_abstains_at_0_5_by_default_and_a_server_backend_gets_no_threshold():
    """Greedy decoding abstained far more often on answerable questions (docs/EVAL.md): 0.5 is the default."""
    from rag_app.config import GenerateConfig

    assert GenerateConfig().applied_abstain_threshold == 0.5  # the default adapter
    served = GenerateConfig(backend="openai", base_url="http://127.0.0.1:8080/v1", adapter="none")
    assert served.abstain_threshold == 0.5 and served.applied_abstain_threshold is None  # no logits to read
    assert GenerateConfig(abstain_threshold=None).applied_abstain_threshold is None  # plain decoding, if asked


def test_plain_decoding_can_be_asked_for_where_there_is_no_null(tmp_path, monkeypatch):
    """TOML and environment variables cannot write None: "off" turns the threshold off."""
    from rag_app.config import GenerateConfig, load_settings

    toml = tmp_path / "rag.toml"
    toml.write_text('[generate]\nabstain_threshold = "off"\n')
    assert load_settings(toml).generate.applied_abstain_threshold is None
    monkeypatch.setenv("RAG_GENERATE__ABSTAIN_THRESHOLD", "greedy")
    assert load_settings().generate.abstain_threshold is None
    monkeypatch.setenv("RAG_GENERATE__ABSTAIN_THRESHOLD", "0.3")
    assert load_settings().generate.abstain_threshold == 0.3
    served = GenerateConfig(backend="openai", base_url="http://127.0.0.1:8080/v1", adapter="none", abstain_threshold="off")
    assert served.abstain_threshold is None  # "off" is not a threshold a server would ignore
