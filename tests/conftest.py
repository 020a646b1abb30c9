"""Shared fixtures: a small GoEmotions release written by the tests, and the real config
composed with Hydra and shrunk for CPU (tiny random backbone, no logger, one epoch)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# The 28 GoEmotions labels in release order (emotions.txt: line i names label id i).
EMOTIONS = [
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion",
    "curiosity", "desire", "disappointment", "disapproval", "disgust", "embarrassment",
    "excitement", "fear", "gratitude", "grief", "joy", "love", "nervousness", "optimism",
    "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral",
]

# Two cue words per label, each a single token of MiniLM's uncased WordPiece vocabulary, so
# that even a tiny random model can learn the mapping from a few examples.
CUES = {
    "admiration": ["impressive", "brilliant"], "amusement": ["funny", "hilarious"],
    "anger": ["furious", "rage"], "annoyance": ["annoying", "irritating"],
    "approval": ["agree", "approve"], "caring": ["care", "hug"],
    "confusion": ["confused", "puzzled"], "curiosity": ["wonder", "curious"],
    "desire": ["wish", "want"], "disappointment": ["disappointed", "disappointing"],
    "disapproval": ["disagree", "wrong"], "disgust": ["gross", "disgusting"],
    "embarrassment": ["awkward", "embarrassed"], "excitement": ["excited", "thrilled"],
    "fear": ["scared", "afraid"], "gratitude": ["thanks", "grateful"],
    "grief": ["grief", "mourning"], "joy": ["happy", "glad"],
    "love": ["love", "darling"], "nervousness": ["nervous", "anxious"],
    "optimism": ["hope", "hopeful"], "pride": ["proud", "accomplished"],
    "realization": ["realize", "noticed"], "relief": ["relieved", "relief"],
    "remorse": ["sorry", "regret"], "sadness": ["sad", "crying"],
    "surprise": ["surprised", "shocked"], "neutral": ["table", "weather"],
}
FILLER = ["the", "a", "today", "really", "just", "this", "that", "was", "is", "so", "my",
          "and", "it", "what", "ok", "we", "they", "you"]

SPLIT_SIZES = {"train.tsv": 160, "dev.tsv": 60, "test.tsv": 60}
FIXTURE_SEED = 1234

Row = tuple[str, list[int], str]  # text, label ids, comment id


def make_rows(rng: random.Random, n: int, prefix: str) -> list[Row]:
    """n examples; every label is the primary label of at least two of them."""
    num_labels = len(EMOTIONS)
    assert n >= 2 * num_labels
    primaries = [k % num_labels for k in range(2 * num_labels)]
    primaries += [rng.randrange(num_labels) for _ in range(n - len(primaries))]
    rows = []
    for k, primary in enumerate(primaries):
        ids = [primary]
        if rng.random() < 0.3:
            ids.append(rng.choice([i for i in range(num_labels) if i != primary]))
        words = [rng.choice(CUES[EMOTIONS[i]]) for i in ids]
        words += rng.sample(FILLER, rng.randint(2, 5))
        rng.shuffle(words)
        text = " ".join(words)
        if k % 10 == 3:  # the release has quotes and apostrophes: lines are split on tabs only
            text = f'"{text}" it\'s'
        rows.append((text, sorted(ids), f"{prefix}{k:04d}"))
    rng.shuffle(rows)
    return rows


def format_row(row: Row) -> str:
    text, ids, comment_id = row
    return f"{text}\t{','.join(map(str, ids))}\t{comment_id}\n"


@dataclass(frozen=True)
class GoEmotionsFixture:
    dir: Path
    rows: dict[str, list[Row]]  # by file name: train.tsv, dev.tsv, test.tsv


def write_goemotions(directory: Path, seed: int = FIXTURE_SEED) -> GoEmotionsFixture:
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    (directory / "emotions.txt").write_text("".join(f"{n}\n" for n in EMOTIONS), encoding="utf-8")
    rows = {}
    for name, size in SPLIT_SIZES.items():
        rows[name] = make_rows(rng, size, prefix=name.split(".")[0][:2])
        (directory / name).write_text("".join(format_row(r) for r in rows[name]),
                                      encoding="utf-8")
    return GoEmotionsFixture(directory, rows)


@pytest.fixture(scope="session")
def goemotions(tmp_path_factory) -> GoEmotionsFixture:
    """A small GoEmotions directory in the original release format (read-only: copy it
    before corrupting it)."""
    return write_goemotions(tmp_path_factory.mktemp("goemotions"))


@pytest.fixture(scope="session")
def goemotions_dir(goemotions) -> Path:
    return goemotions.dir


def compose_config(*overrides: str, config_name: str = "train",
                   return_hydra_config: bool = False) -> DictConfig:
    """The real config from conf/, composed with Hydra's compose API."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides),
                           return_hydra_config=return_hydra_config)
    finally:
        GlobalHydra.instance().clear()


