"""Which trackers a run asks for (``loggers=[...]``), and whether their settings can work,
checked before anything is written and without the network: the package is installed, no
tracker is listed twice, MLflow has an experiment name and a store its package opens, W&B has a
key for ``wandb.mode=online``. Each failure is one paragraph naming the setting and the fix."""

from __future__ import annotations

import importlib.util
import os

from omegaconf import DictConfig

from solo_rgbd.errors import ConfigError

TRACKERS = ("csv", "tensorboard", "wandb", "mlflow")
#: tracker -> (module to import, pip extra)
PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}


def requested(cfg: DictConfig) -> list[str]:
    """The trackers a config asks for (``tensorboard=true`` adds tensorboard), checked: an
    unknown name or a missing package is a :class:`ConfigError` naming the fix."""
    names = [str(n) for n in (cfg.get("loggers") or ["csv"])]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(
            f"loggers={names} names {', '.join(twice)} twice; list each tracker once, e.g. "
            "loggers=[csv,wandb]. Nothing was written."
        )
    if cfg.get("tensorboard") and "tensorboard" not in names:
        names.append("tensorboard")
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ConfigError(
            f"loggers={names}: {', '.join(unknown)} is not a tracker solo-rgbd knows; use any "
            f"of {', '.join(TRACKERS)} (csv is always on), e.g. loggers=[csv,wandb]."
        )
    for name in names:
        module, extra = PACKAGES.get(name, (None, None))
        found = module and any(  # Lightning's TensorBoardLogger also writes with tensorboardX
            importlib.util.find_spec(m) is not None
            for m in ([module, "tensorboardX"] if name == "tensorboard" else [module])
        )
        if module and not found:
            raise ConfigError(
                f"loggers=[...,{name}] needs the {module} package, which is not installed: "
                f"pip install 'solo-rgbd[{extra}]' (or pip install {module}), or drop {name} "
                "from loggers. Nothing was written."
            )
    check_settings(cfg, names)
    return names


def check_settings(cfg: DictConfig, names: list[str]) -> None:
    """What a tracker's settings need, checked before anything is written and without the
    network: an MLflow experiment name and a store its package can open, a W&B key for
    ``wandb.mode=online``."""
    if "mlflow" in names:
        m = cfg.get("mlflow") or {}
        if not str(m.get("experiment") or "").strip():
            raise ConfigError(
                "mlflow.experiment is empty; name the MLflow experiment the run goes into, e.g. "
                "mlflow.experiment=solo-rgbd. Nothing was written."
            )
        check_tracking_uri(str(m.get("tracking_uri") or "sqlite:///mlflow.db"))  # the default
    online = str((cfg.get("wandb") or {}).get("mode")) == "online"
    if "wandb" in names and online and not _wandb_key():
        raise ConfigError(
            "wandb.mode=online needs a W&B API key, and this machine has none (no "
            "WANDB_API_KEY, no 'wandb login'). Log in first, or keep wandb.mode=offline and "
            "upload later with 'wandb sync <run>/wandb/offline-run-*'. Nothing was written."
        )


def check_tracking_uri(uri: str) -> None:
    """A tracking URI the installed MLflow can open: a database (``sqlite:///FILE``,
    ``postgresql://...``) needs MLflow's SQL store, ``http(s)://`` a server, ``file:`` a
    folder; anything else is named with the forms that work."""
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if not uri or scheme == "file" or scheme in ("http", "https", "databricks"):
        return
    if scheme in ("sqlite", "postgresql", "mysql", "mssql"):
        missing = [m for m in ("sqlalchemy", "alembic") if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(
                f"mlflow.tracking_uri={uri} is a database, and MLflow's SQL store needs "
                f"{' and '.join(missing)}, which are not installed: pip install "
                "'solo-rgbd[mlflow]' (MLflow with its SQL store). Nothing was written."
            )
        return
    raise ConfigError(
        f"mlflow.tracking_uri={uri} is not a store MLflow opens; use sqlite:///PATH.db, "
        "file:/PATH, or http://HOST:PORT of an MLflow server. Nothing was written."
    )


def _wandb_key() -> bool:
    """Whether W&B has an API key here (its environment variable, or a ``wandb login``)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        return bool(netrc.netrc().authenticators(host or "api.wandb.ai"))
    except (OSError, netrc.NetrcParseError):
        return False
