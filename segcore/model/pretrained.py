"""Pretrained encoder weights by name (``train.encoder_weights: imagenet``), through smp.

A name is one that segmentation-models-pytorch knows for the encoder (``imagenet``,
``ssl``, ``swsl``, ``advprop``, ...: :func:`weight_names`). smp keeps these weights on the
Hugging Face Hub at a fixed commit; they are downloaded once into the Hugging Face cache
(``HF_HOME``, ``HF_HUB_CACHE``; default ``~/.cache/huggingface``) and read from there
afterwards without any network access. For ``tu-`` (timm) encoders the pretrained tag is
part of the encoder name (``tu-resnet18.a1_in1k``) and any name asks for timm's weights.

Offline (``HF_HUB_OFFLINE=1``, or the Hub unreachable) and not cached, :func:`fetch_weights`
fails at once, before any training, saying how to give a local weights file instead; the
reachability check is one TCP connection with a short timeout, so an offline machine does
not wait through the Hub client's retries.
"""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from segcore.common.errors import ParamsError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
"""File name endings that make ``encoder_weights`` a file (else it is a name)."""

CONNECT_TIMEOUT_S = 3.0
"""Seconds to wait for the Hub's TCP connection before calling the machine offline."""

WEIGHTS_FILE = "model.safetensors"
"""The encoder's state dict in smp's Hub repositories (``config.json`` beside it)."""


def is_weights_file(value: str) -> bool:
    """Whether ``encoder_weights`` names a local file (an existing file, a path with a
    folder, or a weights file name ending) rather than a pretrained-weights name."""
    path = Path(value)
    return path.is_file() or "/" in value or "\\" in value or path.suffix.lower() in WEIGHT_SUFFIXES


def weight_names(encoder: str) -> list[str]:
    """The pretrained-weights names smp knows for ``encoder`` (``[]`` for ``tu-`` encoders,
    whose tag is in the encoder name, and for unknown encoders)."""
    import segmentation_models_pytorch as smp

    entry = smp.encoders.encoders.get(encoder)
    return list(entry["pretrained_settings"]) if entry else []


def local_file_hint(encoder: str, name: str) -> str:
    """How to give the weights as a local file instead of a name."""
    repo = _repo(encoder, name)
    where = (
        f"download {WEIGHTS_FILE} of the Hugging Face repository {repo[0]} (revision "
        f"{repo[1]}) on a machine with internet access"
        if repo
        else f"save the encoder's state dict of {encoder!r} with pretrained weights"
    )
    return (
        f"{where}, copy it here and set train.encoder_weights to its path (e.g. "
        f"weights/{encoder}.{name}.safetensors); or copy a filled Hugging Face cache "
        "(HF_HOME) to this machine; or set train.encoder_weights: null (random weights)"
    )


def fetch_weights(encoder: str, name: str) -> None:
    """Have smp's weights ``name`` of ``encoder`` in the Hugging Face cache, downloading
    them when they are not there yet.

    Raises:
        ParamsError: a name smp does not know for the encoder (the message lists the
            names), or weights neither cached nor downloadable (offline: how to give a
            local file).
    """
    if encoder.startswith("tu-"):
        return  # timm downloads while the encoder is built (see create_pretrained)
    repo = _repo(encoder, name)
    if repo is None:
        names = weight_names(encoder)
        known = f"names smp knows for it: {', '.join(names)}" if names else "smp has none for it"
        raise ParamsError(
            f"train.encoder_weights {name!r} is neither a file nor pretrained weights of "
            f"encoder {encoder!r} ({known}); give one of those names, a local weights file, "
            "or null"
        )
    from huggingface_hub import hf_hub_download

    files = ("config.json", WEIGHTS_FILE)
    try:
        for filename in files:
            hf_hub_download(repo[0], filename, revision=repo[1], local_files_only=True)
        return  # cached: no network needed
    except FileNotFoundError:
        pass  # huggingface_hub's LocalEntryNotFoundError: not cached yet
    offline = hub_unreachable()
    if offline:
        raise ParamsError(_offline_message(encoder, name, offline))
    try:
        for filename in files:
            hf_hub_download(repo[0], filename, revision=repo[1])
    except OSError as err:  # LocalEntryNotFoundError and connection errors are OSErrors
        raise ParamsError(_offline_message(encoder, name, str(err).splitlines()[0])) from None


def hub_unreachable() -> str | None:
    """Why the Hugging Face Hub cannot be reached (``None``: it can, or a proxy decides)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlsplit(constants.ENDPOINT)
    if url.scheme in urllib.request.getproxies():
        return None  # a proxy connects for us: let the download try
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        return f"{host}:{port} cannot be reached ({err})"
    return None


def download_error(encoder: str, name: str, err: OSError) -> ParamsError:
    """The error for weights that could not be had while the encoder was built (timm)."""
    return ParamsError(_offline_message(encoder, name, str(err).splitlines()[0]))


def _offline_message(encoder: str, name: str, why: str) -> str:
    return (
        f"train.encoder_weights {name!r}: the pretrained weights of encoder {encoder!r} are "
        f"not in the Hugging Face cache and cannot be downloaded ({why}). To train "
        f"offline, {local_file_hint(encoder, name)}"
    )


def _repo(encoder: str, name: str) -> tuple[str, str] | None:
    """``(repository, revision)`` of smp's weights ``name`` for ``encoder``."""
    import segmentation_models_pytorch as smp

    entry = smp.encoders.encoders.get(encoder)
    settings = entry["pretrained_settings"].get(name) if entry else None
    return (settings["repo_id"], settings["revision"]) if settings else None
