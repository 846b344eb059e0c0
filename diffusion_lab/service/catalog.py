"""The models a server offers: a catalog read once from a checkpoint folder, and an LRU cache.

The catalog is built from each checkpoint's ``config.json`` only (no weights are read), so
``GET /api/models`` is cheap and truthful: ``data_shape``, ``num_classes`` and
``class_names`` are what the checkpoint says. A client's model name is only ever a key
into this catalog — it never becomes part of a path.

:class:`ModelCache` loads a model on first use (in a worker thread), keeps at most
``max_models`` of them, and evicts the least recently used one beyond that.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoint import FORMAT, sde_from_json
from ..sde import SDE
from .schemas import MODEL_NAME_PATTERN

DEFAULT_CHECKPOINTS = Path(__file__).resolve().parents[2] / "data" / "checkpoints"


@dataclass(frozen=True)
class ModelCard:
    """What a client may know about a model before it is loaded."""

    name: str
    path: Path
    data_shape: tuple[int, ...]
    num_classes: int | None
    class_names: list[str] | None
    sde: str
    network: str
    process: SDE | None = field(default=None, compare=False, repr=False)  # the SDE ``sde`` names

    @property
    def kind(self) -> str:
        """``"image"`` for ``[C, H, W]`` data, ``"points"`` for ``[D]`` (2-D toys)."""
        return "image" if len(self.data_shape) == 3 else "points"

    @property
    def tasks(self) -> tuple[str, ...]:
        if self.kind != "image":
            return ("generate",)
        return ("generate", "inpaint", "colorize") if self.data_shape[0] == 3 else \
            ("generate", "inpaint")

    def public(self) -> dict:
        return {"name": self.name, "data_shape": list(self.data_shape),
                "num_classes": self.num_classes, "class_names": self.class_names,
                "conditional": self.num_classes is not None, "sde": self.sde,
                "network": self.network, "kind": self.kind, "tasks": list(self.tasks)}


def read_card(path: Path) -> ModelCard | None:
    """The card of the checkpoint directory ``path``, or None when it is not a generative
    diffusion_lab checkpoint (e.g. the bundled feature classifier)."""
    config_file = path / "config.json"
    if not config_file.is_file() or not (path / "model.safetensors").is_file():
        return None
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("format") != FORMAT or "sde" not in config or "net" not in config:
        return None
    shape = (config.get("data") or {}).get("shape")
    if not shape:
        return None
    net = config["net"]
    sde = sde_from_json(config["sde"])
    return ModelCard(name=path.name, path=path, data_shape=tuple(int(s) for s in shape),
                     num_classes=(net.get("config") or {}).get("num_classes"),
                     class_names=(config.get("data") or {}).get("class_names"),
                     sde=repr(sde), network=net["class"], process=sde)


def discover(folder) -> dict[str, ModelCard]:
    """Name → card for every generative checkpoint directly inside ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoints folder {str(folder)!r} does not exist")
    cards = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if re.fullmatch(MODEL_NAME_PATTERN, sub.name) and (card := read_card(sub)) is not None:
            cards[card.name] = card
    if not cards:
        raise FileNotFoundError(f"no diffusion_lab checkpoints in {str(folder)!r}")
    return cards


class ModelCache:
    """Thread-safe LRU of loaded models: at most ``max_models``; one load per name at a time.

    ``get(name)`` returns the cached model (a hit) or loads it (a miss) with
    ``loader(card)``; a model evicted while a job still uses it lives until that job ends.
    """

    def __init__(self, cards: dict[str, ModelCard], max_models: int, loader=None):
        if isinstance(max_models, bool) or not isinstance(max_models, int) or max_models < 1:
            raise ValueError(f"max_models must be a positive int, got {max_models!r}")
        self.cards, self.max_models = cards, max_models
        self._loader = loader or _load_for_inference
        self._models: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {name: threading.Lock() for name in cards}
        self.hits = self.misses = self.evictions = 0

    def get(self, name: str):
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                self.hits += 1
                return self._models[name]
        with self._loading[name]:  # KeyError for a name outside the catalog: a bug upstream
            with self._lock:  # another thread may have loaded it meanwhile
                if name in self._models:
                    self._models.move_to_end(name)
                    self.hits += 1
                    return self._models[name]
            model = self._loader(self.cards[name])
            with self._lock:
                self.misses += 1
                self._models[name] = model
                while len(self._models) > self.max_models:
                    self._models.popitem(last=False)
                    self.evictions += 1
            return model

    def stats(self) -> dict:
        with self._lock:
            return {"max_models": self.max_models, "loaded": list(self._models),
                    "hits": self.hits, "misses": self.misses, "evictions": self.evictions}


def _load_for_inference(card: ModelCard):
    """Load on the CPU and put the nets in eval mode once, so concurrent jobs on one model
    never toggle train/eval under each other."""
    from ..model import GenerativeModel

    model = GenerativeModel.load(card.path)
    for net in (model.net, model.ema):
        if net is not None:
            net.eval().requires_grad_(False)
    return model