def compose_train_cfg(data_dir: Path | str, output_dir: Path | str, *extra: str) -> DictConfig:
    """The training config shrunk for tests: tiny random backbone on CPU, one epoch, no logger,
    the fixture data. `extra` overrides come last and win."""
    base = [
        "backbone=tiny",
        f"data.dir={data_dir}",
        f"paths.output_dir={output_dir}",
        f"paths.cache_dir={Path(output_dir).parent / 'cache'}",
        "paths.sweep_group=null",
        "logger=none",
        "trainer.max_epochs=1",
        # benchmarks/gpu_check.sh runs the tests on a GPU with EMOTION_LAB_TEST_ACCELERATOR=gpu
        f"trainer.accelerator={os.environ.get('EMOTION_LAB_TEST_ACCELERATOR', 'cpu')}",
        "data.batch_size=16",
        "callbacks.progress_bar=null",
        "++trainer.enable_model_summary=false",
    ]
    return compose_config(*base, *extra)


def generative_module_and_batch(name: str, folder: Path | str, data_dir: Path | str,
                                *overrides: str, n: int = 5):
    """A `model=generative` module on the tiny backbone in `folder` (config backbone=`name`),
    in eval mode, and the first `n` validation examples of `data_dir` as one batch."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from emotion_lab.models.backbones import load_tokenizer

    cfg = compose_train_cfg(data_dir, "/unused", f"backbone={name}", f"backbone.model={folder}",
                            "model=generative", *overrides)
    config = OmegaConf.to_container(cfg, resolve=True)
    datamodule = instantiate(cfg.data, tokenizer=load_tokenizer(config["backbone"]),
                             prompt=config["model"]["prompt"])
    datamodule.setup()
    model = instantiate(cfg.model, label_names=datamodule.label_names,
                        problem_type=datamodule.problem_type).eval()
    return model, datamodule.val_dataloader().collate_fn(list(range(n)))


@pytest.fixture
def make_cfg(goemotions_dir, tmp_path):
    """make_cfg(*overrides, output_dir=None): the shrunk training config on the fixture data,
    writing its run into tmp_path/run unless told otherwise."""

    def make(*extra: str, output_dir: Path | None = None) -> DictConfig:
        return compose_train_cfg(goemotions_dir, output_dir or tmp_path / "run", *extra)

    return make


@pytest.fixture
def cfg(make_cfg) -> DictConfig:
    return make_cfg()


@pytest.fixture
def wandb_offline(monkeypatch, tmp_path):
    """W&B in offline mode, every file it writes outside a run directory kept in tmp_path."""
    home = tmp_path / "wandb_home"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(home / "dir"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(home / "data"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return home


# The real engines (scripts/cluster.sh starts both on localhost). Tests that need them skip
# where they are absent, except where EMOTION_LAB_REQUIRE_CLUSTER=1 (CI starts them and sets
# it), so a missing engine fails CI instead of passing it quietly.
POSTGRES_URL = os.environ.get(
    "EMOTION_LAB_POSTGRES_URL", "postgresql://emotion_lab:emotion_lab@localhost/emotion_lab")


def _missing(what: str) -> None:
    if os.environ.get("EMOTION_LAB_REQUIRE_CLUSTER") == "1":
        pytest.fail(f"{what} is not running; scripts/cluster.sh starts it")
    pytest.skip(f"{what} is not running (scripts/cluster.sh starts it)")


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The default partition of a SLURM cluster that answers (`sinfo`)."""
    import shutil
    import subprocess

    if shutil.which("sinfo") is None:
        _missing("SLURM")
    done = subprocess.run(["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True,
                          timeout=30)
    partitions = [line.split() for line in done.stdout.splitlines()
                  if line.split()[-1] in ("idle", "mix", "alloc")]
    if done.returncode != 0 or not partitions:
        _missing("SLURM")
    return partitions[0][0].rstrip("*")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of a PostgreSQL database that answers, for shared Optuna studies."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    try:
        engine = sqlalchemy.create_engine(POSTGRES_URL)
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except Exception:  # noqa: BLE001 (any failure to connect means: not here)
        _missing(f"PostgreSQL at {POSTGRES_URL}")
    return POSTGRES_URL
